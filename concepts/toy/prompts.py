"""Prompt sets for the toy world: labelled (fully specified, for metrics and dictionaries) and
training-like (attributes dropped at random, for SAE activations that cover what users type)."""

from __future__ import annotations

import numpy as np

from .captions import caption, random_caption
from .world import Scene, random_scene


def labelled_prompts(n: int, seed: int, split: str = "train") -> list[tuple[Scene, str]]:
    """`n` scenes of `split` with their full captions (every attribute named, so it is known)."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, split) for _ in range(n)]
    return [(scene, caption(scene)) for scene in scenes]


def varied_prompts(n: int, seed: int, drop_prob: float = 0.2) -> list[str]:
    """`n` captions as the model was trained on them (attributes dropped), never empty."""
    rng = np.random.default_rng(seed)
    return [random_caption(random_scene(rng, "train"), rng, drop_prob, empty_prob=0.0) for _ in range(n)]


def readable_label(attribute: str, value: str) -> str:
    """A dictionary label a reader understands: "red", "top left", "black background"."""
    return f"{value} background" if attribute == "background" else value
