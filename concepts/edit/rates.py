"""How an erase / amplify did, read by the world's judge: the concept's rate before and after, and
what the other prompts' images kept."""

from __future__ import annotations

import numpy as np

from ..world import Reader, read_images


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
