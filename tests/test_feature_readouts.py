"""Values neither a feature nor a group stands for are read out by weighing features for them against
features for their rivals, only when the read-out holds up on held-out images."""

from __future__ import annotations

import numpy as np

from concepts.dictionary import DictionaryConfig, concept_features, named_entries
from concepts.feature_readouts import ReadoutConfig, find_readout, readout_score
from concepts.mask_dictionary import build_mask_dictionary
from concepts.steer.explore import search_concepts

REGIONS = ("object", "background")
CELLS = 16
OBJECT = [5, 6, 9, 10]
SHAPES = ("circle", "star", "cross", "square")
ROUND, SPIKY, SQUARE = 0, 1, 2
"""ROUND fires on circles and stars alike (it is no circle feature), SPIKY on stars and crosses,
SQUARE on squares: "circle" is ROUND without SPIKY."""
NOISE = range(3, 9)


def region_of(attribute: str) -> str:
    return "object"


def scenes(n: int = 400, seed: int = 0, shuffle: bool = False):
    rng = np.random.default_rng(seed)
    shapes = [SHAPES[i % 4] for i in range(n)]
    maps = np.zeros((n, CELLS, 9), np.float32)
    for i, shape in enumerate(shapes):
        maps[i, OBJECT, ROUND] = rng.uniform(0.6, 1.0) if shape in ("circle", "star") else rng.uniform(0, 0.1)
        maps[i, OBJECT, SPIKY] = rng.uniform(0.6, 1.0) if shape in ("star", "cross") else rng.uniform(0, 0.1)
        maps[i, OBJECT, SQUARE] = 1.0 if shape == "square" else 0.0
        for j in NOISE:
            maps[i, OBJECT, j] = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    if shuffle:
        shapes = list(rng.permutation(shapes))
    return [{"shape": s} for s in shapes], object_masks(n), maps


def object_masks(n: int) -> np.ndarray:
    """[n, REGIONS, CELLS]: every image's object covers the OBJECT cells, its background the rest."""
    masks = np.zeros((n, 2, CELLS), np.float32)
    masks[:, 0, OBJECT] = 1.0
    masks[:, 1] = 1.0 - masks[:, 0]
    return masks


def dictionary_of(labels, masks, maps, readouts=ReadoutConfig(), rivals=None):
    """Rival read-outs (`concepts.rival_readouts`, tests/test_rival_readouts.py) are left out: these
    tests are about one weighing against the rest."""
    return build_mask_dictionary(maps, masks, REGIONS, labels, region_of, DictionaryConfig(min_fires=3), readouts=readouts, rivals=rivals)


def test_a_value_read_against_its_rivals_is_found_as_a_read_out():
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    assert dictionary["features"][ROUND]["precision"] < 0.8, "no feature stands for circle alone"
    assert "circle" not in dictionary["concepts"] and "circle" not in dictionary["groups"], "nor does any group"
    assert dictionary["concepts"]["square"] == [SQUARE]
    readout = dictionary["readouts"]["circle"]
    assert readout["features"][0] == ROUND and readout["against"][0] == SPIKY
    assert readout["weights"][0] > 0 > readout["against_weights"][0]
    assert readout["held_out_precision"] >= 0.8 and readout["held_out_auroc"] > 0.95
    assert "square" not in dictionary["readouts"], "a labelled value gets no read-out"
    # the stored weights read new images: fresh scenes' circles fire, the rest do not
    fresh_labels, _, fresh_maps = scenes(seed=5)
    fires = readout_score(readout, fresh_maps.max(axis=1)) >= readout["threshold"]
    circle = np.array([row["shape"] == "circle" for row in fresh_labels])
    assert (fires & circle).sum() / fires.sum() >= 0.9 and fires[circle].mean() >= 0.3
    assert dictionary["summary"]["readouts"] == len(dictionary["readouts"])


def test_a_read_out_is_searched_and_steered_by_its_features_for_the_value():
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    kinds = {name: kind for name, _, kind in named_entries(dictionary)}
    assert kinds["circle"] == "read-out" and kinds["square"] == "label"
    assert concept_features(dictionary, "Circle") == dictionary["readouts"]["circle"]["features"]
    assert SPIKY not in concept_features(dictionary, "circle"), "steering adds features; those against stay out"
    assert [(name, kind) for name, _, kind in search_concepts(dictionary, "circ")] == [("circle", "read-out")]


def test_no_read_out_when_none_holds_up_on_held_out_images():
    """With the shapes shuffled, a read-out fitted on half the images finds patterns in the noise that
    the other half does not have."""
    labels, masks, maps = scenes(shuffle=True)
    assert dictionary_of(labels, masks, maps)["readouts"] == {}
    circle = np.array([row["shape"] == "circle" for row in labels])
    assert find_readout(maps.max(axis=1), circle) is None
    assert dictionary_of(*scenes(), readouts=None)["readouts"] == {}
