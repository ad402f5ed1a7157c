"""The Steer tab's concept search and concept picker: the labels, groups, read-outs and places that match, or why none does.

A student who searches a value this SAE does not find ("orange" in the mid block's early window) is
told how near the closest feature comes and which other windows and blocks find it, not only that
nothing matched.
"""

from __future__ import annotations

import gradio as gr

from concepts.dictionary import named_entries
from concepts.errors import ConceptLabError, InvalidInputError
from concepts.generation import SHARED_PIPELINES
from concepts.saes import SAES
from concepts.steer.explore import not_found_reason, search_concepts

from .common import DEVICE, REGISTRY, as_int, sae_dictionary, user_errors

WHAT_IT_IS = {
    "label": "features that fire for it",
    "group": "a group: features that fire for it only together",
    "read-out": "a read-out: these features weighed against others (steered: these alone)",
    "rival read-out": "a read-out against each rival in turn ({rivals}): features that count for it in some contest (steered: these alone)",
    "place": "a place: the object's features, steered in that cell",
}


def windows_labelling(model: str, block: str, window: str, steps: float, query: str) -> list[str]:
    """The other stage windows of this block whose SAEs' dictionaries find `query`."""
    searched, _ = sae_dictionary(model, block, window, as_int(steps, "steps"))
    found = []
    for other in ("early", "middle", "final"):
        try:
            loaded, _ = sae_dictionary(model, block, other, as_int(steps, "steps"))
        except ConceptLabError:  # a window with no step at this many steps (a one-step model has one stage)
            continue
        if loaded.entry != searched.entry and loaded.concepts and search_concepts(loaded.concepts, query):
            found.append(other)
    return found


def blocks_finding(model: str, block: str, query: str) -> dict[str, list[str]]:
    """The model's other blocks whose SAEs (those at hand: no download) find `query`, with the
    windows that do: where a value this block does not carry can be looked for instead."""
    world = REGISTRY.get(model)
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    found: dict[str, list[str]] = {}
    for entry in world.saes:
        if entry.block == block or entry.branch != "cond":
            continue
        loaded = SAES.at_hand(world, entry.block, entry.window, "cond", pipe.unet)
        if loaded is not None and loaded.concepts and search_concepts(loaded.concepts, query):
            found.setdefault(entry.block, []).append(entry.window)
    return found


@user_errors
def find_concepts(model: str, block: str, window: str, steps: float, query: str):
    """Rows [name, feature ids, what it is] of the labels, groups, read-outs and places containing `query`. When
    none does, a note saying why (and which other windows and blocks find it) and every name this
    SAE has (what a student can search for instead); an error only when the SAE has none at all."""
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    found = search_concepts(loaded.concepts, query or "")
    if not found:
        reason = not_found_reason(loaded.concepts, query or "", windows_labelling(model, block, str(window), steps, query or ""),
                                  blocks_finding(model, block, query or ""))
        found = search_concepts(loaded.concepts, "")
        if not found:
            raise InvalidInputError("concept", reason)
        gr.Warning(f"{reason}. Below: every label of this SAE.")
    return [[label, ", ".join(map(str, ids)), what_it_is(loaded.concepts, label, kind)] for label, ids, kind in found]


def what_it_is(dictionary: dict, label: str, kind: str) -> str:
    """The search row's "what it is": a rival read-out (`concepts.rival_readouts`) names its rivals."""
    rivals = dictionary.get("readouts", {}).get(label, {}).get("rivals") if kind == "read-out" else None
    return WHAT_IT_IS["rival read-out"].format(rivals=", ".join(rivals)) if rivals else WHAT_IT_IS[kind]


@user_errors
def concept_choices(model: str, block: str, window: str, steps: float, current: str | None = None):
    """The concept labels of the SAE the chosen block and window use (the concept picker), then its
    groups, read-outs and places; the chosen concept stays when this SAE has it too (a share link sets both at once)."""
    if not block:
        return gr.update(choices=[], value=None)
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    labels = [name for name, _, _ in named_entries(loaded.concepts)]
    return gr.update(choices=labels, value=current if current in labels else None)
