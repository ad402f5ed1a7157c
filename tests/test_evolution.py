"""The timestep evolution viewer: core pieces, the CLI and the app's handlers on toy-shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import ui.evolution
from concepts.evolve.evolution import (
    BlockTrace,
    decided_at,
    decided_by_features,
    run_evolution,
)
from concepts.registry import CHECKPOINTS_DIR
from concepts.toy.world import ATTRIBUTES

PROMPT = "a small blue striped circle in the center on a black background"
MID = "mid_block.attentions.0"


def test_decided_at_is_the_start_of_the_final_run():
    assert decided_at(["a", "b", "b"]) == 1
    assert decided_at(["b", "b", "b"]) == 0
    assert decided_at(["b", "a", "b", "b"]) == 2
    assert decided_at(["a", None]) is None and decided_at([]) is None


def test_features_decide_a_group_when_its_leader_settles():
    trace = BlockTrace("b", ["red", "blue", "large"], {"red": "colour", "blue": "colour", "large": "size"})
    for red, blue in ((1.0, 0.0), (0.2, 0.5), (0.1, 0.9), (0.0, 0.8)):
        maps = np.zeros((3, 2, 2), np.float32)
        maps[0], maps[1], maps[2] = red, blue, 0.3
        trace.maps.append(maps)
    assert decided_by_features(trace) == {"colour": 1, "size": 0}
    assert (trace.composition(3) == 1).all()


def test_composition_names_a_position_only_with_a_concept_of_the_region_that_fires_there():
    """An object concept that also fires over the background (as real features do) may not paint it."""
    def trace(with_regions: bool) -> BlockTrace:
        t = BlockTrace("b", ["red", "white background"], {"red": "colour", "white background": "background"})
        maps = np.zeros((2, 2, 4), np.float32)
        maps[0] = 1.0  # red fires everywhere, strongest of all
        maps[1, :, 2:] = 0.6  # the background concept fires on the right half
        t.maps.append(maps)
        if with_regions:
            t.regions, t.label_regions = ["object", "background"], {"red": "object", "white background": "background"}
            region = np.zeros((2, 2, 4), np.float32)
            region[0, :, :2], region[1, :, 2:] = 1.0, 1.0  # object on the left, background on the right
            t.region_maps.append(region)
        return t
    assert (trace(False).composition(0) == 0).all()
    with_regions = trace(True)
    assert (with_regions.composition(0)[:, :2] == 0).all() and (with_regions.composition(0)[:, 2:] == 1).all()
    assert (with_regions.region_at(0) == np.array([[0, 0, 1, 1]] * 2)).all()


def test_toy_traces_know_where_features_fire():
    evo = run_evolution("toy-shapes", "a large red solid square at the top left on a white background", seed=3, with_previews=False)
    trace = evo.traces["mid_block.attentions.0"]
    assert trace.regions == ["object", "background"] and len(trace.region_maps) == len(trace.maps)
    on_object = trace.region_at(len(trace.maps) // 2) == trace.regions.index("object")
    assert on_object[:3, :3].mean() > 0.5 > on_object[5:, 5:].mean(), "the object features do not fire on the top-left object"


def test_every_step_has_a_preview_and_concept_maps():
    evo = run_evolution(None, PROMPT, seed=5, steps=8)
    assert len(evo.previews) == 8 and evo.previews[0].size == (64, 64)
    assert evo.timesteps == sorted(evo.timesteps, reverse=True)
    for block, trace in evo.traces.items():
        assert len(trace.maps) == 8 and trace.labels
    first, last = (np.asarray(p, dtype=float) for p in (evo.previews[0], evo.previews[-1]))
    assert np.abs(first - last).mean() > 1.0, "the x0 preview does not change through the steps"
    assert np.abs(last - np.asarray(evo.image, dtype=float)).mean() < 2.0  # the last guess is the image


def test_evolve_cli_prints_steps_decisions_and_figures(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "concepts", "evolve", "--prompt", PROMPT, "--seed", "5", "--steps", "10", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=CHECKPOINTS_DIR.parent, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["index"] for s in report["steps"]] == list(range(10))
    assert report["steps"][0]["t"] == 1.0 and report["steps"][-1]["t"] == 0.0
    assert all(Path(s["preview"]).is_file() for s in report["steps"])
    assert set(report["decided_at"]) == set(ATTRIBUTES)  # the toy judge reads every attribute
    assert all(v is None or 0 <= v < 10 for v in report["decided_at"].values())
    assert all(Path(f).is_file() for f in report["figures"]) and Image.open(report["gif"]).n_frames == 10
    assert json.loads(Path(report["json"]).read_text())["steps"][3]["index"] == 3
    bad = subprocess.run(
        [sys.executable, "-m", "concepts", "evolve", "--prompt", PROMPT, "--steps", "4", "--concepts", "plaid", "--out", str(tmp_path / "b")],
        capture_output=True, text=True, cwd=CHECKPOINTS_DIR.parent, timeout=300,
    )
    assert bad.returncode == 2 and "concepts" in bad.stderr and "Traceback" not in bad.stderr


def test_evolution_tab_follows_and_scrubs():
    out = ui.evolution.follow_evolution("toy-shapes", PROMPT, 5, 10, 4.0, MID, [])
    state, slider, preview, composition, legend, rows, gallery, curves, decided, grid, strip, files, info = out
    assert slider["maximum"] == 9 and len(gallery) == 10
    assert preview.size == composition.size == (256, 256)
    assert "decided" in info.lower() and grid.size[0] > 0 and strip.size[0] > 0
    assert {Path(f).name for f in files} == {"evolution.gif", "previews.png", "evolution.json"}
    early = ui.evolution.scrub_evolution(state, 0)[0]
    assert not np.array_equal(np.asarray(early), np.asarray(preview))
    with pytest.raises(gr.Error, match="follow a generation first"):
        ui.evolution.scrub_evolution(None, 0)
    with pytest.raises(gr.Error, match="prompt"):
        ui.evolution.follow_evolution("toy-shapes", "", 5, 10, 4.0, MID, [])
    with pytest.raises(gr.Error, match="block"):
        ui.evolution.follow_evolution("toy-shapes", PROMPT, 5, 10, 4.0, "no.such.block", [])
