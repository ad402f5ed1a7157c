"""One cheap digest of a model's weights, so results derived from old weights (cached attribution
scores, collected activations) are never reused for retrained ones."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def weights_digest(named_weights: Iterable[tuple[str, torch.Tensor]], head: int = 64) -> str:
    """SHA-1 over each tensor's name, its first `head` values and its float64 sum: reading every
    byte of a large UNet would cost seconds per request, and a retrained weight moves the sum."""
    digest = hashlib.sha1()
    for name, weight in named_weights:
        values = weight.detach().float().cpu().flatten()
        digest.update(name.encode())
        digest.update(values[:head].numpy().tobytes())
        digest.update(repr(float(values.double().sum())).encode())
    return digest.hexdigest()[:16]
