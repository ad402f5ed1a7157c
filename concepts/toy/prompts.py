"""Prompt sets for the toy world: labelled (fully specified, for metrics and dictionaries) and
training-like (attributes dropped at random, for SAE activations that cover what users type)."""

from __future__ import annotations

import numpy as np

from .captions import caption, random_caption
from .world import ATTRIBUTES, Scene, random_scene


def labelled_prompts(n: int, seed: int, split: str = "train") -> list[tuple[Scene, str]]:
    """`n` scenes of `split` with their full captions (every attribute named, so it is known)."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, split) for _ in range(n)]
    return [(scene, caption(scene)) for scene in scenes]


def attribute_of(concept: str) -> tuple[str, str] | None:
    """(attribute, value) for a toy concept name: "red", "top left", "striped", "black background"
    (or plain "black"); None for anything else (a phrase, an unknown word)."""
    text = " ".join(concept.lower().split())
    text = text[: -len(" background")] if text.endswith(" background") else text
    matches = [(name, text) for name, values in ATTRIBUTES.items() if text in values]
    return matches[0] if len(matches) == 1 else None


def scenes_showing(concept: str, n: int, seed: int) -> list[Scene] | None:
    """`n` training-split scenes with the concept's value (the rest drawn at random): the images
    where the model draws the concept most surely. None when the concept is not one toy attribute value."""
    found = attribute_of(concept)
    if found is None:
        return None
    name, value = found
    rng = np.random.default_rng(seed)
    scenes: list[Scene] = []
    while len(scenes) < n:
        scene = Scene(**{**random_scene(rng, "any").as_dict(), name: value})
        if not scene.held_out:
            scenes.append(scene)
    return scenes


def prompts_showing(concept: str, n: int, seed: int) -> list[str] | None:
    """The full captions of `scenes_showing`: every attribute named, the concept's among them."""
    scenes = scenes_showing(concept, n, seed)
    return None if scenes is None else [caption(scene) for scene in scenes]


def with_value(scene: Scene, concept: str) -> Scene | None:
    """The scene with the concept's attribute set to the concept ("blue" turns a red scene blue);
    None when the concept is not one toy attribute value."""
    found = attribute_of(concept)
    return None if found is None else Scene(**{**scene.as_dict(), found[0]: found[1]})


def varied_prompts(n: int, seed: int, drop_prob: float = 0.2) -> list[str]:
    """`n` captions as the model was trained on them (attributes dropped), never empty."""
    rng = np.random.default_rng(seed)
    return [random_caption(random_scene(rng, "train"), rng, drop_prob, empty_prob=0.0) for _ in range(n)]


def readable_label(attribute: str, value: str) -> str:
    """A dictionary label a reader understands: "red", "top left", "black background"."""
    return f"{value} background" if attribute == "background" else value
