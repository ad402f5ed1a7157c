"""Values no feature or group stands for, found as a read-out: a sparse weighted sum of features,
some counting for the value and some against it.

A TopK SAE at a block that carries a value weakly (the toy's mid block and most colours) has no
feature for it and no group of features that fire for it together (`concepts.feature_groups`). A
value can still be *read* from the codes when features that fire for it are weighed against features
that fire for its rivals: "circle" is the round-shape features minus the star and cross features.
A read-out is that weighing, kept only when it holds up on images it was not fitted on:

1. **Fit.** On a selection set of images, an L1-penalised logistic regression (class-balanced,
   solved by FISTA so that most weights are exactly zero) reads the value from every feature's
   per-image peak, each divided by its peak over all images.
2. **Fire.** The read-out fires where its sum (Σ weight · peak) reaches the median of that sum over
   the selection set's images with the value, as a group does.
3. **Held out.** Fitted on one half of the images, its precision, recall and AUROC are read on the
   other half, both ways round (`ReadoutConfig.seed` splits them; `concepts.held_out`). A value gets a read-out when the
   held-out precision reaches `labelled_precision` in both folds; the read-out it gets is fitted on
   all images and reports the two folds' mean.

Every feature may join, from either side: a read-out reads the whole image, not one region. Search
shows it as a read-out; steering uses its features that count for the value (`features`), weighed
alike, since a steer adds features and cannot add "less of" the ones against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .held_out import fold_means, held_out_folds, per_value


@dataclass(frozen=True)
class ReadoutConfig:
    l1: float = 0.005
    """L1 penalty on the weights of peaks scaled to [0, 1]: the shipped mid-block read-outs keep 21 to
    60 of 512 features (median 40). 0.002 and 0.01 find fewer values there (docs/evolution.md)."""
    labelled_precision: float = 0.8
    """Held-out precision a read-out must reach in both folds (the label's bar)."""
    seed: int = 0
    """Seeds the split of the images into the two folds."""
    iterations: int = 600
    """FISTA steps; the weights have settled well before."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_readout(x: np.ndarray, positive: np.ndarray, l1: float, iterations: int = 600) -> tuple[np.ndarray, float]:
    """Weights [features] and bias of a class-balanced L1 logistic regression of `positive` on `x`
    [images, features], by FISTA (proximal gradient with momentum): exact zeros, no solver library."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(positive, dtype=np.float64)
    sample = np.where(positive, 0.5 / max(y.sum(), 1), 0.5 / max(len(y) - y.sum(), 1))  # each class weighs half
    root = np.sqrt(sample)[:, None]
    lipschitz = 0.25 * np.linalg.eigvalsh((root * x).T @ (root * x)).max() + 0.25
    w = np.zeros(x.shape[1])
    b = 0.0
    w_look, b_look, t = w.copy(), b, 1.0
    for _ in range(iterations):
        gradient = sample * (_sigmoid(x @ w_look + b_look) - y)
        step_w = w_look - x.T @ gradient / lipschitz
        new_b = b_look - gradient.sum() / lipschitz
        new_w = np.sign(step_w) * np.maximum(np.abs(step_w) - l1 / lipschitz, 0.0)
        new_t = (1 + np.sqrt(1 + 4 * t * t)) / 2
        w_look = new_w + (t - 1) / new_t * (new_w - w)
        b_look = new_b + (t - 1) / new_t * (new_b - b)
        w, b, t = new_w, new_b, new_t
    return w, float(b)


def fit_on_rows(peaks: np.ndarray, positive: np.ndarray, rows: np.ndarray, cfg: ReadoutConfig,
                scale: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weights in the peaks' own units (fitted on the peaks divided by `scale`) and the firing
    threshold (the median over `rows`' images with the value), fitted on `rows`."""
    scale = np.ones(peaks.shape[1]) if scale is None else scale
    w, _ = fit_readout(peaks[rows] / scale, positive[rows], cfg.l1, cfg.iterations)
    weights = w / scale
    total = peaks[rows] @ weights
    return weights, float(np.median(total[positive[rows]]))


def find_readout(peaks: np.ndarray, positive: np.ndarray, cfg: ReadoutConfig = ReadoutConfig()) -> dict[str, Any] | None:
    """The read-out of the value whose images are `positive`, or None when none holds up.

    peaks: [images, features] per-image peaks."""
    peaks = np.asarray(peaks, dtype=np.float64)
    scale = peaks.max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)

    def fit(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        weights, threshold = fit_on_rows(peaks, positive, rows, cfg, scale)
        return (peaks @ weights, threshold) if (weights > 0).any() else None

    folds = held_out_folds(fit, positive, cfg.seed)
    if folds is None or min(fold[0] for fold in folds) < cfg.labelled_precision:
        return None
    weights, threshold = fit_on_rows(peaks, positive, np.ones(len(positive), bool), cfg, scale)
    order = np.argsort(-np.abs(weights), kind="stable")
    for_value = [int(j) for j in order if weights[j] > 0]
    against = [int(j) for j in order if weights[j] < 0]
    return {"features": for_value, "weights": [round(float(weights[j]), 6) for j in for_value],
            "against": against, "against_weights": [round(float(weights[j]), 6) for j in against],
            "threshold": round(threshold, 4), **fold_means(folds)}


def readout_score(readout: Mapping[str, Any], peaks: np.ndarray) -> np.ndarray:
    """Σ weight · peak per image of `peaks` [images, features]: the read-out fires where it reaches
    `readout["threshold"]`."""
    ids = list(readout["features"]) + list(readout.get("against", []))
    weights = np.asarray(list(readout["weights"]) + list(readout.get("against_weights", [])), dtype=np.float64)
    return np.asarray(peaks, dtype=np.float64)[:, ids] @ weights


def value_readouts(peaks: np.ndarray, labels: Sequence[Mapping[str, str]], pairs: Sequence[tuple[str, str]],
                   readable: Callable[[str, str], str], cfg: ReadoutConfig = ReadoutConfig()) -> dict[str, dict[str, Any]]:
    """Read-outs for each (attribute, value) in `pairs` that holds up."""
    return per_value(labels, pairs, readable, lambda _, positive: find_readout(peaks, positive, cfg))
