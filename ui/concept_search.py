"""The Steer tab's concept search: labels that match, or why none does.

A student who searches a value no feature stands for ("orange" at the mid block) is told how near the
closest feature comes and which other windows of the block label it, not only that nothing matched.
"""

from __future__ import annotations

import gradio as gr

from concepts.errors import ConceptLabError, InvalidInputError
from concepts.steer.explore import not_found_reason, search_concepts

from .common import as_int, sae_dictionary, user_errors

LABEL = "features that fire for it"
PLACE = "a place: the object's features, steered in that cell"


def windows_labelling(model: str, block: str, window: str, steps: float, query: str) -> list[str]:
    """The other stage windows of this block whose SAEs' dictionaries have a label containing `query`."""
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


@user_errors
def find_concepts(model: str, block: str, window: str, steps: float, query: str):
    """Rows [label, feature ids] of the labels containing `query`. When none does, a note saying why
    and every label this SAE has (what a student can search for instead); an error only when the
    SAE has no label at all."""
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    found = search_concepts(loaded.concepts, query or "")
    if not found:
        reason = not_found_reason(loaded.concepts, query or "", windows_labelling(model, block, str(window), steps, query or ""))
        found = search_concepts(loaded.concepts, "")
        if not found:
            raise InvalidInputError("concept", reason)
        gr.Warning(f"{reason}. Below: every label of this SAE.")
    places = (loaded.concepts or {}).get("places", {})
    return [[label, ", ".join(map(str, ids)), PLACE if label in places else LABEL] for label, ids in found]
