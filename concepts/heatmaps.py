"""A feature map drawn over its image: what the Steer and Evolution panels show where a feature fires."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image


def heatmap_overlay(image: Image.Image, fmap: np.ndarray, size: int = 256, opacity: float = 0.6) -> Image.Image:
    """A feature map [h, w] upsampled (bilinear) over the image, shown at `size` px (pixels kept crisp)."""
    peak = float(fmap.max())
    scaled = fmap / peak if peak > 0 else np.zeros_like(fmap)
    heat = Image.fromarray((scaled * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    colours = colormaps["inferno"](np.asarray(heat) / 255.0)[..., :3]
    base = np.asarray(image.convert("RGB").resize((size, size), Image.NEAREST)) / 255.0
    blend = (1 - opacity) * base + opacity * colours
    return Image.fromarray((blend * 255).round().astype(np.uint8))
