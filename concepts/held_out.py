"""The check a group or a read-out must pass before it may stand for a value: chosen on one half of
the images, it must hold up on the other half, both ways round.

`concepts.feature_groups` and `concepts.feature_readouts` choose differently (a sum of the most
specific features; a sparse logistic weighing) but are judged the same way, here; so is the probe's
one-value reading (`concepts.toy.probe_codes`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .dictionary import auroc_matrix

Fit = Callable[[np.ndarray], "tuple[np.ndarray, float] | None"]
"""Given the rows [images] chosen on, a score for every image [images] and the threshold at and above
which it fires; None when nothing can be chosen."""

MIN_IMAGES = 4
"""Fewer images with the value, or without it, than this: nothing is looked for."""


def precision(fires: np.ndarray, positive: np.ndarray) -> float:
    """The share of the images it fires on that show the value (0 when it fires on none)."""
    return float((fires & positive).sum() / fires.sum()) if fires.any() else 0.0


def halves(n: int, seed: int) -> np.ndarray:
    """[n] bool: a random half of the images (the other half is its complement)."""
    half = np.zeros(n, bool)
    half[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return half


def held_out_folds(fit: Fit, positive: np.ndarray, seed: int) -> list[tuple[float, float, float]] | None:
    """(precision, recall, AUROC) on the held-out half, once per way round of the split `seed` makes;
    None when there are too few images or `fit` chooses nothing."""
    if positive.sum() < MIN_IMAGES or (~positive).sum() < MIN_IMAGES:
        return None
    half = halves(len(positive), seed)
    folds = []
    for chosen_on in (half, ~half):
        fitted = fit(chosen_on)
        if fitted is None:
            return None
        score, threshold = fitted
        held = ~chosen_on
        fires = score[held] >= threshold
        folds.append((precision(fires, positive[held]), float((fires & positive[held]).sum() / max(positive[held].sum(), 1)),
                      float(auroc_matrix(score[held][:, None], positive[held][:, None])[0, 0])))
    return folds


def fold_means(folds: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """The folds' mean precision, recall and AUROC, as a dictionary entry reports them."""
    precision_, recall, auroc = (round(float(np.mean(column)), 4) for column in zip(*folds))
    return {"held_out_precision": precision_, "held_out_recall": recall, "held_out_auroc": auroc}


def each_value(pairs: Sequence[tuple[str, str]], readable: Callable[[str, str], str],
               find: Callable[[str, str], dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """`find(attribute, value)` for each pair, under the value's readable name, where it finds something."""
    found = {}
    for attribute, value in pairs:
        entry = find(attribute, value)
        if entry is not None:
            found[readable(attribute, value)] = entry
    return found


def per_value(labels: Sequence[Mapping[str, str]], pairs: Sequence[tuple[str, str]], readable: Callable[[str, str], str],
              find: Callable[[str, np.ndarray], dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """`find(attribute, positive)` for each (attribute, value) in `pairs`, `positive` marking the
    images labelled with the value; under the value's readable name, where it finds something."""
    return each_value(pairs, readable, lambda attribute, value: find(attribute, np.array([row.get(attribute) == value for row in labels])))
