"""Values that lie between their rivals, found as a rival read-out: the value weighed against each
other value of its attribute in turn, firing only where it wins every one of those contests.

Where a block lays an attribute's values out along an axis (red, orange, yellow), the middle value is
*less red than red and less yellow than yellow*, which no single weighing of features against the
rest can say: a weighted sum changes steadily along the axis, so the middle scores between the two
ends, never above both. In the toy's mid block, middle and final windows, orange read against the
rest holds 0.55 and 0.70 held-out precision from the SAE's codes; read against each rival in turn,
0.94 and 0.96 (on 1,440 images; docs/evolution.md). A rival read-out fits one sparse weighing per rival
(`concepts.feature_readouts.fit_readout`, on the images with the value or that rival only), and its
score is the lowest of them: it fires where that reaches the median over the images with the value,
and it is kept, like any read-out, only when it holds up on held-out images (`concepts.held_out`);
its settings (penalty, bar, split) are a read-out's (`concepts.feature_readouts.ReadoutConfig`).

Such values are weakly carried, so this is looked for only for values nothing else finds, and on more
images than labelling uses (`concepts.toy.saes.ToySAERecipe.rival_prompts`): on the 480 labelling
images alone, orange's contests do not hold up in every fold (0.57 and 0.71 at worst).

What steering adds is its features that count for the value against at least one rival: a middle
value may have no feature that counts for it against every rival (orange at the mid block has none).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .feature_readouts import ReadoutConfig, fit_readout
from .held_out import each_value, fold_means, held_out_folds


def contests(peaks: np.ndarray, values: np.ndarray, value: str, rows: np.ndarray, scale: np.ndarray,
             cfg: ReadoutConfig) -> dict[str, tuple[np.ndarray, float]]:
    """Per rival (each other value of the attribute among `rows`' images): the weights, in the peaks'
    own units, and the bias of the weighing of `value` against that rival, fitted on `rows`."""
    positive = values == value
    fitted = {}
    for rival in sorted(set(values[rows]) - {value}):
        chosen = rows & (positive | (values == rival))
        weights, bias = fit_readout(peaks[chosen] / scale, positive[chosen], cfg.l1, cfg.iterations)
        fitted[str(rival)] = (weights / scale, bias)
    return fitted


def lowest_score(peaks: np.ndarray, fitted: Mapping[str, tuple[np.ndarray, float]]) -> np.ndarray:
    """[images] the lowest of the contests' scores (Σ weight · peak + bias): how far the value wins its
    hardest contest."""
    return np.min([peaks @ weights + bias for weights, bias in fitted.values()], axis=0)


def held_out_rival_folds(peaks: np.ndarray, values: np.ndarray, value: str,
                         cfg: ReadoutConfig = ReadoutConfig()) -> list[tuple[float, float, float]] | None:
    """(precision, recall, AUROC) of the rival read-out of `value` on each held-out half of the split
    `cfg.seed` makes, fitted on the other half; None when there is nothing to contest or to fit.
    `values` [images]: each image's value of the attribute ("" where it has none)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    values = np.asarray(values, dtype=object)
    positive = values == value
    if not set(values[values != ""]) - {value}:
        return None
    scale = peak_scale(peaks)

    def fit(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        fitted = contests(peaks, values, value, rows & (values != ""), scale, cfg)
        if not any((weights > 0).any() for weights, _ in fitted.values()):
            return None
        score = lowest_score(peaks, fitted)
        return score, float(np.median(score[rows & positive]))

    return held_out_folds(fit, positive, cfg.seed)


def find_rival_readout(peaks: np.ndarray, values: np.ndarray, value: str,
                       cfg: ReadoutConfig = ReadoutConfig()) -> dict[str, Any] | None:
    """The rival read-out of `value`, fitted on every image, or None when it does not hold up on
    held-out images (`held_out_rival_folds`). peaks: [images, features] per-image peaks."""
    folds = held_out_rival_folds(peaks, values, value, cfg)
    if folds is None or min(fold[0] for fold in folds) < cfg.labelled_precision:
        return None
    peaks = np.asarray(peaks, dtype=np.float64)
    values = np.asarray(values, dtype=object)
    positive = values == value
    fitted = contests(peaks, values, value, values != "", peak_scale(peaks), cfg)
    threshold = float(np.median(lowest_score(peaks, fitted)[positive]))
    return {**as_entry(fitted), "threshold": round(threshold, 4), "images": int(len(values)), **fold_means(folds)}


def peak_scale(peaks: np.ndarray) -> np.ndarray:
    """Each feature's peak over the images (1 where it never fires): the contests are fitted on peaks
    divided by it, as one-against-the-rest read-outs are."""
    scale = peaks.max(axis=0)
    return np.where(scale > 0, scale, 1.0)


def as_entry(fitted: Mapping[str, tuple[np.ndarray, float]]) -> dict[str, Any]:
    """The dictionary entry of fitted contests: every contest's weights (`rivals`), and, for search and
    steering, the features that count for the value in some contest (`features`, weighed by their
    summed weight for it) and those that only count against it (`against`)."""
    stacked = np.array([weights for weights, _ in fitted.values()])
    for_value = np.clip(stacked, 0, None).sum(axis=0)
    against_only = np.where(for_value > 0, 0.0, np.clip(stacked, None, 0).sum(axis=0))
    features = [int(j) for j in np.argsort(-for_value, kind="stable") if for_value[j] > 0]
    against = [int(j) for j in np.argsort(against_only, kind="stable") if against_only[j] < 0]
    return {
        "features": features, "weights": [round(float(for_value[j]), 6) for j in features],
        "against": against, "against_weights": [round(float(against_only[j]), 6) for j in against],
        "rivals": {rival: sparse(weights, bias) for rival, (weights, bias) in fitted.items()},
    }


def sparse(weights: np.ndarray, bias: float) -> dict[str, Any]:
    """One contest as stored: its non-zero weights by feature id, and its bias."""
    ids = [int(j) for j in np.flatnonzero(weights)]
    return {"features": ids, "weights": [round(float(weights[j]), 6) for j in ids], "bias": round(float(bias), 6)}


def rival_score(readout: Mapping[str, Any], peaks: np.ndarray) -> np.ndarray:
    """The stored read-out's score of each image of `peaks` [images, features]: it fires where this
    reaches `readout["threshold"]`."""
    peaks = np.asarray(peaks, dtype=np.float64)
    return np.min([peaks[:, contest["features"]] @ np.asarray(contest["weights"], dtype=np.float64) + contest["bias"]
                   for contest in readout["rivals"].values()], axis=0)


def value_rival_readouts(peaks: np.ndarray, labels: Sequence[Mapping[str, str]], pairs: Sequence[tuple[str, str]],
                         readable: Callable[[str, str], str], cfg: ReadoutConfig = ReadoutConfig()) -> dict[str, dict[str, Any]]:
    """Rival read-outs for each (attribute, value) in `pairs` that holds up; `labels` [images] and
    `peaks` [images, features] may cover more images than labelling does."""
    def find(attribute: str, value: str) -> dict[str, Any] | None:
        return find_rival_readout(peaks, np.array([row.get(attribute, "") for row in labels], dtype=object), value, cfg)

    return each_value(pairs, readable, find)
