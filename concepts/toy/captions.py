"""Captions for toy scenes, in natural word order, with attributes dropped at random.

"a small red striped star at the top left on a black background". Dropping an attribute leaves its
word out (a dropped shape becomes "shape"), so the model learns each attribute's marginal; a share
of captions is empty, which trains the unconditional branch for classifier-free guidance.
"""

from __future__ import annotations

import numpy as np

from .world import ATTRIBUTES, Scene

POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


def caption(scene: Scene, keep: set[str] | None = None) -> str:
    """The caption naming the attributes in `keep` (all of them when None)."""
    keep = set(ATTRIBUTES) if keep is None else keep
    words = ["a"]
    for name in ("size", "colour", "texture"):
        if name in keep:
            words.append(getattr(scene, name))
    words.append(scene.shape if "shape" in keep else "shape")
    if "position" in keep:
        words.append(POSITION_PHRASES[scene.position])
    if "background" in keep:
        words.append(f"on a {scene.background} background")
    return " ".join(words)


def random_caption(scene: Scene, rng: np.random.Generator, drop_prob: float = 0.2, empty_prob: float = 0.1) -> str:
    """A training caption: empty with `empty_prob`, else each attribute dropped with `drop_prob`."""
    if rng.random() < empty_prob:
        return ""
    keep = {name for name in ATTRIBUTES if rng.random() >= drop_prob}
    return caption(scene, keep)


def vocabulary() -> list[str]:
    """Every word a caption can use (for the toy tokenizer: one token per word)."""
    words = {"a", "shape", "on", "background"}
    for values in ATTRIBUTES.values():
        for value in values:
            words.update(value.split())
    for phrase in POSITION_PHRASES.values():
        words.update(phrase.split())
    return sorted(words)
