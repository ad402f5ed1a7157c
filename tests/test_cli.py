"""The CLI contract: one JSON object on stdout, or one line naming the bad field and a non-zero exit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from concepts.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "concepts", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_generate_writes_pngs_and_prints_one_json_object(tmp_path):
    done = run_cli("generate", "--prompt", "a red circle", "--seed", "3", "--steps", "4", "--num-images", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert result["model"] == "toy-shapes" and result["seed"] == 3 and result["steps"] == 4
    assert len(result["images"]) == 2
    for path in result["images"]:
        image = Image.open(path)
        assert image.size == (64, 64) and image.mode == "RGB"
    first, second = (Image.open(p).tobytes() for p in result["images"])
    assert first != second  # two images from one seed are two different noises


def test_same_seed_same_png(tmp_path):
    codes = []
    for name in ("a", "b"):
        out = io.StringIO()
        assert main(["generate", "--prompt", "a blue square", "--seed", "11", "--steps", "3", "--out", str(tmp_path / name)], stdout=out, stderr=io.StringIO()) == 0
        codes.append(Image.open(json.loads(out.getvalue())["images"][0]).tobytes())
    assert codes[0] == codes[1]


def test_bad_argument_is_one_line_naming_the_field_in_a_real_process(tmp_path):
    done = run_cli("generate", "--prompt", "a red circle", "--steps", "0", "--out", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "steps" in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args,field",
    [
        (["generate", "--prompt", "", "--out", "X"], "prompt"),
        (["generate", "--prompt", "x" * 20000, "--out", "X"], "prompt"),
        (["generate", "--prompt", "a", "--seed", "abc", "--out", "X"], "--seed"),
        (["generate", "--prompt", "a", "--seed", "-5", "--out", "X"], "seed"),
        (["generate", "--prompt", "a", "--guidance", "nan", "--out", "X"], "guidance"),
        (["generate", "--prompt", "a", "--height", "65", "--out", "X"], "height"),
        (["generate", "--prompt", "a", "--model", "nope", "--out", "X"], "nope"),
        (["generate", "--prompt", "a"], "--out"),
        (["generate", "--prompt", "a", "--device", "tpu", "--out", "X"], "device"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, field):
    args = [str(tmp_path / "out") if a == "X" else a for a in args]
    out, err = io.StringIO(), io.StringIO()
    assert main(args, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0]


def test_models_json_lists_the_registry():
    out = io.StringIO()
    assert main(["models", "--json"], stdout=out, stderr=io.StringIO()) == 0
    listing = json.loads(out.getvalue())
    names = [m["name"] for m in listing["models"]]
    assert listing["default"] in names and "sd14" in names


def test_unreachable_hub_model_is_one_clear_line(tmp_path):
    err = io.StringIO()
    assert main(["generate", "--prompt", "a dog", "--model", "sd14", "--steps", "1", "--out", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 2
    line = err.getvalue().strip()
    assert "\n" not in line and "CompVis/stable-diffusion-v1-4" in line and "unreachable" in line


def test_train_sae_collects_trains_and_saves_loadable_saes(tmp_path):
    from concepts.sae import load_native

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n\na green triangle\n")
    args = ["train-sae", "--prompts", str(prompts), "--blocks", "mid_block.attentions.0", "--windows", "early", "final", "--steps", "4", "--batch-size", "256", "--lr", "1e-3", "--epochs", "2", "--out", str(tmp_path / "run")]
    out = io.StringIO()
    assert main(args, stdout=out, stderr=io.StringIO()) == 0
    result = json.loads(out.getvalue())
    assert result["prompts"] == 3 and [s["window"] for s in result["saes"]] == ["early", "final"]
    for entry in result["saes"]:
        sae = load_native(entry["folder"])
        assert sae.cfg.block == "mid_block.attentions.0" and sae.cfg.window == entry["window"] and sae.cfg.d_in == 64
        assert sae.cfg.stats["explained_variance"] == pytest.approx(entry["explained_variance"])
        assert 0 < entry["explained_variance"] <= 1 and 0 <= entry["dead_fraction"] <= 1
    # a rerun resumes: nothing to collect or train, the same SAEs come back
    again = io.StringIO()
    assert main(args, stdout=again, stderr=io.StringIO()) == 0
    assert json.loads(again.getvalue())["saes"] == result["saes"]


def test_prompt_past_the_token_context_is_generated_with_a_truncation_warning(tmp_path):
    """The default toy model reads 24 tokens (SD reads 77); the warning names the model's own limit."""
    long_prompt = "a red circle with " + "zigzag " * 20  # unknown words tokenize by character
    out = io.StringIO()
    assert main(["generate", "--prompt", long_prompt, "--steps", "2", "--out", str(tmp_path)], stdout=out, stderr=io.StringIO()) == 0
    warnings = json.loads(out.getvalue())["warnings"]
    assert len(warnings) == 2 and "first 24" in warnings[0]
    assert "does not know the words 'with', 'zigzag'" in warnings[1]  # the toy's closed vocabulary
