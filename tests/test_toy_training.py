"""The toy training scripts run end to end at a tiny size, resume, and write what the registry loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from concepts.pipeline import load_pipeline_from_folder, pick_device
from concepts.sae import load_concepts, load_native

ROOT = Path(__file__).resolve().parent.parent
TINY_RECIPE = ["--images", "48", "--vae-batch", "4", "--unet-batch", "4", "--vae-crop", "32"]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_toy_train_exports_a_pipeline_and_resumes(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    first = run_module("concepts.toy.train", "--run", str(run), "--out", str(out), *TINY_RECIPE, "--vae-steps", "2", "--unet-steps", "2")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["done"] is True
    pipe = load_pipeline_from_folder(out, pick_device("cpu"))
    assert pipe.tokenizer.model_max_length == 24 and pipe.vae.config.scaling_factor != 0.18215
    # The recipe's noise schedule is the saved one: zero terminal SNR, v-prediction, trailing steps.
    scheduler = pipe.scheduler.config
    assert (scheduler.prediction_type, scheduler.rescale_betas_zero_snr, scheduler.timestep_spacing) == ("v_prediction", True, "trailing")
    assert float(pipe.scheduler.alphas_cumprod[-1]) == 0.0
    # More steps asked for: the UNet stage continues from its checkpoint instead of starting over.
    second = run_module("concepts.toy.train", "--run", str(run), "--out", str(out), *TINY_RECIPE, "--vae-steps", "2", "--unet-steps", "4")
    assert second.returncode == 0, second.stderr
    assert json.loads((run / "unet" / "state.json").read_text())["step"] == 4
    log = (run / "train.log").read_text()
    assert "resuming unet at step 2" in log and "resuming vae" not in log  # the finished VAE is not retrained
    assert (run / "data.safetensors").is_file() and (run / "latents.safetensors").is_file()
    # Exporting a run again keeps the recipe it was trained with (not the flags' defaults).
    recipe = (run / "recipe.json").read_text()
    export = run_module("concepts.toy.train", "--run", str(run), "--out", str(tmp_path / "again"), "--export-only")
    assert export.returncode == 0, export.stderr
    assert (run / "recipe.json").read_text() == recipe and json.loads(recipe)["unet_steps"] == 4


def test_noise_schedules_are_named_and_sd_is_sd1s():
    import pytest

    from concepts.toy.model import build_scheduler

    sd = build_scheduler("sd").config
    assert (sd.prediction_type, sd.rescale_betas_zero_snr, sd.timestep_spacing, sd.steps_offset) == ("epsilon", False, "leading", 1)
    assert build_scheduler().config.steps_offset == 1  # nothing for StableDiffusionPipeline to rewrite
    with pytest.raises(ValueError, match="zero-snr-v"):
        build_scheduler("cosine")


def test_training_continues_from_a_saved_pipeline(tmp_path):
    """--init-from: the saved VAE is kept as trained, the UNet starts from the saved weights."""
    import torch
    from safetensors.torch import load_file

    first = run_module("concepts.toy.train", "--run", str(tmp_path / "a"), "--out", str(tmp_path / "pipe"), *TINY_RECIPE, "--vae-steps", "2", "--unet-steps", "1")
    assert first.returncode == 0, first.stderr
    again = run_module("concepts.toy.train", "--run", str(tmp_path / "b"), "--out", str(tmp_path / "more"), *TINY_RECIPE,
                       "--init-from", str(tmp_path / "pipe"), "--unet-steps", "1")
    assert again.returncode == 0, again.stderr
    log = (tmp_path / "b" / "train.log").read_text()
    assert "start from" in log and " vae step " not in log  # no VAE step was taken
    saved_vae = load_file(str(tmp_path / "pipe" / "vae" / "diffusion_pytorch_model.safetensors"))
    kept_vae = load_file(str(tmp_path / "more" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(saved_vae[k], kept_vae[k]) for k in saved_vae)
    saved_unet = load_file(str(tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors"))
    new_unet = load_file(str(tmp_path / "more" / "unet" / "diffusion_pytorch_model.safetensors"))
    changed = [k for k in saved_unet if not torch.equal(saved_unet[k], new_unet[k])]
    assert changed and max(float((saved_unet[k] - new_unet[k]).abs().max()) for k in changed) < 0.1  # a step on, not a restart


def test_toy_saes_train_and_get_dictionaries(tmp_path):
    """A random toy pipeline is enough to check the plumbing (its features get few labels)."""
    import torch

    from concepts.toy.model import HOOK_BLOCKS, assemble_pipeline, build_text_encoder, build_tokenizer_for_toy, build_unet, build_vae

    torch.manual_seed(0)
    tokenizer = build_tokenizer_for_toy()
    assemble_pipeline(build_vae(), build_text_encoder(tokenizer), tokenizer, build_unet()).save_pretrained(tmp_path / "pipe")
    done = run_module(
        "concepts.toy.saes", "--pipeline", str(tmp_path / "pipe"), "--out", str(tmp_path / "out"), "--run", str(tmp_path / "run"),
        "--prompts", "8", "--dictionary-prompts", "12", "--steps", "5", "--prompts-per-batch", "4", "--epochs", "1", "--quiet",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["saes"]) == 18 and len(report["dictionaries"]) == 18
    folder = tmp_path / "out" / "saes" / HOOK_BLOCKS["mid"] / "middle" / "cond"
    sae = load_native(folder)
    assert (sae.cfg.block, sae.cfg.window, sae.cfg.branch, sae.cfg.d_in) == (HOOK_BLOCKS["mid"], "middle", "cond", 64)
    concepts = load_concepts(folder)
    assert concepts["summary"]["images"] == 12 and len(concepts["features"]) == sae.num_latents
    assert not (folder / "checkpoint").exists()  # the trainer's resumable state stays in the run folder
    assert (tmp_path / "run" / "saes" / HOOK_BLOCKS["mid"] / "middle" / "cond" / "checkpoint").is_dir()
