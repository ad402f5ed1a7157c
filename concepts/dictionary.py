"""Concept dictionaries from labelled images: which attribute values each SAE feature fires for.

Input: one activation per (image, feature) — the feature's strongest response anywhere in the
image — and each image's ground-truth labels (attribute → value). For every feature and value:

- **precision**: of the images where the feature fires (activation above `fire_fraction` of its
  maximum over the set, the paper's 0.1 threshold on normalised maps), the share carrying the value;
- **recall**: of the images carrying the value, the share where the feature fires;
- **AUROC**: how well the raw activation ranks images with the value above those without
  (Mann–Whitney, ties averaged), so a feature that fires weakly everywhere and strongly on red
  still scores.

A feature's label is the value with the highest precision (ties broken by AUROC); it counts as
*labelled* when that precision reaches `labelled_precision`. For every value, `closest` names the
feature that comes nearest (highest precision), so a search for a value no feature stands for can
say how near the best one comes. The dictionary is plain JSON
(`concepts.json` beside the SAE) so a Hub-hosted SAE can carry one too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import InvalidInputError, UnknownNameError

FORMAT = "concept-lab/concepts-v1"


@dataclass(frozen=True)
class DictionaryConfig:
    fire_fraction: float = 0.1
    """A feature fires on an image when its activation exceeds this share of its maximum."""
    min_fires: int = 10
    """Features firing on fewer images are reported as rare and get no label (a feature firing on a
    handful of images reaches high precision by chance)."""
    labelled_precision: float = 0.8
    """Precision from which a feature's label counts (the issue's bar)."""
    runner_ups: int = 3
    """How many next-best values to keep per feature (readers see what else it fires for)."""


def average_ranks(column: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank (what Mann–Whitney needs)."""
    _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse]


