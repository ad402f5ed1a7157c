"""`python -m concepts.toy.evaluate maps`: concept maps scored against the renderer's masks."""

from __future__ import annotations

import numpy as np

from concepts.toy.evaluate_maps import MapsEvalConfig, evaluate_maps, iou, object_mask, upsampled
from concepts.toy.world import BACKGROUNDS, Scene, render


def test_the_mask_is_where_the_renderer_paints_the_object():
    for shape in ("circle", "cross", "star"):
        scene = Scene(shape, "red", "small", "top left", "white", "solid")
        painted = np.abs(render(scene).astype(float) - BACKGROUNDS["white"]).max(-1) > 60
        assert iou(object_mask(scene), painted) > 0.8, shape


def test_iou_and_upsampling():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0 and iou(np.zeros_like(a), np.zeros_like(a)) is None
    maps = np.zeros((1, 8, 8), np.float32)
    maps[0, :4, :4] = 1.0  # the top left quarter of the grid
    up = upsampled(maps)[0] >= 0.5
    assert up.shape == (64, 64) and up[:30, :30].all() and not up[34:, 34:].any()


def test_one_prompt_end_to_end():
    report = evaluate_maps(MapsEvalConfig(prompts=1))
    assert report["paper"]["miou"] == 0.26
    for block, row in report["blocks"].items():
        found, total = map(int, row["searchable"].split("/"))
        assert total == 29 and found + len(row["missing"]) == 29
        assert set(row["windows"]) == {"first step", "early", "middle", "final"}
        for window in row["windows"].values():
            for value in (window["object_background_iou"], window["concept_miou"]):
                assert value is None or 0.0 <= value <= 1.0
