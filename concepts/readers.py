"""Attribute readers for a model world: the toy-shapes judge reads what a (preview) image shows.

A world has a reader when a `judge/` folder sits beside its local pipeline (toy-shapes ships one);
real models have none, and the viewers fall back to SAE features alone.
"""

from __future__ import annotations

import threading

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