def auroc_matrix(activations: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """AUROC [n_features, n_values] of each feature's activation for each binary value column."""
    n_images = activations.shape[0]
    n_pos = positives.sum(axis=0).astype(np.float64)
    n_neg = n_images - n_pos
    ranks = np.stack([average_ranks(activations[:, j]) for j in range(activations.shape[1])], axis=1)
    rank_sums = ranks.T @ positives.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sums - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.nan_to_num(auc, nan=0.5)


def build_dictionary(
    activations: np.ndarray,
    labels: Sequence[Mapping[str, str]],
    cfg: DictionaryConfig = DictionaryConfig(),
    readable: Callable[[str, str], str] = lambda attribute, value: value,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dictionary of `activations` [n_images, n_features] against per-image `labels`."""
    activations = np.asarray(activations, dtype=np.float64)
    if activations.ndim != 2 or activations.shape[0] != len(labels):
        raise InvalidInputError("activations", f"expected [images={len(labels)}, features], got {list(activations.shape)}")
    if not np.isfinite(activations).all():
        raise InvalidInputError("activations", "contain NaN or infinite values")
    pairs = sorted({(a, v) for row in labels for a, v in row.items()})
    if not pairs:
        raise InvalidInputError("labels", "no image carries a label")
    column = {pair: i for i, pair in enumerate(pairs)}
    positives = np.zeros((len(labels), len(pairs)), dtype=bool)
    for i, row in enumerate(labels):
        for pair in row.items():
            positives[i, column[pair]] = True

    peak = activations.max(axis=0)
    fires = (activations > cfg.fire_fraction * peak) & (peak > 0)
    fire_counts = fires.sum(axis=0)
    hits = fires.T.astype(np.float64) @ positives.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / fire_counts[:, None])
        recall = np.nan_to_num(hits / positives.sum(axis=0)[None, :])
    auroc = auroc_matrix(activations, positives)

    features: list[dict[str, Any]] = []
    concepts: dict[str, list[tuple[float, int]]] = {}
    for j in range(activations.shape[1]):
        entry: dict[str, Any] = {"id": j, "fires": int(fire_counts[j]), "frequency": round(float(fire_counts[j]) / len(labels), 4), "peak": round(float(peak[j]), 4)}
        if fire_counts[j] < cfg.min_fires:
            features.append({**entry, "label": None, "labelled": False})
            continue
        order = sorted(range(len(pairs)), key=lambda v: (precision[j, v], auroc[j, v]), reverse=True)
        scored = [
            {"attribute": pairs[v][0], "value": pairs[v][1], "precision": round(float(precision[j, v]), 4), "recall": round(float(recall[j, v]), 4), "auroc": round(float(auroc[j, v]), 4)}
            for v in order[: 1 + cfg.runner_ups]
        ]
        best = scored[0]
        label = readable(best["attribute"], best["value"])
        labelled = best["precision"] >= cfg.labelled_precision
        features.append({**entry, "label": label, "labelled": labelled, **best, "also": scored[1:]})
        if labelled:
            concepts.setdefault(label, []).append((best["precision"] * best["auroc"], j))

    closest = {}  # per value: the feature that comes nearest to standing for it, labelled or not
    usable = fire_counts >= cfg.min_fires
    for v, (attribute, value) in enumerate(pairs):
        if usable.any():
            j = int(np.flatnonzero(usable)[np.lexsort((auroc[usable, v], precision[usable, v]))[-1]])
            closest[readable(attribute, value)] = {"feature": j, "precision": round(float(precision[j, v]), 4), "auroc": round(float(auroc[j, v]), 4)}

    alive = sum(1 for f in features if f["label"] is not None)
    labelled_count = sum(1 for f in features if f["labelled"])
    return {
        "format": FORMAT,
        "config": asdict(cfg),
        **({"meta": dict(meta)} if meta else {}),
        "summary": {
            "images": len(labels),
            "features": activations.shape[1],
            "alive": alive,
            "labelled": labelled_count,
            "labelled_share_of_alive": round(labelled_count / alive, 4) if alive else 0.0,
            "labelled_share_of_all": round(labelled_count / activations.shape[1], 4),
            "concepts_covered": len(concepts),
        },
        "concepts": {label: [j for _, j in sorted(ids, reverse=True)] for label, ids in sorted(concepts.items())},
        "features": features,
        "closest": closest,
    }


def named_entries(dictionary: Mapping[str, Any] | None) -> list[tuple[str, list[int], str]]:
    """Every name search can find, with its feature ids and kind: "label" (features labelled with it),
    "group" (features that stand for it only together, `concepts.feature_groups`), "read-out" (features
    weighed for it against others, `concepts.feature_readouts`; the ids are those for it) or "place"
    (the object features, steered in that cell, `concepts.mask_dictionary`)."""
    dictionary = dictionary or {}
    return ([(name, list(ids), "label") for name, ids in sorted(dictionary.get("concepts", {}).items())]
            + [(name, list(group["features"]), "group") for name, group in sorted(dictionary.get("groups", {}).items())]
            + [(name, list(readout["features"]), "read-out") for name, readout in sorted(dictionary.get("readouts", {}).items())]
            + [(name, list(ids), "place") for name, ids in dictionary.get("places", {}).items()])


def concept_features(dictionary: Mapping[str, Any], label: str, kinds: tuple[str, ...] = ("label", "group", "read-out", "place")) -> list[int]:
    """Feature ids of a concept label (best first), a group, a read-out (its features that count for
    the value) or a place (of the `kinds` asked for); unknown labels raise with the known ones."""
    entries = [entry for entry in named_entries(dictionary) if entry[2] in kinds]
    for name, ids, _ in entries:
        if name.lower() == _key(label):
            return ids
    raise UnknownNameError("concept", label, [name for name, _, _ in entries])


def place_of(dictionary: Mapping[str, Any] | None, label: str | None) -> str | None:
    """The place a label names when the dictionary finds it as a place ("top left"), else None."""
    return next((name for name in (dictionary or {}).get("places", {}) if name.lower() == _key(label or "")), None)


def _key(label: str) -> str:
    """A typed label as dictionary names are compared: lower case, single spaces."""
    return " ".join(label.lower().split())
