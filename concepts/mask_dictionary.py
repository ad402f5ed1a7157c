"""Concept dictionaries that know where features fire: feature maps read against per-image region masks.

`build_dictionary` sees one number per image and feature, the feature's strongest response anywhere.
A feature that fires on the background of every image with a large object then looks like "large",
and the Evolution tab's composition map paints an object's name over the background. When each
image also says *where* its labels are (the toy renderer's masks; segmentation masks for real
images, as the paper uses), labelling can first ask where a feature fires:

1. **Side.** Each label belongs to a region ("object" for shape, colour, size, position, texture;
   "background" for the background). A feature's side is the region where its mean activation per
   cell is highest (averaged over images, so a small object counts as much as a large background);
   `region_share` is that mean over the sum of the regions' means.
2. **Label.** `build_dictionary` on the per-image peaks, against only the labels of the feature's
   side: precision, recall and AUROC over images as before, "labelled" from `labelled_precision`. A
   feature no label of its side reaches stays unlabelled rather than taking one of the other side.

3. **Places.** A value that says *where* the object is ("top left") is not a feature: the UNet's
   convolutions draw an object the same way wherever it is, so no feature fires only for one place
   (the nearest reaches precision 0.2-0.45 on toy-shapes, `python -m concepts.toy.evaluate maps`).
   A place is found as what it is: the block's object features (the object side's features that
   fire on most images, `place_features`), to be read or steered in that place's region. The
   dictionary lists them under `places`; searching "top left" finds them, and steering them moves
   the object there in the early window (docs/steer.md has the table).
4. **Groups.** A value no single feature reaches precision for may still be carried by a few
   features together: `concepts.feature_groups` picks them the way SAeUron does and keeps a group
   only when it holds up on held-out images. Groups are listed under `groups` and found by search.
   A value with neither may still be read from the codes by weighing features for it against
   features for its rivals (`concepts.feature_readouts`): listed under `readouts`, found by search.
   A value that lies between its rivals on an axis (orange between red and yellow) is read against
   each rival in turn, on more images (`concepts.rival_readouts`): also under `readouts`, with `rivals`.
5. **Region cut.** The "object here" map sums each side's features (each divided by its peak) per
   cell. Many weak object features fire a little around the object, so "the object side outweighs
   the background side" (a share of 0.5) paints the object too large. `region_cut` picks, on the
   dictionary's own images and masks, the share of the place region above which a cell counts as
   it (`meta.region_cut`); the Evolution tab and `python -m concepts.toy.evaluate maps` use it.

Why the peak anywhere and not the peak inside the region: the explore table and the top images read
the peak anywhere, and a label must hold for what they show. Labels scored on in-region peaks were
true of the image for 71 % of the explore table's named rows on toy-shapes, against 89 % this way
(`python -m concepts.toy.evaluate names`, share 0.3).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .dictionary import FORMAT, DictionaryConfig, build_dictionary
from .errors import InvalidInputError
from .feature_groups import GroupConfig, value_groups
from .feature_readouts import ReadoutConfig, value_readouts
from .rival_readouts import value_rival_readouts

METHOD = "where features fire against region masks"


def feature_sides(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: the index of the region it fires on most (mean per cell), and that mean's share.

    maps: [images, cells, features]; masks: [images, regions, cells], each cell's covered share."""
    means = []
    for r in range(masks.shape[1]):
        weight = masks[:, r, :].astype(np.float64)  # [images, cells]
        area = weight.sum(axis=1)
        per_image = np.einsum("ic,icf->if", weight, maps, dtype=np.float64) / np.maximum(area, 1e-9)[:, None]
        means.append(per_image[area > 0].mean(axis=0) if (area > 0).any() else np.zeros(maps.shape[2]))
    means = np.stack(means)  # [regions, features]
    side = means.argmax(axis=0)
    total = means.sum(axis=0)
    share = np.where(total > 0, means.max(axis=0) / np.maximum(total, 1e-12), 0.0)
    return side, share


PLACE_FEATURES = 20
"""At most this many object features stand for a place (the mid block's early SAE labels 20 "large"
features, the ones the spatial steering table moves objects with)."""
PLACE_MIN_SHARE = 0.75
"""A feature stands for "the object" only when at least this share of its mean activation per cell
is on objects (`region_share`)."""


