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


def heatmap_with_scale(image: Image.Image, fmap: np.ndarray, size: int = 256, opacity: float = 0.6, bar: int = 56) -> Image.Image:
    """`heatmap_overlay` with its colour bar on the right: the colours run from 0 (bottom) to the
    map's peak (top), so a reader knows what the brightest colour means on this image."""
    from PIL import ImageDraw, ImageFont

    overlay = heatmap_overlay(image, fmap, size=size, opacity=opacity)
    canvas = Image.new("RGB", (size + bar, size), "white")
    canvas.paste(overlay, (0, 0))
    ramp = colormaps["inferno"](np.linspace(1.0, 0.0, size - 24))[:, :3]
    strip = (np.repeat(ramp[:, None, :], 12, axis=1) * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(strip), (size + 6, 12))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    peak = float(np.max(fmap)) if np.size(fmap) else 0.0
    draw.text((size + 20, 6), f"{peak:.3g}", fill="black", font=font)
    draw.text((size + 20, size - 20), "0", fill="black", font=font)
    return canvas
