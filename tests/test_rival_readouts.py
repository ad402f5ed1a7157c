"""A value that lies between two others on an axis (orange between red and yellow) is found by reading
it against each rival in turn, where no one weighing against the rest can find it; and only when
that holds up on held-out images."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from concepts.dictionary import DictionaryConfig, concept_features, named_entries
from concepts.errors import CheckpointError
from concepts.feature_readouts import find_readout
from concepts.generation import SHARED_PIPELINES
from concepts.mask_dictionary import build_mask_dictionary
from concepts.registry import load_registry
from concepts.rival_readouts import find_rival_readout, rival_score
from concepts.sae import load_native
from concepts.sae.native_format import load_concepts
from concepts.steer.explore import search_concepts
from concepts.steer.feature_table import feature_table
from concepts.toy import TOY_DIR
from concepts.toy.prompts import labelled_prompts
from concepts.toy.saes import ToySAERecipe, rival_image_peaks, sae_folder
from test_feature_readouts import CELLS, OBJECT, REGIONS, object_masks

COLOURS = ("red", "orange", "yellow")
REDNESS, YELLOWNESS = 0, 1
"""Both fire on orange halfway: orange is less red than red and less yellow than yellow."""
NOISE = range(2, 8)
LEVELS = {"red": (0.85, 0.1), "orange": (0.5, 0.5), "yellow": (0.1, 0.85)}


def scenes(n: int = 300, seed: int = 0, shuffle: bool = False, spread: float = 0.12):
    """Per image its colour, region masks and feature maps [images, cells, features]: redness and
    yellowness at the colour's level (± `spread`), plus features that fire at random."""
    rng = np.random.default_rng(seed)
    colours = [COLOURS[i % 3] for i in range(n)]
    maps = np.zeros((n, CELLS, 2 + len(NOISE)), np.float32)
    for i, colour in enumerate(colours):
        red, yellow = LEVELS[colour]
        maps[i, OBJECT, REDNESS] = np.clip(red + rng.uniform(-spread, spread), 0, 1)
        maps[i, OBJECT, YELLOWNESS] = np.clip(yellow + rng.uniform(-spread, spread), 0, 1)
        for j in NOISE:
            maps[i, OBJECT, j] = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    if shuffle:
        colours = list(rng.permutation(colours))
    return [{"colour": c} for c in colours], object_masks(n), maps


def dictionary_of(labels, masks, maps, **more):
    return build_mask_dictionary(maps, masks, REGIONS, labels, lambda attribute: "object", DictionaryConfig(min_fires=3), **more)


def colour_values(labels) -> np.ndarray:
    return np.array([row["colour"] for row in labels], dtype=object)


def test_a_value_between_its_rivals_is_found_only_against_each_rival_in_turn():
    labels, masks, maps = scenes()
    peaks = maps.max(axis=1)
    orange = colour_values(labels) == "orange"
    assert find_readout(peaks, orange) is None, "one weighing against the rest cannot single out the middle"
    readout = find_rival_readout(peaks, colour_values(labels), "orange")
    assert readout is not None and readout["held_out_precision"] >= 0.9 and readout["held_out_recall"] >= 0.3
    assert sorted(readout["rivals"]) == ["red", "yellow"]
    assert readout["rivals"]["red"]["weights"][readout["rivals"]["red"]["features"].index(YELLOWNESS)] > 0
    assert readout["rivals"]["yellow"]["weights"][readout["rivals"]["yellow"]["features"].index(REDNESS)] > 0
    assert {REDNESS, YELLOWNESS} <= set(readout["features"]), "each counts for orange in one contest"
    # the stored contests read new images: fresh oranges fire, reds and yellows do not
    fresh_labels, _, fresh_maps = scenes(seed=5)
    fires = rival_score(readout, fresh_maps.max(axis=1)) >= readout["threshold"]
    fresh_orange = colour_values(fresh_labels) == "orange"
    assert (fires & fresh_orange).sum() / fires.sum() >= 0.9 and fires[fresh_orange].mean() >= 0.3