def place_features(features: Sequence[Mapping[str, Any]], region: str, count: int = PLACE_FEATURES,
                   min_share: float = PLACE_MIN_SHARE) -> list[int]:
    """The features that stand for "an object here": those that fire mostly on `region`, the ones
    that fire on the most images first (weighted by how much of their activation is on the region)."""
    own = [f for f in features if f.get("fires_on") == region and float(f.get("region_share", 0.0)) >= min_share
           and float(f.get("frequency", 0.0)) > 0]
    own.sort(key=lambda f: -float(f["region_share"]) * float(f["frequency"]))
    return [int(f["id"]) for f in own[:count]]


REGION_CUTS = tuple(round(0.30 + 0.05 * i, 2) for i in range(12))
"""Shares of the place region tried by `region_cut` (0.30 … 0.85; 0.5 is "outweighs the rest")."""


def region_weights(features: Sequence[Mapping[str, Any]], regions: Sequence[str], n_features: int,
                   cut: Mapping[str, Any] | None = None) -> np.ndarray:
    """[n_features, regions]: 1 / peak on each feature's region (`fires_on`), so that a region's many
    weak features count as much as one strong one. With a `cut` (`{"region", "share": t}`, two
    regions; `region_cut`), that region's weights are scaled by (1 − t) / t: the region whose summed
    features fire most is then the one whose share is at least t, and sums stay linear (averaging
    and upsampling them keep that meaning)."""
    regions = list(regions)
    weights = np.zeros((n_features, len(regions)), np.float32)
    for f in features:
        if f.get("fires_on") in regions and f.get("peak", 0) > 0 and f["id"] < n_features:
            weights[f["id"], regions.index(f["fires_on"])] = 1.0 / f["peak"]
    if cut and cut.get("region") in regions and len(regions) == 2:
        weights[:, regions.index(cut["region"])] *= (1.0 - cut["share"]) / cut["share"]
    return weights


def region_cut(maps: np.ndarray, masks: np.ndarray, features: Sequence[Mapping[str, Any]], regions: Sequence[str],
               region: str, cuts: Sequence[float] = REGION_CUTS) -> dict[str, float]:
    """The share of `region` in a cell's summed region maps (`region_weights`) above which the cell
    counts as `region`, chosen for the best mean IoU with the masks over the images, and that IoU
    next to the one at 0.5.

    maps [images, cells, features]; masks [images, regions, cells] (covered shares, so the IoU is the
    one expected at pixel level with a cell's pixels alike); features: the dictionary's entries."""
    weights = region_weights(features, regions, maps.shape[2])
    index = list(regions).index(region)
    sums = maps @ weights  # [images, cells, regions]
    share = sums[..., index] / np.maximum(sums.sum(axis=-1), 1e-12)
    cover = masks[:, index, :]
    shown = cover.sum(axis=1) > 0

    def mean_iou(cut: float) -> float:
        found = share >= cut
        union = np.where(found, 1.0, cover).sum(axis=1)
        return float(np.mean((found * cover).sum(axis=1)[shown] / np.maximum(union[shown], 1e-9))) if shown.any() else 0.0

    scores = {cut: mean_iou(cut) for cut in cuts}
    best = max(scores, key=lambda cut: (scores[cut], -abs(cut - 0.5)))
    return {"share": best, "cell_iou": round(scores[best], 4), "cell_iou_at_half": round(mean_iou(0.5), 4)}


