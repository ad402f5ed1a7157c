"""Which prompts a UCE edit is fitted on, from an erase request.

- **Erased**: the concept prompt ("a red shape", or the user's own), and on a toy world with
  scenes, fully specified scenes that show the concept.
- **Guides** (where each erased prompt is sent): the same prompt with each anchor concept in place
  of the concept, their mean. No anchor named: on a toy world, the other values of the concept's
  attribute (red goes to the mean of the other colours on the same scene); elsewhere "", UCE's own
  guide (the concept goes to the unconditional embedding).
- **Preserved**: the same prompts with each kept concept in place (default on a toy world: the other
  values of the attribute), and always "", so the unconditional branch of guidance is untouched.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from ..prompts import check_prompt
from ..registry import ModelWorld
from .scenes import kept_scene_prompts, scene_prompts
from .uce import UcePrompts, swapped


def attribute_peers(world: ModelWorld, concept: str) -> tuple[str, ...]:
    """On a toy world, the other values of the concept's attribute (red: orange, yellow ...); else ()."""
    if not world.defaults.toy_scenes:
        return ()
    return world.knowledge.peers(concept)


def uce_prompts(world: ModelWorld, concept: str, prompt: str, anchors: list[str], keep: list[str], scenes: int) -> UcePrompts:
    """The erased, guide and preserved prompts (see the module doc). `prompt` is the checked concept
    prompt; `anchors` and `keep` are distinct concept names; `scenes` toy scenes are added."""
    peers = attribute_peers(world, concept)
    anchors = anchors or list(peers)
    keep = keep or list(peers)
    if swapped(prompt, concept, "") == " ".join(prompt.split()):  # the same whole-word match the swaps use ("red", not "bored")
        raise InvalidInputError("concept_prompt", f"must name the concept {concept.strip()!r}: UCE sends that word's embedding elsewhere")
    erased = [prompt]
    guides = [tuple(swapped(prompt, concept, a) for a in anchors) if anchors else ("",)]
    preserved = [swapped(prompt, concept, k) for k in keep]
    if scenes:
        shown = scene_prompts(world, concept, scenes)
        erased += shown
        if anchors:
            by_anchor = [kept_scene_prompts(world, concept, a, scenes) for a in anchors]
            guides += [tuple(column) for column in zip(*by_anchor)]
        else:
            guides += [("",)] * len(shown)
        for k in keep:
            preserved += kept_scene_prompts(world, concept, k, scenes)
    preserved.append("")
    for guide in (p for group in guides for p in group if p):
        check_prompt(guide, field="anchor")  # too long after the swap: named, not truncated
    return UcePrompts(concept.strip(), tuple(erased), tuple(guides), tuple(dict.fromkeys(p for p in preserved if p.lower() != prompt.lower())))