def test_no_rival_read_out_when_it_does_not_hold_up_on_held_out_images():
    labels, masks, maps = scenes(shuffle=True)
    assert find_rival_readout(maps.max(axis=1), colour_values(labels), "orange") is None
    assert find_rival_readout(maps.max(axis=1), np.array(["orange"] * len(labels), dtype=object), "orange") is None, "no rival, no contest"


def test_the_dictionary_lists_it_as_a_read_out_that_search_finds_and_steering_uses():
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    assert "orange" not in dictionary["concepts"] and "orange" not in dictionary["groups"]
    entry = dictionary["readouts"]["orange"]
    assert "rivals" in entry and dictionary["summary"]["rival_readouts"] >= 1
    assert dictionary["meta"]["rival_readouts"]["images"] == len(labels)
    assert [(name, kind) for name, _, kind in search_concepts(dictionary, "oran")] == [("orange", "read-out")]
    assert dict((name, kind) for name, _, kind in named_entries(dictionary))["orange"] == "read-out"
    assert concept_features(dictionary, "orange") == entry["features"]
    assert "orange" not in dictionary_of(labels, masks, maps, rivals=None)["readouts"]


def test_more_images_let_a_weakly_carried_value_be_found():
    """With few images and much spread, the contests fit the noise; more images (`more_peaks`) make
    the read-out hold up, and the dictionary says how many it was fitted on."""
    labels, masks, maps = scenes(n=48, seed=1, spread=0.35)
    assert "orange" not in dictionary_of(labels, masks, maps)["readouts"]
    more_labels, _, more_maps = scenes(n=900, seed=11, spread=0.35)
    dictionary = dictionary_of(labels, masks, maps, more_peaks=more_maps.max(axis=1), more_labels=more_labels)
    assert dictionary["readouts"]["orange"]["images"] == 948
    assert dictionary["meta"]["rival_readouts"]["images"] == 948


@pytest.mark.parametrize("bias", [float("nan"), "0.5", None])
def test_a_stored_rival_read_out_with_a_bad_contest_is_refused_with_the_field_named(tmp_path, bias):
    labels, masks, maps = scenes()
    dictionary = dictionary_of(labels, masks, maps)
    (tmp_path / "concepts.json").write_text(json.dumps(dictionary))
    assert load_concepts(tmp_path)["readouts"]["orange"] == dictionary["readouts"]["orange"]
    dictionary["readouts"]["orange"]["rivals"]["red"]["bias"] = bias
    (tmp_path / "concepts.json").write_text(json.dumps(dictionary))
    with pytest.raises(CheckpointError, match="rivals"):
        load_concepts(tmp_path)


def test_the_more_images_are_read_as_the_dictionary_reads_its_own_and_chunks_keep_their_seeds():
    """`python -m concepts.toy.saes --only label` makes the rival read-outs' extra images a few
    batches at a time; their peaks must be those of one call over them all (the same seeds), taken
    as the dictionary takes its own: the peak over cells of the window's mean map."""
    pipe = SHARED_PIPELINES.get(load_registry().get("toy-shapes"), "cpu")
    key = ("mid_block.attentions.0", "middle", "cond")
    saes = {key: load_native(sae_folder(TOY_DIR, *key)).eval()}
    recipe = replace(ToySAERecipe(), rival_prompts=6, prompts_per_batch=2, steps=10)
    scenes, peaks = rival_image_peaks(pipe, saes, recipe, progress=False, chunk_batches=1)
    whole = labelled_prompts(6, recipe.seed + 2)
    assert [s.as_dict() for s in scenes] == [s.as_dict() for s, _ in whole]
    once = feature_table(pipe, saes, [text for _, text in whole], steps=10, guidance=recipe.guidance, height=64, width=64,
                         batch=2, seed=recipe.seed + 2, spatial=True).maps[key]
    expected = once.reshape(6, -1, once.shape[-1]).max(axis=1).astype(np.float32)
    assert peaks[key].shape == (6, saes[key].num_latents)
    np.testing.assert_array_equal(peaks[key], expected)
    assert peaks[key].max() > 0
