"""Attribution over scenes: on a toy world, a concept's scores averaged over fully specified scenes
that show it, instead of its one template prompt ("a red shape").

Why: the template prompt is mostly "a shape", so its top weights include many that every colour
needs. Averaged over full scenes, the scores point at what the concept adds to real images; the
kept concepts are then scored on the same scenes with their value swapped in, like for like.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from ..prompts import check_prompt
from ..registry import ModelWorld

MAX_SCENES = 8
SCENE_SEED = 7
"""Scenes are drawn apart from the evaluation's prompts (seed 555) and the same for every request,
so their scores are cached once per concept."""


def scenes_label(concept: str, scenes: int) -> str:
    """How scores attributed over scenes are named in messages and reports: "8 scenes of red"."""
    return f"{scenes} scenes of {concept.strip()}"


def check_scenes(world: ModelWorld, scenes: int) -> int:
    """The number of scenes, checked: 0 (the concept prompt) or 1..MAX_SCENES on a toy world."""
    if isinstance(scenes, bool) or not isinstance(scenes, int) or not 0 <= scenes <= MAX_SCENES:
        raise InvalidInputError("scenes", f"must be a whole number in 0..{MAX_SCENES}, got {scenes!r}")
    if scenes and not world.defaults.toy_scenes:
        raise InvalidInputError("scenes", f"attribution over scenes needs a toy world with known scenes; {world.name} has none (use 0)")
    return scenes


def scene_prompts(world: ModelWorld, concept: str, scenes: int) -> list[str]:
    """The full captions of `scenes` scenes that show the concept (the world knows them)."""
    prompts = world.knowledge.prompts_showing(concept, scenes, SCENE_SEED)
    if prompts is None:
        raise InvalidInputError("scenes", f"{concept.strip()!r} is not one value of a toy attribute (red, striped, top left ...): no scenes show it; use 0")
    return [check_prompt(p, field="scenes").text for p in prompts]


def kept_scene_prompts(world: ModelWorld, concept: str, kept: str, scenes: int) -> list[str]:
    """A kept concept's prompts: the concept's scenes with the kept value swapped in when both are
    values of one attribute (red → blue), else scenes that show the kept concept."""
    swapped = world.knowledge.prompts_swapped(concept, kept, scenes, SCENE_SEED)
    if swapped is not None:
        return swapped
    try:
        return scene_prompts(world, kept, scenes)
    except InvalidInputError:
        raise InvalidInputError("keep", f"{kept.strip()!r} is not one value of a toy attribute: with attribution over scenes, keep toy values only") from None
