"""Values no single feature stands for, found as a small group of features that do so together.

A TopK SAE can spread a value over several features, none of which fires for it precisely enough to
be labelled (`concepts.dictionary`, precision 0.8). SAeUron selects the features of a concept the
same way: it ranks every feature by how much more it fires on the concept's images than on the
others, and takes the top few. Here a group is kept only when it holds up on images it was not
chosen on:

1. **Rank.** On a selection set of images, each feature's per-image peak is scored by the
   standardised difference of its mean on images with the value and its mean on the others.
2. **Group.** The top `k` features (k from `GroupConfig.sizes`, the one most precise on the
   selection set) are summed; the group "fires" above the median of that sum over the selection
   set's images with the value (so about half of them).
3. **Held out.** The images are split in two halves (`GroupConfig.seed`); the group is chosen on one
   half and its precision, recall and AUROC are read on the other, both ways round
   (`concepts.held_out`). A value gets a
   group when the held-out precision reaches `labelled_precision` in both folds; the group it gets
   is chosen on all images the same way, and reports the two folds' mean.

Only features on the value's side (object or background, `concepts.mask_dictionary`) are ranked,
as for labels. A group is steered, erased or searched like a label; the concept search says it is
a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .held_out import fold_means, held_out_folds, per_value, precision


@dataclass(frozen=True)
class GroupConfig:
    sizes: tuple[int, ...] = (3, 5, 10)
    """Group sizes tried (SAeUron steers tens of features per concept on SD1.4; the toy's SAEs are
    512 wide)."""
    labelled_precision: float = 0.8
    """Held-out precision a group must reach in both folds (the label's bar)."""
    seed: int = 0
    """Seeds the split of the images into the two folds."""


def _ranked(peaks: np.ndarray, positive: np.ndarray, rows: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Allowed feature ids, most specific to the value first, scored on `rows`."""
    chosen = peaks[rows]
    spread = chosen.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (chosen[positive[rows]].mean(axis=0) - chosen[~positive[rows]].mean(axis=0)) / spread
    score = np.where(allowed & (spread > 0), np.nan_to_num(score, nan=-np.inf), -np.inf)
    return np.argsort(-score, kind="stable")


def _choose(peaks: np.ndarray, positive: np.ndarray, rows: np.ndarray, allowed: np.ndarray,
            sizes: Sequence[int]) -> tuple[list[int], float]:
    """The group (ids) and firing threshold most precise on `rows`."""
    order = _ranked(peaks, positive, rows, allowed)
    best: tuple[float, list[int], float] | None = None
    for k in sizes:
        ids = [int(j) for j in order[:k] if allowed[j]]
        if len(ids) < k:
            continue
        total = peaks[:, ids].sum(axis=1)
        threshold = float(np.median(total[rows & positive]))
        chosen_precision = precision(total[rows] >= threshold, positive[rows])
        if best is None or chosen_precision > best[0]:
            best = (chosen_precision, ids, threshold)
    return ([], np.inf) if best is None else (best[1], best[2])


def find_group(peaks: np.ndarray, positive: np.ndarray, allowed: np.ndarray,
               cfg: GroupConfig = GroupConfig()) -> dict[str, Any] | None:
    """The group standing for the value whose images are `positive`, or None when none holds up.

    peaks: [images, features] per-image peaks; allowed: [features] which features may join."""
    if not allowed.any():
        return None

    def fit(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        ids, threshold = _choose(peaks, positive, rows, allowed, cfg.sizes)
        return (peaks[:, ids].sum(axis=1), threshold) if ids else None

    folds = held_out_folds(fit, positive, cfg.seed)
    if folds is None or min(fold[0] for fold in folds) < cfg.labelled_precision:
        return None
    ids, threshold = _choose(peaks, positive, np.ones(len(positive), bool), allowed, cfg.sizes)
    return {"features": ids, "threshold": round(threshold, 4), **fold_means(folds)}


def value_groups(peaks: np.ndarray, labels: Sequence[Mapping[str, str]], pairs: Sequence[tuple[str, str]],
                 allowed_for: Mapping[str, np.ndarray], readable: Callable[[str, str], str], cfg: GroupConfig = GroupConfig()) -> dict[str, dict[str, Any]]:
    """Groups for each (attribute, value) in `pairs`; `allowed_for[attribute]` says which features
    may stand for that attribute's values (the features on its side)."""
    return per_value(labels, pairs, readable, lambda attribute, positive: find_group(peaks, positive, allowed_for[attribute], cfg))
