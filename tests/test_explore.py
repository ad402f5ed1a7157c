"""Explore and feature icons on the shipped toy model: top features, heatmaps, search, icons."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concepts.errors import InvalidInputError
from concepts.heatmaps import heatmap_overlay
from concepts.registry import load_registry
from concepts.steer.explore import run_explore, search_concepts, top_features
from concepts.steer.icons import run_icons
from concepts.steer.top_images import world_top_images

MID = "mid_block.attentions.0"


def test_top_features_rank_by_mean_and_skip_silent_ones():
    maps = np.zeros((2, 2, 4), np.float32)
    maps[..., 1] = 1.0
    maps[0, 0, 3] = 2.0
    concepts = {"features": [{"id": 1, "label": "red", "labelled": True}, {"id": 3, "label": "blue", "labelled": False}]}
    rows = top_features(maps, concepts, 10)
    assert [r.id for r in rows] == [1, 3]
    assert rows[0].label == "red" and rows[1].label is None and rows[1].peak == 2.0


def test_named_features_that_clearly_fire_get_rows_ahead_of_stronger_generic_ones():
    maps = np.zeros((2, 2, 20), np.float32)
    maps[..., :10] = np.arange(10, 0, -1)  # ten generic features, strongest first
    maps[0, 0, 10] = 0.4  # "red": a peak of 0.4 against 1.0 in the dictionary (fires clearly)
    maps[0, 0, 11] = 0.8  # a second "red" feature
    maps[0, 0, 12] = 0.5  # "square"
    maps[0, 0, 13] = 0.1  # "blue": a tenth of its dictionary peak, not clearly firing
    named = {10: "red", 11: "red", 12: "square", 13: "blue"}
    concepts = {"features": [{"id": i, "label": label, "labelled": True, "peak": 1.0} for i, label in named.items()]}
    rows = top_features(maps, concepts, 4)
    # Half the rows are named: one per label first (the stronger "red", then "square"), not both reds.
    assert [r.id for r in rows] == [0, 1, 11, 12]
    assert [r.label for r in rows] == [None, None, "red", "square"]
    # With room for three names the second "red" gets the third; the faint "blue" gets none.
    assert [r.id for r in top_features(maps, concepts, 6)] == [0, 1, 2, 11, 12, 10]
    assert [r.id for r in top_features(maps, None, 4)] == [0, 1, 2, 3]  # no dictionary: the strongest


def test_heatmap_overlay_is_bright_where_the_feature_fires():
    image = Image.new("RGB", (64, 64), "gray")
    fmap = np.zeros((8, 8), np.float32)
    fmap[0, 0] = 1.0
    overlay = np.asarray(heatmap_overlay(image, fmap, size=128)).astype(float)
    assert overlay.shape == (128, 128, 3)
    assert overlay[:8, :8].sum() > overlay[-8:, -8:].sum()


def test_explore_reads_the_mid_block_and_finds_labelled_features():
    out = run_explore(None, "a large red solid square at the top left on a white background", MID, "middle", seed=1, steps=10)
    assert out.stage == "middle" and out.maps.shape == (8, 8, 512)
    assert out.image.size == (64, 64) and len(out.top) == 12
    assert [r.mean for r in out.top] == sorted((r.mean for r in out.top), reverse=True)
    # The strongest features of the retrained model's SAEs are generic (unnamed); the table still names
    # what fires clearly, and those names are true of the image.
    named = [r for r in out.top if r.label]
    shown = {"large", "red", "solid", "square", "top left", "white background"}
    assert len(named) >= 3 and sum(r.label in shown for r in named) >= 2 * len(named) / 3, named
    found = {name: ids for name, ids, _ in search_concepts(out.concepts, "LAR")}
    assert "large" in found and out.maps[..., found["large"]].max() > 0, "no feature labelled 'large' fired on a large object"
    with pytest.raises(InvalidInputError, match="window"):
        run_explore(None, "a red square", MID, "8:30", steps=10)


def test_icons_differ_between_features_and_are_cached():
    world = load_registry().get()
    concepts = world_top_images(world)  # the toy ships its top-image cache
    assert concepts.has((MID, "middle", "cond"))
    first = run_icons(None, MID, "middle", [3, 4])
    again = run_icons(None, MID, "middle", [3, 4])
    assert first[0] is again[0]  # served from the cache
    a, b = (np.asarray(i).astype(float) for i in first)
    assert a.shape == (64, 64, 3) and np.abs(a - b).mean() > 1.0


def test_names_evaluation_checks_the_shown_names_against_the_scene():
    from concepts.toy.evaluate_names import NamesEvalConfig, evaluate_names

    report = evaluate_names(NamesEvalConfig(prompts=2, reads=((MID, "middle"),), shares=(0.1, 0.3, 0.9), steps=10))
    rows = [report["by_share"][s] for s in ("0.1", "0.3", "0.9")]
    # A stricter firing share can only drop named rows; the names that stay are checked against the scene.
    assert rows[0]["named_rows"] >= rows[1]["named_rows"] >= rows[2]["named_rows"] and rows[1]["named_rows"] > 0
    assert 0.0 <= rows[1]["true_share"] <= 1.0
