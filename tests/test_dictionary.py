"""Concept dictionaries: features are labelled with what they really fire for, and nothing else."""

import numpy as np
import pytest

from concepts.dictionary import DictionaryConfig, auroc_matrix, build_dictionary, concept_features
from concepts.errors import InvalidInputError, UnknownNameError

COLOURS = ["red", "blue", "green"]
SIZES = ["small", "large"]


def labelled_set(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [{"colour": COLOURS[rng.integers(3)], "size": SIZES[rng.integers(2)]} for _ in range(n)]
    red = np.array([row["colour"] == "red" for row in labels], dtype=float)
    large = np.array([row["size"] == "large" for row in labels], dtype=float)
    activations = np.stack(
        [
            red * rng.uniform(1.0, 2.0, n),  # fires exactly on red images
            large * rng.uniform(1.0, 2.0, n) + (1 - large) * 0.05,  # large, with a weak floor below the threshold
            rng.uniform(0.0, 1.0, n),  # fires on everything: no attribute explains it
            np.r_[np.ones(3), np.zeros(n - 3)],  # fires on three images only
            np.zeros(n),  # dead
        ],
        axis=1,
    )
    return activations, labels


def test_features_get_the_value_they_fire_for():
    activations, labels = labelled_set()
    dictionary = build_dictionary(activations, labels, readable=lambda a, v: f"{v} object" if a == "size" else v)
    red, large, noise, rare, dead = dictionary["features"]
    assert (red["label"], red["attribute"], red["labelled"]) == ("red", "colour", True)
    assert red["precision"] == 1.0 and red["auroc"] == 1.0 and red["recall"] == 1.0
    assert (large["label"], large["labelled"]) == ("large object", True)
    assert large["precision"] == 1.0
    assert not noise["labelled"] and noise["precision"] < 0.8 and noise["auroc"] < 0.7
    assert rare["label"] is None and not rare["labelled"]
    assert dead["fires"] == 0 and dead["label"] is None
    assert dictionary["concepts"] == {"large object": [1], "red": [0]}
    summary = dictionary["summary"]
    assert (summary["alive"], summary["labelled"]) == (3, 2)
    assert summary["labelled_share_of_alive"] == pytest.approx(2 / 3, abs=1e-4)


def test_auroc_handles_ties_as_half():
    scores = np.array([[0.0], [0.0], [0.0], [0.0]])
    positives = np.array([[True], [False], [True], [False]])
    assert auroc_matrix(scores, positives)[0, 0] == pytest.approx(0.5)
    scores = np.array([[3.0], [1.0], [2.0], [0.0]])
    assert auroc_matrix(scores, positives)[0, 0] == pytest.approx(1.0)


def test_concept_lookup_is_case_insensitive_and_names_valid_labels():
    activations, labels = labelled_set()
    dictionary = build_dictionary(activations, labels)
    assert concept_features(dictionary, " RED ") == [0]
    with pytest.raises(UnknownNameError, match="valid: large, red"):
        concept_features(dictionary, "purple")


def test_bad_inputs_name_the_field():
    activations, labels = labelled_set(20)
    with pytest.raises(InvalidInputError, match="activations"):
        build_dictionary(activations[:10], labels)
    bad = activations.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        build_dictionary(bad, labels)
    with pytest.raises(InvalidInputError, match="labels"):
        build_dictionary(activations, [{} for _ in labels])


def test_threshold_controls_what_counts_as_labelled():
    activations, labels = labelled_set()
    strict = build_dictionary(activations, labels, DictionaryConfig(labelled_precision=1.01))
    assert strict["summary"]["labelled"] == 0 and strict["concepts"] == {}
