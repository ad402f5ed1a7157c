"""Explore and feature icons on the shipped toy model: top features, heatmaps, search, icons."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concepts.errors import InvalidInputError
from concepts.explore import heatmap_overlay, run_explore, search_concepts, top_features
from concepts.icons import run_icons
from concepts.top_images import world_top_images
from concepts.registry import load_registry

MID = "mid_block.attentions.0"


def test_top_features_rank_by_mean_and_skip_silent_ones():
    maps = np.zeros((2, 2, 4), np.float32)
    maps[..., 1] = 1.0
    maps[0, 0, 3] = 2.0
    concepts = {"features": [{"id": 1, "label": "red", "labelled": True}, {"id": 3, "label": "blue", "labelled": False}]}
    rows = top_features(maps, concepts, 10)
    assert [r.id for r in rows] == [1, 3]
    assert rows[0].label == "red" and rows[1].label is None and rows[1].peak == 2.0


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
    found = dict(search_concepts(out.concepts, "LAR"))
    assert "large" in found and found["large"]
    # The strongest features of the retrained model's SAEs are unlabelled (generic); what a user finds
    # by searching a concept must still fire on an image that shows it.
    assert out.maps[..., found["large"]].max() > 0, "no feature labelled 'large' fired on a large object"
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
