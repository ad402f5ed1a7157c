"""What a user typed or painted in the Steer tab, parsed: feature ids and a painted mask."""

from __future__ import annotations

import numpy as np
import torch

from concepts.errors import InvalidInputError

PAINTED = "painted mask"
"""The Where choice that steers into the painted mask."""


def parse_features(text: str | None) -> tuple[int, ...]:
    """"12, 40 7" → (12, 40, 7); a word that is not a whole number is named in the message."""
    ids = []
    for word in (text or "").replace(",", " ").split():
        if not word.lstrip("-").isdigit():
            raise InvalidInputError("features", f"{word!r} is not a feature id (whole numbers, separated by commas)")
        ids.append(int(word))
    return tuple(ids)


def painted_mask(painting: dict | None) -> torch.Tensor:
    """The painted pixels of an ImageEditor value (any layer's alpha) as an [H, W] mask."""
    layers = (painting or {}).get("layers") or []
    arrays = [np.asarray(layer) for layer in layers if layer is not None]
    if not arrays:
        raise InvalidInputError("mask", "is empty: paint where to steer on the image, or choose a preset region")
    alphas = [a[..., 3] if a.ndim == 3 and a.shape[-1] == 4 else (a.max(axis=-1) if a.ndim == 3 else a) for a in arrays]
    return torch.from_numpy(np.maximum.reduce([x.astype(np.float32) for x in alphas]))
