"""The shipped toy-shapes world: small, loaded by the SD code path, follows prompts, SAEs that mean something."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from concepts.dictionary import concept_features
from concepts.features import image_activations
from concepts.hooks import BlockHooks
from concepts.pipeline import PipelineCache
from concepts.registry import CHECKPOINTS_DIR, load_registry
from concepts.saes import load_entry
from concepts.sampling import GenerationRequest, generate
from concepts.steps import STAGES
from concepts.toy.judge import load_judge
from concepts.toy.model import HOOK_BLOCKS
from concepts.toy.world import ATTRIBUTES, HELD_OUT

TOY = CHECKPOINTS_DIR / "toy-shapes"


@pytest.fixture(scope="module")
def toy():
    world = load_registry().get("toy-shapes")
    return world, PipelineCache().get(world, device="cpu")


def test_toy_shapes_is_the_default_and_fits_the_size_budget():
    registry = load_registry()
    assert registry.default == "toy-shapes"
    total = sum(f.stat().st_size for f in TOY.rglob("*") if f.is_file())
    assert total <= 40 * 2**20, f"checkpoints/toy-shapes holds {total / 2**20:.1f} MB"
    assert (TOY / "README.md").is_file()  # the model card


def test_sd_module_names_and_grids(toy):
    world, pipe = toy
    names = dict(pipe.unet.named_modules())
    for block in HOOK_BLOCKS.values():
        assert block in names
    seen = {}
    with BlockHooks(pipe.unet, capture=list(HOOK_BLOCKS.values())) as hooks:
        generate(pipe, GenerationRequest("a red circle", seed=0, steps=2, guidance=4.0, height=64, width=64), hooks)
    for block, captures in hooks.captures.items():
        seen[block] = tuple(captures[0].cond.shape[1:3])
    assert seen == {HOOK_BLOCKS["down"]: (8, 8), HOOK_BLOCKS["mid"]: (8, 8), HOOK_BLOCKS["up"]: (16, 16)}


WANTED = [
    {"size": "large", "colour": "red", "texture": "solid", "shape": "square", "position": "top left", "background": "white"},
    {"size": "large", "colour": "blue", "texture": "solid", "shape": "circle", "position": "bottom right", "background": "black"},
    {"size": "large", "colour": "green", "texture": "striped", "shape": "star", "position": "center", "background": "gray"},
    {"size": "small", "colour": "yellow", "texture": "solid", "shape": "triangle", "position": "left", "background": "black"},
    {"size": "large", "colour": "orange", "texture": "outlined", "shape": "cross", "position": "top", "background": "white"},
    {"size": "large", "colour": "purple", "texture": "dotted", "shape": "square", "position": "bottom", "background": "gray"},
]


@pytest.fixture(scope="module")
def judged(toy):
    """The judge's reading of images generated from the WANTED prompts (two seeds each)."""
    from concepts.toy.captions import caption
    from concepts.toy.world import Scene

    world, pipe = toy
    judge = load_judge(TOY / "judge")
    prompts = [caption(Scene(**w)) for w in WANTED] * 2
    result = generate(pipe, GenerationRequest(prompts, seed=7, steps=world.defaults.steps, guidance=world.defaults.guidance, height=64, width=64))
    return list(zip(judge.predict(result.pixels), WANTED * 2))


def test_prompts_condition_the_images(judged):
    """Colour follows the prompt far above chance (1/6): the text reaches the UNet (a floor that
    holds for any usable model, the first thing to fail if the text encoder is not wired in)."""
    hits = sum(j["colour"] == w["colour"] for j, w in judged) / len(judged)
    assert hits >= 2 / 6, f"colour: {hits:.2f} of prompts followed"


def test_position_words_place_the_object(judged):
    """The object goes where the prompt says (chance is 1/9; the model on SD1.x's schedule scored
    0.14 here, because it learned position from the leak of its noisiest training inputs)."""
    hits = sum(j["position"] == w["position"] for j, w in judged) / len(judged)
    assert hits >= 0.75, f"position: {hits:.2f} of prompts followed"


