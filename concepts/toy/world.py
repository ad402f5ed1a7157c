"""The toy-shapes world: one object on a plain background, every attribute known exactly.

Values follow docs/toy.md to the letter: five shapes, six colours, two sizes (bounding box about
14 or 24 px, ±10 %), nine positions (centre at x, y ∈ {16, 32, 48} ± 2 px), three backgrounds and
four textures, at 64×64 RGB. Images are drawn at 4× resolution and box-downsampled, which
antialiases every edge. A few (colour, shape) combinations are held out of training so the model's
compositional generalisation can be measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 64
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 50),
    "green": (50, 170, 70),
    "blue": (50, 90, 220),
    "purple": (140, 60, 190),
}
SIZES = {"small": 14.0, "large": 24.0}
POSITIONS = {
    "top left": (16, 16),
    "top": (32, 16),
    "top right": (48, 16),
    "left": (16, 32),
    "center": (32, 32),
    "right": (48, 32),
    "bottom left": (16, 48),
    "bottom": (32, 48),
    "bottom right": (48, 48),
}
BACKGROUNDS = {"black": (20, 20, 20), "gray": (128, 128, 128), "white": (240, 240, 240)}
TEXTURES = ("solid", "striped", "dotted", "outlined")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(BACKGROUNDS),
    "texture": TEXTURES,
}
"""Every attribute and its values, in a fixed order (the judge's heads use it)."""

HELD_OUT: frozenset[tuple[str, str]] = frozenset({("red", "star"), ("blue", "triangle"), ("yellow", "cross"), ("purple", "circle")})
"""(colour, shape) pairs never shown in training: the compositional-generalisation test."""

SIZE_JITTER = 0.10
POSITION_JITTER = 2.0


@dataclass(frozen=True)
class Scene:
    """The six attribute values of one image."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    texture: str

    def __post_init__(self) -> None:
        for name, values in ATTRIBUTES.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(values)}")

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def label_ids(self) -> dict[str, int]:
        """Each attribute's value as its index in ATTRIBUTES (the judge's targets)."""
        return {name: ATTRIBUTES[name].index(getattr(self, name)) for name in ATTRIBUTES}


def random_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A uniformly random scene; "train" never returns a held-out pair, "held_out" only those."""
    if split not in ("train", "held_out", "any"):
        raise ValueError(f"split: {split!r} is not train, held_out or any")
    while True:
        scene = Scene(**{name: values[rng.integers(len(values))] for name, values in ATTRIBUTES.items()})
        if split == "any" or scene.held_out == (split == "held_out"):
            return scene


def all_scenes() -> Iterator[Scene]:
    """Every combination of attribute values (3,240 scenes)."""
    import itertools

    for values in itertools.product(*ATTRIBUTES.values()):
        yield Scene(*values)


# -- rendering ----------------------------------------------------------------------------------
def _shape_mask(shape: str, cx: float, cy: float, size: float, scale: int) -> Image.Image:
    """The filled shape as an 'L' mask at `scale`× resolution."""
    n = IMAGE_SIZE * scale
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    x, y, half = cx * scale, cy * scale, size * scale / 2
    if shape == "circle":
        draw.ellipse([x - half, y - half, x + half, y + half], fill=255)
    elif shape == "square":
        side = half * 0.9  # a square looks bigger than a circle of the same box
        draw.rectangle([x - side, y - side, x + side, y + side], fill=255)
    elif shape == "triangle":  # apex up, equal width and height
        draw.polygon([(x, y - half), (x + half, y + half), (x - half, y + half)], fill=255)
    elif shape == "star":  # five points, the top one straight up
        outer, inner = half * 1.05, half * 0.42
        points = []
        for i in range(10):
            radius = outer if i % 2 == 0 else inner
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((x + radius * math.cos(angle), y + 0.1 * half + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    elif shape == "cross":  # a plus sign with arms a third of the box wide
        arm = half / 3
        draw.rectangle([x - half, y - arm, x + half, y + arm], fill=255)
        draw.rectangle([x - arm, y - half, x + arm, y + half], fill=255)
    else:
        raise ValueError(f"shape: {shape!r} is not one of {', '.join(SHAPES)}")
    return mask


def _texture_mask(texture: str, shape_mask: Image.Image, scale: int) -> np.ndarray:
    """Where the object colour is painted, in [0, 1] at `scale`× resolution."""
    filled = np.asarray(shape_mask, dtype=np.float32) / 255.0
    if texture == "solid":
        return filled
    n = filled.shape[0]
    yy, xx = np.mgrid[0:n, 0:n] / scale  # coordinates in output pixels
    if texture == "striped":  # horizontal stripes, 2 px on, 2 px off
        return filled * ((yy % 4) < 2)
    if texture == "dotted":  # dots of radius 1 px on a 3 px grid: dense enough to keep small silhouettes
        return filled * ((((xx % 3) - 1.5) ** 2 + ((yy % 3) - 1.5) ** 2) < 1.0)
    if texture == "outlined":  # a 1.5 px rim inside the shape's edge
        eroded = shape_mask.filter(ImageFilter.MinFilter(2 * round(1.5 * scale) + 1))
        return filled - np.asarray(eroded, dtype=np.float32) / 255.0
    raise ValueError(f"texture: {texture!r} is not one of {', '.join(TEXTURES)}")


def render(scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
    """A 64×64×3 uint8 image of `scene`; `rng` draws the size and position jitter (none if None)."""
    size = SIZES[scene.size]
    cx, cy = POSITIONS[scene.position]
    if rng is not None:
        size *= 1 + rng.uniform(-SIZE_JITTER, SIZE_JITTER)
        cx += rng.uniform(-POSITION_JITTER, POSITION_JITTER)
        cy += rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    # Never touch the border: keep a 1 px margin whatever the jitter.
    half = size / 2
    cx, cy = float(np.clip(cx, half + 1, IMAGE_SIZE - half - 1)), float(np.clip(cy, half + 1, IMAGE_SIZE - half - 1))
    shape_mask = _shape_mask(scene.shape, cx, cy, size, SUPERSAMPLE)
    paint = _texture_mask(scene.texture, shape_mask, SUPERSAMPLE)[..., None]
    background = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    colour = np.array(COLOURS[scene.colour], dtype=np.float32)
    big = background * (1 - paint) + colour * paint
    n = IMAGE_SIZE
    small = big.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def render_pil(scene: Scene, rng: np.random.Generator | None = None) -> Image.Image:
    return Image.fromarray(render(scene, rng))
