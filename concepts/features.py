"""SAE feature activations of block reads: per position (heatmaps) and per image (dictionaries)."""

from __future__ import annotations

import torch

from .sae import TopKSAE


@torch.no_grad()
def feature_maps(sae: TopKSAE, read: torch.Tensor) -> torch.Tensor:
    """Block read [b, H, W, d] → sparse feature activations [b, H, W, n] (zeros outside the top k)."""
    return sae.encode_dense(read.to(sae.device))


@torch.no_grad()
def image_activations(sae: TopKSAE, read: torch.Tensor) -> torch.Tensor:
    """Block read [b, H, W, d] → [b, n]: each feature's strongest response anywhere in the image."""
    return feature_maps(sae, read).flatten(1, 2).amax(dim=1).float()
