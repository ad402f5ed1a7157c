"""Where a toy scene's attributes are: the renderer's object mask, at the image's and a block's grid.

Every attribute but the background is a property of the one object, so its value covers the object's
pixels; the background's value covers the rest. Masks are drawn at the prompt's position and size
without the renderer's jitter (±2 px, ±10 %), which is what the model was asked for.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .world import IMAGE_SIZE, POSITIONS, SIZES, SUPERSAMPLE, Scene, _shape_mask

REGIONS = ("object", "background")


def region_of(attribute: str) -> str:
    """The region an attribute's value covers: "background" for the background, else "object"."""
    return "background" if attribute == "background" else "object"


def object_mask(scene: Scene) -> np.ndarray:
    """[64, 64] bool: the pixels the scene's object covers at least half of (no jitter)."""
    return object_coverage(scene) >= 0.5


def object_coverage(scene: Scene) -> np.ndarray:
    """[64, 64] float: the share of each pixel the object covers (drawn at 4× and box-averaged)."""
    cx, cy = POSITIONS[scene.position]
    mask = np.asarray(_shape_mask(scene.shape, cx, cy, SIZES[scene.size], SUPERSAMPLE), np.float32) / 255
    return mask.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def region_masks(scenes: list[Scene], height: int, width: int) -> np.ndarray:
    """[scenes, REGIONS, height × width]: the share of each cell of a block's grid each region covers."""
    coverage = torch.from_numpy(np.stack([object_coverage(s) for s in scenes]))[:, None]
    cells = F.adaptive_avg_pool2d(coverage, (height, width))[:, 0].reshape(len(scenes), -1).numpy()
    return np.stack([cells, 1.0 - cells], axis=1)
