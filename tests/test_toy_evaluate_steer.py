"""`python -m concepts.toy.evaluate steer`: its pieces, and one tiny run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from concepts.registry import CHECKPOINTS_DIR
from concepts.steer.steering import CELLS
from concepts.toy.evaluate_steer import kept, object_features, target_cell


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
    for kind in ("global_colour", "global_texture"):
        cell = report[kind]["early"]
        assert cell["by_strength"]["1000"]["trials"] + cell["no_features"] == 1
    rates = [v for k in ("spatial", "global_colour", "global_texture") for v in report[k]["early"]["by_strength"].values()]
    assert all(r["success"] is None or 0.0 <= r["success"] <= 1.0 for r in rates)
