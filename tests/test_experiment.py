"""Download experiment: the zip's command reruns the panel's computation and gives the same images."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import ui.experiment
import ui.generate
import ui.steer

ROOT = Path(__file__).resolve().parent.parent
MODEL, MID = "toy-shapes", "mid_block.attentions.0"
PROMPT = "a large red solid square at the top left on a white background"


def unzip(path: str, into: Path) -> Path:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
    return into


def rerun(folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "command.sh"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_steer_experiment_reruns_to_the_same_images(tmp_path):
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[40:60, 40:60] = (0, 229, 255, 255)
    painting = {"background": None, "layers": [layer], "composite": None}
    inputs = [MODEL, PROMPT, 3, 10, 4.0, MID, "early", None, "63", ui.steer.PAINTED, painting, 8.0, "cond"]
    baseline, steered, _, info = ui.steer.steer_image(*inputs)
    folder = unzip(ui.experiment.steer_experiment(*inputs, baseline, steered, info), tmp_path / "steer")
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["panel"] == "steer" and settings["features"] == "63" and settings["where"] == ui.steer.PAINTED
    versions = json.loads((folder / "versions.json").read_text())
    assert versions["torch"] and len(versions["unet_weights_digest"]) == 16
    assert (folder / "mask.png").is_file() and "--mask mask.png" in (folder / "command.sh").read_text()
    report = rerun(folder)
    assert np.array_equal(pixels(folder / report["steered"][0]), pixels(folder / "images" / "steered.png")), "the command gave another steered image"
    assert np.array_equal(pixels(folder / report["baseline"][0]), pixels(folder / "images" / "baseline.png"))


def test_a_generate_experiment_reruns_to_the_same_image(tmp_path):
    image, info = ui.generate.generate_image(MODEL, PROMPT, 5, 12, 4.0)
    folder = unzip(ui.experiment.generate_experiment(MODEL, PROMPT, 5, 12, 4.0, image, info), tmp_path / "generate")
    report = rerun(folder)
    assert np.array_equal(pixels(folder / report["images"][0]), pixels(folder / "images" / "image.png"))


def test_no_experiment_before_a_run():
    import gradio as gr
    import pytest

    with pytest.raises(gr.Error, match="steer an image first"):
        ui.experiment.steer_experiment(MODEL, PROMPT, 0, 10, 4.0, MID, "middle", None, "", "global", None, 8.0, "cond", None, None, "")


def test_an_evolution_experiment_holds_every_step(tmp_path):
    import ui.evolution

    out = ui.evolution.follow_evolution(MODEL, PROMPT, 2, 6, 4.0, MID, None)
    state, info = out[0], out[-1]
    folder = unzip(ui.experiment.evolution_experiment(MODEL, PROMPT, 2, 6, 4.0, state, info), tmp_path / "evolution")
    steps = sorted(p.name for p in (folder / "images").glob("step_*.png"))
    assert len(steps) == 6 and (folder / "images" / "final.png").is_file()
    assert "concepts evolve" in (folder / "command.sh").read_text() and json.loads((folder / "measured.json").read_text())["info"] == info


def test_an_erase_experiment_reruns_to_the_same_after_images(tmp_path, monkeypatch):
    import ui.erase

    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cache"))
    inputs = [MODEL, "red", "erase", 0.056, "faithful", "", PROMPT.replace("red", "blue"), 4, 2, "", "matrix", 0, "mean", "presence", "cad"]
    concept_gallery, kept_gallery, _, _, info = ui.erase.edit_concept(*inputs)
    folder = unzip(ui.experiment.erase_experiment(*inputs, concept_gallery, kept_gallery, info), tmp_path / "erase")
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["panel"] == "erase" and settings["concept"] == "red" and settings["ratio"] == 0.056
    command = (folder / "command.sh").read_text()
    assert "concepts erase" in command and "--kept-prompt" in command
    report = rerun(folder)
    captions = json.loads((folder / "measured.json").read_text())["captions"]
    after = [name for name, caption in captions.items() if name.startswith("concept") and caption.startswith("after")]
    assert len(after) == len(report["after"]) == 2
    for name, path in zip(after, report["after"]):
        assert np.array_equal(pixels(folder / path), pixels(folder / "images" / f"{name}.png")), "the command erased to another image"


def test_a_lesson_experiment_holds_its_figures_and_command(tmp_path):
    import ui.lessons

    chart, examples, finding, _, _, _, measured = ui.lessons.run_lesson_tab("concept-maps", 2)
    sheet = Image.new("RGB", (32, 16), "white")  # what the browser hands back for the examples image
    folder = unzip(ui.experiment.lesson_experiment(measured, sheet), tmp_path / "lesson")
    figures = json.loads((folder / "measured.json").read_text())
    assert figures["lesson"] == "concept-maps" and figures["seed"] == 2 and figures["bars"] == measured["bars"]
    assert (folder / "images" / "chart.png").is_file() and (folder / "images" / "examples.png").is_file()
    assert (folder / "command.sh").read_text().strip().endswith("concepts lesson concept-maps --seed 2 --json")