def build_mask_dictionary(
    maps: np.ndarray,
    masks: np.ndarray,
    regions: Sequence[str],
    labels: Sequence[Mapping[str, str]],
    region_of: Callable[[str], str],
    cfg: DictionaryConfig = DictionaryConfig(),
    readable: Callable[[str, str], str] = lambda attribute, value: value,
    meta: Mapping[str, Any] | None = None,
    places: Sequence[str] = (),
    place_region: str = "object",
    groups: GroupConfig | None = GroupConfig(),
    readouts: ReadoutConfig | None = ReadoutConfig(),
    rivals: ReadoutConfig | None = ReadoutConfig(),
    more_peaks: np.ndarray | None = None,
    more_labels: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The dictionary of feature `maps` [images, cells, features] against region `masks`
    [images, len(regions), cells]; `region_of(attribute)` names the region an attribute's value covers.
    `places` are values that say where the `place_region`'s content is (found as that region's features);
    values neither labelled nor places get a group when one holds up (`groups=None`: none are looked for),
    those still without one a read-out (`concepts.feature_readouts`; `readouts=None`: none), and those
    still without one a rival read-out (`concepts.rival_readouts`; `rivals=None`: none), fitted on these
    images' peaks and `more_peaks` [images, features] of more images labelled `more_labels`."""
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        raise InvalidInputError("maps", f"expected [images={len(labels)}, cells, features], got {list(maps.shape)}")
    if masks.shape != (maps.shape[0], len(regions), maps.shape[1]):
        raise InvalidInputError("masks", f"expected [{maps.shape[0]}, {len(regions)}, {maps.shape[1]}], got {list(masks.shape)}")
    if not np.isfinite(maps).all():
        raise InvalidInputError("maps", "contain NaN or infinite values")
    unknown = {region_of(a) for row in labels for a in row} - set(regions)
    if unknown:
        raise InvalidInputError("regions", f"labels cover regions {sorted(unknown)} that have no mask")
    side, share = feature_sides(maps, masks)
    n_features = maps.shape[2]
    features: list[dict[str, Any] | None] = [None] * n_features
    scored: dict[str, list[tuple[float, int]]] = {}
    closest: dict[str, dict[str, Any]] = {}
    for r, region in enumerate(regions):
        ids = np.flatnonzero(side == r)
        own = [{a: v for a, v in row.items() if region_of(a) == region} for row in labels]
        if not any(own):  # no label lives in this region: its features stay unlabelled
            for j in ids:
                features[j] = {"id": int(j), "label": None, "labelled": False, "fires_on": region, "region_share": round(float(share[j]), 4)}
            continue
        part = build_dictionary(maps[:, :, ids].max(axis=1), own, cfg, readable=readable)
        for entry in part["features"]:
            j = int(ids[entry["id"]])
            features[j] = {**entry, "id": j, "fires_on": region, "region_share": round(float(share[j]), 4)}
        closest.update({label: {**near, "feature": int(ids[near["feature"]])} for label, near in part["closest"].items()})
        for label, members in part["concepts"].items():
            for local in members:
                j = int(ids[local])
                scored.setdefault(label, []).append((features[j]["precision"] * features[j]["auroc"], j))
    done = [f for f in features if f is not None]
    unlabelled = sorted({(a, v) for row in labels for a, v in row.items() if v not in places and readable(a, v) not in scored})
    peaks = maps.max(axis=1)
    found_as_group: dict[str, dict[str, Any]] = {}
    if groups is not None:
        sides = {a: side == regions.index(region_of(a)) for a, _ in unlabelled}
        found_as_group = value_groups(peaks, labels, unlabelled, sides, readable, groups)
    found_as_readout: dict[str, dict[str, Any]] = {}
    if readouts is not None:
        without_group = [(a, v) for a, v in unlabelled if readable(a, v) not in found_as_group]
        found_as_readout = value_readouts(peaks, labels, without_group, readable, readouts)
    found_as_rivals: dict[str, dict[str, Any]] = {}
    if rivals is not None:
        missing = [(a, v) for a, v in unlabelled if readable(a, v) not in found_as_group and readable(a, v) not in found_as_readout]
        all_peaks = peaks if more_peaks is None else np.concatenate([peaks, np.asarray(more_peaks, dtype=np.float32)])
        found_as_rivals = value_rival_readouts(all_peaks, list(labels) + list(more_labels), missing, readable, rivals)
    cut = None
    if place_region in regions and len(regions) == 2:
        cut = {"region": place_region, **region_cut(maps, masks, done, regions, place_region)}
    alive = sum(1 for f in done if f["label"] is not None)
    labelled = sum(1 for f in done if f["labelled"])
    return {
        "format": FORMAT,
        "config": asdict(cfg),
        "meta": {"method": METHOD, "regions": list(regions), "groups": asdict(groups) if groups else None,
                 "readouts": asdict(readouts) if readouts else None,
                 "rival_readouts": {**asdict(rivals), "images": len(labels) + len(more_labels)} if rivals else None,
                 "region_cut": cut, **(meta or {})},
        "summary": {
            "images": len(labels),
            "features": n_features,
            "alive": alive,
            "labelled": labelled,
            "labelled_share_of_alive": round(labelled / alive, 4) if alive else 0.0,
            "labelled_share_of_all": round(labelled / n_features, 4),
            "concepts_covered": len(scored),
            "groups": len(found_as_group),
            "readouts": len(found_as_readout),
            "rival_readouts": len(found_as_rivals),
            "fires_on": {region: int((side == r).sum()) for r, region in enumerate(regions)},
        },
        "concepts": {label: [j for _, j in sorted(ids, reverse=True)] for label, ids in sorted(scored.items())},
        "places": {place: ids for place in places if (ids := place_features(done, place_region))},
        "groups": found_as_group,
        "readouts": found_as_readout | found_as_rivals,
        "features": done,
        "closest": closest,
    }
