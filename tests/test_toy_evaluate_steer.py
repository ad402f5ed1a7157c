"""`python -m concepts.toy.evaluate steer`: its pieces, and one tiny run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from concepts.registry import CHECKPOINTS_DIR
from concepts.steer.steering import CELLS
from concepts.toy.evaluate_steer import CLEAN_STRAY, clean, kept, object_features, stray_share, target_cell
from concepts.toy.world import Scene, render


def test_target_cell_is_always_a_move():
    assert all(target_cell(c) != c for c in CELLS)
    assert target_cell("top left") == "bottom right" and target_cell("center") == "top left"


def test_object_features_are_the_ones_firing_in_the_cell():
    maps = np.zeros((8, 8, 5), np.float32)
    maps[:3, :3, 2] = 5.0  # fires in the top left
    maps[:, :, 3] = 1.0  # fires everywhere: not the object's
    maps[5:, 5:, 4] = 3.0  # fires elsewhere
    assert object_features(maps, "top left", 3) == [2]


def test_kept_counts_the_other_attributes():
    a = {"shape": "circle", "colour": "red", "size": "large", "position": "left", "background": "white", "texture": "solid"}
    b = dict(a, position="right", colour="blue")
    assert kept(a, b, "position") == 0.8


SCENE = Scene("square", "red", "large", "bottom right", "gray", "solid")
READ = {"shape": "square", "colour": "red", "size": "large", "position": "bottom right", "background": "gray", "texture": "solid"}


def pixels(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32).transpose(2, 0, 1) / 255


def test_a_rendered_scene_is_clean_and_a_ghost_or_a_corner_blob_is_not():
    drawn = render(SCENE)
    assert stray_share(pixels(drawn), "gray", "bottom right") == 0.0
    moved_from = dict(READ, position="top left")
    assert clean(READ, pixels(drawn), moved_from, "position", "bottom right")  # moved, and nothing else changed
    ghost = drawn.copy()
    ghost[8:24, 8:24] = (180, 60, 60)  # the old object still faintly where it was
    assert stray_share(pixels(ghost), "gray", "bottom right") > CLEAN_STRAY
    assert not clean(READ, pixels(ghost), moved_from, "position", "bottom right")
    assert not clean(dict(READ, colour="purple"), pixels(drawn), moved_from, "position", "bottom right")  # moved, but recoloured


def test_evaluate_steer_prints_rates_per_window():
    done = subprocess.run(
        [sys.executable, "-m", "concepts.toy.evaluate", "steer", "--prompts", "1", "--windows", "early",
         "--spatial-strengths", "16", "--global-strengths", "1000"],
        capture_output=True, text=True, cwd=CHECKPOINTS_DIR.parent, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    row = report["spatial"]["early"]
    assert row["by_strength"]["16"]["trials"] + row["no_features"] == 1
    for kind in ("global_colour", "global_texture", "global_shape"):
        cell = report[kind]["early"]
        assert cell["by_strength"]["1000"]["trials"] + cell["no_features"] == 1
    rates = [v for k in ("spatial", "global_colour", "global_texture", "global_shape") for v in report[k]["early"]["by_strength"].values()]
    assert all(r["success"] is None or 0.0 <= r["success"] <= 1.0 for r in rates)
    assert all(r["clean_success"] is None or r["clean_success"] <= r["success"] for r in rates)  # clean is the stricter count
    assert report["baseline_clean"] == 1.0
