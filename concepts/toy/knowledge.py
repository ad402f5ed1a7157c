"""The toy-shapes world's answers to `concepts.world.WorldKnowledge`: its judge, its attributes and
the fully specified scenes that show a concept. The registry names this class for toy worlds."""

from __future__ import annotations

import threading

from ..world import Reader, WorldKnowledge
from .captions import caption
from .judge import load_judge
from .prompts import attribute_of, prompts_showing, scenes_showing, with_value
from .world import ATTRIBUTES

_JUDGES: dict[str, object] = {}
_LOCK = threading.Lock()


class ToyKnowledge(WorldKnowledge):
    """Everything about a toy world is known: the renderer's attributes and a judge trained on them."""

    def reader(self) -> Reader | None:
        """The judge in the `judge/` folder beside the world's local pipeline, loaded once per process."""
        world = self.world
        if world is None or world.pipeline.path is None:
            return None
        folder = world.base_dir / world.pipeline.path / "judge"
        if not (folder / "model.safetensors").is_file():
            return None
        with _LOCK:
            if str(folder) not in _JUDGES:
                _JUDGES[str(folder)] = load_judge(folder)
            return _JUDGES[str(folder)].predict  # type: ignore[attr-defined]

    def attribute_of(self, concept: str) -> tuple[str, str] | None:
        return attribute_of(concept)

    def attribute_values(self, attribute: str) -> tuple[str, ...]:
        return ATTRIBUTES.get(attribute, ())

    def prompts_showing(self, concept: str, n: int, seed: int) -> list[str] | None:
        return prompts_showing(concept, n, seed)

    def prompts_leaving_open(self, concept: str, n: int, seed: int) -> list[str] | None:
        found = attribute_of(concept)
        if found is None:
            return None
        named = set(ATTRIBUTES) - {found[0]}
        return [caption(scene, keep=named) for scene in scenes_showing(concept, n, seed)]  # type: ignore[union-attr]

    def prompts_swapped(self, concept: str, other: str, n: int, seed: int) -> list[str] | None:
        mine, theirs = attribute_of(concept), attribute_of(other)
        if mine is None or theirs is None or mine[0] != theirs[0]:
            return None
        return [caption(with_value(scene, other)) for scene in scenes_showing(concept, n, seed)]  # type: ignore[arg-type]
