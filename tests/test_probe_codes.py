"""The read-out that says whether a block carries an attribute: high on images whose maps carry it,
chance when they do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts.toy.probe_codes import RawDelta, held_out_accuracy, held_out_value_precision, object_pooled, pooled, probed_values


def maps_and_labels(n: int = 240, carried: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    colours = np.array(["red", "blue", "green"])[rng.integers(0, 3, n)]
    maps = rng.normal(0, 1, (n, 4, 4, 6)).astype(np.float32)
    if carried:  # channel k lights up one cell for colour k
        for k, colour in enumerate(("red", "blue", "green")):
            maps[colours == colour, 1, 2, k] += 6.0
    return maps, colours


def test_a_carried_attribute_is_read_and_an_absent_one_is_not():
    maps, colours = maps_and_labels()
    assert held_out_accuracy(pooled(maps), colours, [0, 1])["mean"] > 0.9
    noise, colours = maps_and_labels(carried=False)
    chance = held_out_accuracy(pooled(noise), colours, [0, 1])
    assert chance["mean"] < 0.5 and chance["sd"] >= 0.0


def test_one_value_against_the_rest_is_precise_only_when_carried():
    """The per-value reading (`--values`): blue is read precisely when a channel carries it, and at
    about its base rate (a third) when nothing does."""
    maps, colours = maps_and_labels()
    assert held_out_value_precision(pooled(maps), colours == "blue", [0, 1])["lowest"] > 0.9
    noise, colours = maps_and_labels(carried=False)
    assert held_out_value_precision(pooled(noise), colours == "blue", [0, 1])["mean"] < 0.6


def test_the_raw_delta_reader_passes_the_block_through():
    read = torch.randn(2, 4, 4, 6)
    reader = RawDelta(num_latents=6)
    assert torch.equal(reader.encode_dense(read), read)
    assert pooled(read.numpy()).shape == (2, 12)


def test_object_cells_read_what_the_object_carries_and_not_the_background():
    """The object-cells reading (`--values`): a channel that carries blue only where the object is,
    drowned in background noise elsewhere, is read precisely from the object's cells, and not when the
    mask points at the wrong cells."""
    rng = np.random.default_rng(1)
    n = 240
    colours = np.array(["red", "blue", "green"])[rng.integers(0, 3, n)]
    maps = rng.normal(0, 1, (n, 4, 4, 6)).astype(np.float32)
    cell = rng.integers(0, 16, n)  # where each image's object is
    maps.reshape(n, 16, 6)[np.arange(n), cell, 0] += np.where(colours == "blue", 3.0, 0.0)
    coverage = np.zeros((n, 16))
    coverage[np.arange(n), cell] = 1.0
    assert held_out_value_precision(object_pooled(maps, coverage), colours == "blue", [0, 1])["lowest"] > 0.9
    wrong = np.roll(coverage, 5, axis=1)
    assert held_out_value_precision(object_pooled(maps, wrong), colours == "blue", [0, 1])["mean"] < 0.6


def test_values_to_read_are_named_with_their_attribute_and_a_bad_one_names_itself():
    """`--values`: each name is looked up once; a position (not probed) or an unknown word is refused
    with its name, before four minutes of generation."""
    assert probed_values(["orange", "circle", "black background"]) == {"orange": "colour", "circle": "shape", "black": "background"}
    for bad in ("top left", "magenta"):
        with pytest.raises(ValueError, match=repr(bad)):
            probed_values(["red", bad])