def test_generated_images_meet_the_fidelity_targets(judged):
    """Issue 3's fidelity target (0.9 per attribute) on these images; `evaluate` measures it on 300 prompts."""
    for attribute in ("colour", "position", "background", "shape", "size", "texture"):
        hits = sum(j[attribute] == w[attribute] for j, w in judged)
        assert hits >= 0.9 * len(judged), f"{attribute}: {hits}/{len(judged)} right"


def test_every_registry_sae_loads_against_the_unet_with_a_dictionary(toy):
    world, pipe = toy
    keys = {(e.block, e.window, e.branch) for e in world.saes}
    assert keys == {(b, w, br) for b in HOOK_BLOCKS.values() for w in STAGES for br in ("cond", "uncond")}
    for entry in world.saes:
        loaded = load_entry(world, entry, pipe.unet)
        assert loaded.concepts is not None and loaded.concepts["summary"]["images"] > 0
        assert loaded.sae.cfg.block == entry.block and loaded.sae.cfg.window == entry.window


def test_features_labelled_large_fire_more_on_large_objects_than_small_ones(toy):
    """The dictionary is a claim about the model; check it on prompts it was not built from."""
    world, pipe = toy
    loaded = load_entry(world, world.sae(HOOK_BLOCKS["mid"], "middle"), pipe.unet)
    large_features = concept_features(loaded.concepts, "large")
    activations = {}
    for size in ("large", "small"):
        prompts = [f"a {size} {colour} solid {shape} in the center on a gray background" for colour, shape in (("red", "circle"), ("blue", "square"), ("green", "cross"))]
        with BlockHooks(pipe.unet, capture=[HOOK_BLOCKS["mid"]]) as hooks:
            generate(pipe, GenerationRequest(prompts, seed=11, steps=world.defaults.steps, guidance=world.defaults.guidance, height=64, width=64), hooks)
        middle = [c for c in hooks.captures[HOOK_BLOCKS["mid"]] if 0.2 <= c.step.t < 0.6]
        activations[size] = torch.stack([image_activations(loaded.sae, c.cond)[:, large_features] for c in middle]).mean()
    assert activations["large"] > 2 * activations["small"], activations


def test_evaluate_prints_one_json_object_with_every_measure():
    done = subprocess.run(
        [sys.executable, "-m", "concepts.toy.evaluate", "--prompts", "4", "--held-out-prompts", "2"],
        capture_output=True, text=True, cwd=CHECKPOINTS_DIR.parent, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["prompt_fidelity"]["accuracy"]) >= set(ATTRIBUTES)
    assert len(report["saes"]) == 18 and all(0.0 < row["explained_variance"] <= 1.0 for row in report["saes"])
    assert 0.0 <= report["labelled_share"]["share_of_alive_features"] <= 1.0
    assert report["held_out"]["prompts"] == 2
    drawn = report["held_out"]["shapes_drawn_by_pair"]
    assert sum(n for shapes in drawn.values() for n in shapes.values()) == 2
    assert {tuple(pair.split(" ")) for pair in drawn} <= HELD_OUT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "concepts", *args], capture_output=True, text=True, cwd=CHECKPOINTS_DIR.parent, timeout=300)


def test_steer_cli_writes_baseline_and_a_different_steered_image(tmp_path):
    from PIL import Image

    done = run_cli("steer", "--prompt", "a large blue solid circle in the center on a gray background", "--concept", "dotted",
                   "--block", HOOK_BLOCKS["mid"], "--window", "middle", "--seed", "3", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["applied"]["features"] and result["applied"]["sae_stage"] == "middle"
    baseline, steered = Image.open(result["baseline"][0]), Image.open(result["steered"][0])
    assert baseline.size == steered.size == (64, 64)
    assert baseline.tobytes() != steered.tobytes() and result["mean_pixel_change"] > 0


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--concept", "chartreuse"], "valid:"),
        (["--feature", "3", "--strength", "nan"], "strength"),
        (["--feature", "99999"], "features"),
        (["--feature", "3", "--window", "30:40"], "window"),
        (["--feature", "3", "--region", "upper middle"], "region"),
    ],
)
def test_steer_cli_bad_input_names_the_problem(tmp_path, extra, field):
    done = run_cli("steer", "--prompt", "a red circle", "--out", str(tmp_path), *extra)
    assert done.returncode == 2 and field in done.stderr and "Traceback" not in done.stderr
