"""Values no single feature stands for are found as a group of features, only when the group holds up
on held-out images, and only from the features on the value's side."""

from __future__ import annotations

import numpy as np
import pytest

from concepts.dictionary import DictionaryConfig, concept_features, named_entries
from concepts.errors import UnknownNameError
from concepts.feature_groups import GroupConfig, find_group
from concepts.mask_dictionary import build_mask_dictionary
from concepts.steer.explore import search_concepts

REGIONS = ("object", "background")
CELLS = 16
OBJECT = [5, 6, 9, 10]
COLOURS = ("red", "blue", "green", "yellow")
CARRIERS = (0, 1, 2)
"""Each fires on most blue objects and on some others: none is precise for blue alone."""
RED, REFLECTION, NOISE = 3, 4, range(5, 11)


def region_of(attribute: str) -> str:
    return "background" if attribute == "background" else "object"


def readable(attribute: str, value: str) -> str:
    return f"{value} background" if attribute == "background" else value


def scenes(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [{"colour": COLOURS[i % 4], "background": str(rng.choice(["white", "black"]))} for i in range(n)]
    masks = np.zeros((n, 2, CELLS), np.float32)
    masks[:, 0, OBJECT] = 1.0
    masks[:, 1] = 1.0 - masks[:, 0]
    maps = np.zeros((n, CELLS, 11), np.float32)
    for i, row in enumerate(labels):
        blue = row["colour"] == "blue"
        for j in CARRIERS:
            if blue and rng.random() < 0.7:
                maps[i, OBJECT, j] = rng.uniform(0.6, 1.0)
            elif not blue and rng.random() < 0.25:
                maps[i, OBJECT, j] = rng.uniform(0.05, 0.45)
        maps[i, OBJECT, RED] = 1.0 if row["colour"] == "red" else 0.0
        maps[i, 0:4, REFLECTION] = 2.0 if blue else 0.0  # on the background, exactly when the object is blue
        for j in NOISE:
            maps[i, OBJECT, j] = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    return labels, masks, maps


def dictionary_of(labels, masks, maps, groups=GroupConfig()):
    return build_mask_dictionary(maps, masks, REGIONS, labels, region_of, DictionaryConfig(min_fires=3),
                                 readable=readable, groups=groups)


def test_a_value_spread_over_features_is_found_as_their_group():
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    carrier = dictionary["features"][CARRIERS[0]]
    assert not carrier["labelled"] and carrier["precision"] < 0.8, "no carrier stands for blue alone"
    assert "blue" not in dictionary["concepts"] and dictionary["concepts"]["red"] == [RED]
    group = dictionary["groups"]["blue"]
    assert set(group["features"]) <= set(CARRIERS) and len(group["features"]) == 3
    assert group["held_out_precision"] >= 0.8 and group["held_out_auroc"] > 0.9
    assert REFLECTION not in group["features"], "a background feature never stands for the object's colour"
    # labelled values get no group; values nothing carries get none either
    assert set(dictionary["groups"]) == {"blue"}
    assert dictionary["summary"]["groups"] == 1


def test_a_group_is_searched_steered_and_named_like_a_label():
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    kinds = {name: kind for name, _, kind in named_entries(dictionary)}
    assert kinds["blue"] == "group" and kinds["red"] == "label"
    assert concept_features(dictionary, " Blue ") == dictionary["groups"]["blue"]["features"]
    with pytest.raises(UnknownNameError):  # what only labels are asked for (the SAE-suppression erase, lesson 6)
        concept_features(dictionary, "blue", kinds=("label",))
    assert [(name, kind) for name, _, kind in search_concepts(dictionary, "blu")] == [("blue", "group")]


def test_no_group_when_none_holds_up_on_held_out_images():
    """Noise features chosen on half the images look better there than they are: the other half says so."""
    labels, masks, maps = scenes()
    green = np.array([row["colour"] == "green" for row in labels])
    allowed = np.zeros(maps.shape[2], bool)
    allowed[list(NOISE)] = True
    assert find_group(maps.max(axis=1), green, allowed) is None
    assert dictionary_of(labels, masks, maps, groups=None)["groups"] == {}
    # without the blue carriers' signal (shuffled labels), blue gets no group either
    shuffled = [dict(row, colour=COLOURS[k]) for row, k in zip(labels, np.random.default_rng(1).integers(0, 4, len(labels)))]
    assert "blue" not in dictionary_of(shuffled, masks, maps)["groups"]
