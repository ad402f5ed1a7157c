"""What a panel may know about a model world beyond its weights: the interface every world answers.

A panel never asks "is this the toy?". It asks the world: is there a reader (a judge that says what
an image shows)? Is a concept one value of a known attribute, and what are its peers? Which fully
specified prompts show it? The toy-shapes world knows all of this exactly (`concepts.toy.knowledge`);
a Stable Diffusion world knows none of it, and every answer is "none".

The registry names a world's implementation (`"knowledge": "module:Class"` in `registry.json`) and
hands it out as `ModelWorld.knowledge`, loaded by name on first use, so nothing outside
`concepts/toy/` imports the toy package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from .registry import ModelWorld

Reader = Callable[[torch.Tensor], list[dict[str, str]]]
"""Reads images [N, 3, H, W] in [0, 1]: one {attribute: value} dict per image."""


class WorldKnowledge:
    """A world with nothing known beyond its weights (every SD world): each answer is "none"."""

    def __init__(self, world: "ModelWorld | None" = None) -> None:
        self.world = world

    def reader(self) -> Reader | None:
        """The judge of the world's images, or None where there is none."""
        return None

    def attribute_of(self, concept: str) -> tuple[str, str] | None:
        """(attribute, value) when the concept is one value of a known attribute ("red" → colour)."""
        return None

    def attribute_values(self, attribute: str) -> tuple[str, ...]:
        """Every value of a known attribute, in a fixed order."""
        return ()

    def prompts_showing(self, concept: str, n: int, seed: int) -> list[str] | None:
        """`n` fully specified prompts whose images show the concept (seeded); None where unknown."""
        return None

    def prompts_leaving_open(self, concept: str, n: int, seed: int) -> list[str] | None:
        """`n` prompts that name every attribute but the concept's ("a large shape … " for striped):
        where an amplification can show, since nothing asks for the concept yet; None where unknown."""
        return None

    def prompts_swapped(self, concept: str, other: str, n: int, seed: int) -> list[str] | None:
        """The prompts of `prompts_showing(concept, ...)` with `other` in place of the concept (both
        values of one attribute: red → blue on the same scenes); None where that is not known."""
        return None

    def peers(self, concept: str) -> tuple[str, ...]:
        """The other values of the concept's attribute (red: orange, yellow ...); () where unknown."""
        found = self.attribute_of(concept.strip())
        return tuple(v for v in self.attribute_values(found[0]) if v != found[1]) if found else ()


def read_images(reader: Reader, images: list[Image.Image]) -> list[dict[str, str]]:
    """The reader's attribute values for PIL images (one dict each)."""
    if not images:
        return []
    pixels = torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), np.float32) / 255 for i in images])).permute(0, 3, 1, 2)
    return reader(pixels)
