"""Attribute readers for a model world: the toy-shapes judge reads what a (preview) image shows.

A world has a reader when a `judge/` folder sits beside its local pipeline (toy-shapes ships one);
real models have none, and the viewers fall back to SAE features alone.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from PIL import Image

from .evolution import Reader
from .registry import ModelWorld

_JUDGES: dict[str, object] = {}
_LOCK = threading.Lock()


def world_reader(world: ModelWorld) -> Reader | None:
    if world.pipeline.path is None:
        return None
    folder = world.base_dir / world.pipeline.path / "judge"
    if not (folder / "model.safetensors").is_file():
        return None
    with _LOCK:
        if world.name not in _JUDGES:
            from .toy.judge import load_judge

            _JUDGES[world.name] = load_judge(folder)
        return _JUDGES[world.name].predict  # type: ignore[attr-defined]


def read_images(reader: Reader, images: list[Image.Image]) -> list[dict[str, str]]:
    """The reader's attribute values for PIL images (one dict each)."""
    if not images:
        return []
    pixels = torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), np.float32) / 255 for i in images])).permute(0, 3, 1, 2)
    return reader(pixels)


def edit_rates(reader: Reader, concept: str, outcome) -> dict:
    """For an erase / amplify outcome: how often the concept is seen before and after, and the share
    of attributes of the kept prompts' images that read the same after the edit."""
    value = concept.strip().lower()
    before, after = read_images(reader, outcome.concept_before), read_images(reader, outcome.concept_after)
    kept_before, kept_after = read_images(reader, outcome.kept_before), read_images(reader, outcome.kept_after)

    def rate(reads: list[dict[str, str]]) -> float | None:
        return round(sum(value in r.values() for r in reads) / len(reads), 3) if reads else None

    same = [sum(a[k] == b[k] for k in a) / len(a) for a, b in zip(kept_before, kept_after)]
    return {"concept_rate_before": rate(before), "concept_rate_after": rate(after),
            "kept_attributes_unchanged": round(float(np.mean(same)), 3) if same else None}
