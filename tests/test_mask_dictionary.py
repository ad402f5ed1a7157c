"""Labelling features by where they fire: a feature is named only with values of the region it fires on."""

from __future__ import annotations

import numpy as np
import pytest

from concepts.dictionary import DictionaryConfig, build_dictionary
from concepts.errors import InvalidInputError
from concepts.evolve.evolution import region_tables
from concepts.mask_dictionary import build_mask_dictionary, feature_sides, place_features, region_cut

REGIONS = ("object", "background")
CELLS = 16
OBJECT_CELLS = {"small": [5], "large": [5, 6, 9, 10]}


def region_of(attribute: str) -> str:
    return "background" if attribute == "background" else "object"


def scene_set(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [{"colour": str(rng.choice(["red", "blue", "green"])), "size": str(rng.choice(["small", "large"])),
               "background": str(rng.choice(["white", "black"]))} for _ in range(n)]
    masks = np.zeros((n, 2, CELLS), np.float32)
    for i, row in enumerate(labels):
        masks[i, 0, OBJECT_CELLS[row["size"]]] = 1.0
        masks[i, 1] = 1.0 - masks[i, 0]
    return labels, masks


def synthetic_maps(labels, masks) -> np.ndarray:
    """Feature 0: on the object of red scenes. Feature 1: on the background of white scenes.
    Feature 2: on the background, but only when the object is large (a shadow, say): an image-level
    dictionary calls it "large"; it fires where no size is."""
    maps = np.zeros((len(labels), CELLS, 3), np.float32)
    for i, row in enumerate(labels):
        obj, background = masks[i, 0] > 0, masks[i, 1] > 0
        maps[i, obj, 0] = 2.0 if row["colour"] == "red" else 0.0
        maps[i, background, 1] = 1.5 if row["background"] == "white" else 0.0
        maps[i, background, 2] = 1.0 if row["size"] == "large" else 0.0
    return maps


def test_each_feature_is_named_from_the_region_it_fires_on():
    labels, masks = scene_set()
    maps = synthetic_maps(labels, masks)
    cfg = DictionaryConfig(min_fires=3)
    dictionary = build_mask_dictionary(maps, masks, REGIONS, labels, region_of, cfg,
                                       readable=lambda a, v: f"{v} background" if a == "background" else v)
    red, white, shadow = dictionary["features"]
    assert (red["label"], red["fires_on"], red["labelled"]) == ("red", "object", True)
    assert (white["label"], white["fires_on"], white["labelled"]) == ("white background", "background", True)
    assert shadow["fires_on"] == "background" and not shadow["labelled"]
    assert dictionary["concepts"] == {"red": [0], "white background": [1]}
    assert dictionary["summary"]["fires_on"] == {"object": 1, "background": 2}
    # the image-level dictionary gives the background feature the object's size: the wrong label this avoids
    peaks = build_dictionary(maps.max(axis=1), labels, cfg)
    assert peaks["features"][2]["label"] == "large" and peaks["features"][2]["labelled"]
    # a value no feature stands for still says how close the best one comes
    assert dictionary["closest"]["blue"]["precision"] < 0.5


def test_sides_weigh_cells_not_area():
    """A feature on a 1-cell object weighs as much as one on a 15-cell background."""
    labels, masks = scene_set()
    maps = synthetic_maps(labels, masks)
    side, share = feature_sides(maps, masks)
    assert list(side) == [0, 1, 1] and share[0] == pytest.approx(1.0)


def test_bad_shapes_name_the_input():
    labels, masks = scene_set(8)
    maps = synthetic_maps(labels, masks)
    with pytest.raises(InvalidInputError, match="masks"):
        build_mask_dictionary(maps, masks[:, :1], REGIONS, labels, region_of)
    with pytest.raises(InvalidInputError, match="maps"):
        build_mask_dictionary(maps[:4], masks, REGIONS, labels, region_of)
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        build_mask_dictionary(bad, masks, REGIONS, labels, region_of)


def test_places_are_the_features_that_fire_on_objects():
    """A position is found as the object's features (none fires for one place only): the features that
    fire mostly on the object, the most frequent first; background features never stand for a place."""
    labels, masks = scene_set()
    maps = synthetic_maps(labels, masks)
    rng = np.random.default_rng(3)
    common = np.where(masks[:, 0] > 0, rng.uniform(0.5, 1.0, masks[:, 0].shape), 0.0).astype(np.float32)  # on every object
    maps = np.concatenate([maps, common[:, :, None]], axis=2)
    places = ("top left", "bottom right")
    dictionary = build_mask_dictionary(maps, masks, REGIONS, labels, region_of, DictionaryConfig(min_fires=3),
                                       readable=lambda a, v: f"{v} background" if a == "background" else v, places=places)
    assert list(dictionary["places"]) == list(places)
    assert dictionary["places"]["top left"] == [3, 0], "the feature on every object comes first, then the red one"
    assert place_features(dictionary["features"], "object", min_share=1.01) == []


def test_the_region_cut_is_chosen_where_the_object_map_fits_the_masks_best():
    """Many weak object features also fire on the cells around the object (as the toy's do): "the
    object side outweighs the background" then paints the object too large, and a higher cut fits."""
    labels, masks = scene_set()
    n = len(labels)
    maps = np.zeros((n, CELLS, 2), np.float32)
    halo = [0, 1, 2, 4, 8]  # cells next to the objects, never covered
    for i in range(n):
        maps[i, masks[i, 0] > 0, 0] = 1.0  # the object feature on the object ...
        maps[i, halo, 0] = 0.6  # ... and, weaker, beside it
        maps[i, :, 1] = np.where(masks[i, 1] > 0, 0.5, 0.0)  # the background feature on the background,
        maps[i, halo, 1] = 0.2  # weaker next to the object
    side, _ = feature_sides(maps, masks)
    peaks = maps.max(axis=(0, 1))
    features = [{"id": j, "fires_on": REGIONS[side[j]], "peak": float(peaks[j])} for j in range(maps.shape[2])]
    cut = region_cut(maps, masks, features, REGIONS, "object")
    assert cut["share"] > 0.5 and cut["cell_iou"] == pytest.approx(1.0) and cut["cell_iou_at_half"] < 0.8
    dictionary = build_mask_dictionary(maps, masks, REGIONS, labels, region_of, DictionaryConfig(min_fires=3))
    assert dictionary["meta"]["region_cut"]["region"] == "object"
    assert dictionary["meta"]["region_cut"]["share"] == cut["share"]
    # the Evolution tab's region maps use it: the halo cells are background, the object stays object
    _, weights, _ = region_tables(dictionary, 2)
    sums = maps @ weights
    found = sums.argmax(axis=-1) == 0
    assert (found == (masks[:, 0] > 0)).all()
