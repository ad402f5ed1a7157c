"""Issue 7's real-model worlds without the Hub: SAeUron and sdxl-unbox checkpoints of the real shapes
laid out in a Hub cache and loaded through the shipped registry entries against full-width UNets
(built on the meta device), and the SDXL pipeline path run end to end on a tiny SDXL built from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hubcache import add_folder_to_hub_cache
from safetensors.torch import save_file
from test_sae_formats import write_unbox

from concepts.arch import (
    SAEURON_HOOK_WIDTHS,
    SD14_HOOK_WIDTHS,
    SDXL_UNBOX_HOOK_WIDTHS,
    ArchConfig,
    sd14_unet,
    sdxl_unet,
)
from concepts.errors import CheckpointError, ConceptLabError
from concepts.hooks import block_width, transformer_blocks
from concepts.hub import Source
from concepts.pipeline import PipelineCache, load_pipeline
from concepts.registry import Registry, load_registry
from concepts.saes import load_entry
from concepts.sampling import GenerationRequest, generate
from concepts.tiny import build_tiny_sdxl_pipeline


def saeuron_folder(folder: Path, d: int = 1280, expansion: int = 16, k: int = 32) -> None:
    """A SAeUron (sparsify) SAE folder: their cfg.json keys, random fp16 weights of the given shape."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"expansion_factor": expansion, "normalize_decoder": True, "num_latents": 0, "k": k, "batch_topk": False,
           "sample_topk": False, "input_unit_norm": False, "multi_topk": False, "d_in": d}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    n = expansion * d
    generator = torch.Generator().manual_seed(0)
    save_file({
        "encoder.weight": (torch.randn(n, d, generator=generator) / d**0.5).half(),
        "encoder.bias": torch.zeros(n, dtype=torch.float16),
        "W_dec": (torch.randn(n, d, generator=generator) / d**0.5).half(),
        "b_dec": torch.zeros(d, dtype=torch.float16),
    }, str(folder / "sae.safetensors"))


def test_full_width_sdxl_unet_has_sdxls_size_and_unbox_hook_points():
    with torch.device("meta"):  # SDXL's shapes without allocating 10 GB
        unet = sdxl_unet(ArchConfig(divisor=1))
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684  # stabilityai/sdxl-turbo's UNet
    blocks = transformer_blocks(unet)
    assert len(blocks) == 11  # 4 down, 1 mid, 6 up
    assert {name: block_width(blocks[name]) for name in SDXL_UNBOX_HOOK_WIDTHS} == SDXL_UNBOX_HOOK_WIDTHS
    assert "up_blocks.2.attentions.0" not in blocks and "down_blocks.0.attentions.0" not in blocks


def test_saeuron_blocks_exist_in_sd14_with_their_width():
    with torch.device("meta"):
        blocks = transformer_blocks(sd14_unet(ArchConfig(divisor=1)))
    assert {name: block_width(blocks[name]) for name in {**SAEURON_HOOK_WIDTHS, **SD14_HOOK_WIDTHS}} == {**SAEURON_HOOK_WIDTHS, **SD14_HOOK_WIDTHS}


def test_shipped_saeuron_entries_load_from_the_hub_cache_at_real_shapes(hub_cache, tmp_path):
    world = load_registry().get("sd14-saeuron")
    assert world.pipeline.repo == "CompVis/stable-diffusion-v1-4"
    repo = tmp_path / "saeuron"
    for entry in world.saes:
        saeuron_folder(repo / entry.source.subfolder)
    add_folder_to_hub_cache(hub_cache, "bcywinski/SAeUron", repo)
    with torch.device("meta"):
        unet = sd14_unet(ArchConfig(divisor=1))
    for entry in world.saes:
        assert entry.reads == "output" and entry.window == "all" and entry.source.repo == "bcywinski/SAeUron"
        loaded = load_entry(world, entry, unet=unet)  # also checks the block exists and is 1280 wide
        assert (loaded.sae.num_latents, loaded.sae.cfg.d_in, loaded.sae.cfg.k) == (20480, 1280, 32)
        assert world.sae(entry.block, "middle") == entry  # one SAE for every stage
        codes = loaded.sae.encode_dense(torch.randn(3, 1280, dtype=torch.float16))
        assert codes.shape[-1] == 20480 and int((codes != 0).sum(-1).max()) <= 32


def test_saeuron_options_we_do_not_implement_are_refused(tmp_path):
    from concepts.sae import load_native

    saeuron_folder(tmp_path, d=8, expansion=4, k=2)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "input_unit_norm": True}))
    with pytest.raises(CheckpointError, match="input_unit_norm"):
        load_native(tmp_path)


def test_shipped_unbox_entries_load_from_the_hub_cache_at_real_shapes(hub_cache, tmp_path):
    world = load_registry().get("sdxl-turbo-unbox")
    assert (world.pipeline.repo, world.defaults.steps, world.defaults.guidance) == ("stabilityai/sdxl-turbo", 1, 0.0)
    repo = tmp_path / "unbox"
    for entry in world.saes:
        write_unbox(repo / entry.source.subfolder, n=5120, d=1280)
    add_folder_to_hub_cache(hub_cache, "surokpro2/sdxl-saes", repo)
    with torch.device("meta"):
        unet = sdxl_unet(ArchConfig(divisor=1))
    assert sorted(e.block for e in world.saes) == sorted(SDXL_UNBOX_HOOK_WIDTHS)
    for entry in world.saes:
        loaded = load_entry(world, entry, unet=unet)
        assert (loaded.sae.num_latents, loaded.sae.cfg.d_in, loaded.sae.cfg.k) == (5120, 1280, 10)
        assert loaded.feature_mean.shape == (5120,) and entry.reads == "delta"


def test_an_sae_of_another_model_is_refused_by_width(hub_cache, tmp_path):
    world = load_registry().get("sdxl-turbo-unbox")
    entry = world.saes[0]
    repo = tmp_path / "wrong"
    write_unbox(repo / entry.source.subfolder, n=64, d=16)
    add_folder_to_hub_cache(hub_cache, "surokpro2/sdxl-saes", repo)
    with torch.device("meta"):
        unet = sdxl_unet(ArchConfig(divisor=1))
    with pytest.raises(Exception, match="1280|width"):
        load_entry(world, entry, unet=unet)


@pytest.fixture(scope="module")
def tiny_sdxl_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    build_tiny_sdxl_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("guidance", [0.0, 5.0])
def test_sdxl_pipeline_from_the_hub_cache_samples_as_diffusers_does(hub_cache, tiny_sdxl_folder, guidance):
    add_folder_to_hub_cache(hub_cache, "lab/tiny-sdxl", tiny_sdxl_folder)
    pipe = load_pipeline(Source(repo="lab/tiny-sdxl"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and type(pipe.scheduler).__name__ == "DDIMScheduler"
    request = GenerationRequest("a red circle", seed=3, steps=2, guidance=guidance, height=64, width=64)
    ours = generate(pipe, request).pixels
    theirs = pipe("a red circle", num_inference_steps=2, guidance_scale=guidance, height=64, width=64,
                  generator=torch.Generator("cpu").manual_seed(3), output_type="pt").images
    assert torch.equal(ours, theirs.float())


def test_incomplete_sdxl_folder_names_the_missing_encoder(tmp_path, tiny_sdxl_folder):
    import shutil

    broken = tmp_path / "no-encoder-2"
    shutil.copytree(tiny_sdxl_folder, broken)
    shutil.rmtree(broken / "text_encoder_2")
    with pytest.raises(CheckpointError, match="text_encoder_2"):
        load_pipeline(Source(path=str(broken)), device="cpu")


@pytest.fixture(scope="module")
def sdxl_world(tmp_path_factory, tiny_sdxl_folder) -> Registry:
    """A registry world like sdxl-turbo-unbox, small: the tiny SDXL and unbox-format SAEs on its blocks."""
    root = tmp_path_factory.mktemp("sdxl-world")
    blocks = ["down_blocks.1.attentions.1", "up_blocks.0.attentions.0"]
    for block in blocks:
        write_unbox(root / "saes" / f"unet.{block}_k10" / "final", n=128, d=64)
    data = {"default": "tiny-sdxl-unbox", "models": {"tiny-sdxl-unbox": {
        "pipeline": {"path": str(tiny_sdxl_folder)},
        "defaults": {"steps": 1, "guidance": 0.0, "height": 64, "width": 64},
        "saes": [{"block": b, "window": "all", "format": "unbox", "path": str(root / "saes"), "subfolder": f"unet.{b}_k10/final"} for b in blocks],
    }}}
    (root / "registry.json").write_text(json.dumps(data))
    return Registry.from_file(root / "registry.json")


def test_sdxl_world_steers_explores_and_follows_one_step(sdxl_world):
    from concepts.evolve.evolution import run_evolution
    from concepts.steer.explore import run_explore
    from concepts.steer.service import SteerSpec, run_steering

    cache = PipelineCache()
    block = "up_blocks.0.attentions.0"
    explored = run_explore(None, "a red circle", block, "all", seed=1, device="cpu", registry=sdxl_world, cache=cache)
    assert explored.maps.shape[-1] == 128 and explored.maps.sum() > 0
    spec = SteerSpec(block=block, window="all", strength=40.0, features=(explored.top[0].id,), region="global")
    outcome = run_steering(None, "a red circle", spec, seed=1, device="cpu", registry=sdxl_world, cache=cache)
    assert float(outcome.change.max()) > 1e-4  # the edit reached the image (unedited, the two are bit-identical)
    evolution = run_evolution(None, "a red circle", seed=1, device="cpu", registry=sdxl_world, cache=cache)
    assert len(evolution.previews) == 1 and set(evolution.traces) == {"down_blocks.1.attentions.1", block}


def test_erase_on_sdxl_is_a_clear_error_not_a_traceback(sdxl_world):
    from concepts.edit.service import EditSpec, run_edit

    with pytest.raises(ConceptLabError, match="SDXL"):
        run_edit(None, EditSpec("red", "erase"), device="cpu", registry=sdxl_world, cache=PipelineCache())


def test_app_switches_the_steer_window_to_all_for_models_without_stages():
    import ui.steer

    assert ui.steer.model_window("sdxl-turbo-unbox")["value"] == "all"  # one step: no middle stage exists
    assert ui.steer.model_window("sd14-saeuron")["value"] == "all"  # one SAE for every step
    assert ui.steer.model_window("toy-shapes")["value"] == "middle"


def test_space_front_matter_lists_every_hub_repo_the_registry_pulls():
    import yaml

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    registry = load_registry()
    pulled = {w.pipeline.repo for w in registry.models.values()} | {e.source.repo for w in registry.models.values() for e in w.saes}
    assert pulled - {None} <= set(meta["models"])  # the Space page links the models it uses


def test_sd14_sae_repo_is_set_by_the_environment(monkeypatch, tmp_path):
    shipped = json.loads((Path(__file__).resolve().parent.parent / "checkpoints" / "registry.json").read_text())
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(shipped))
    monkeypatch.delenv("CONCEPT_LAB_SD14_SAES", raising=False)
    assert Registry.from_file(path).get("sd14").saes == ()  # not published yet: no SAEs, no broken menu entries
    monkeypatch.setenv("CONCEPT_LAB_SD14_SAES", "lab/sd14-saes")
    world = Registry.from_file(path).get("sd14")
    assert {(e.block, e.window) for e in world.saes} == {(b, w) for b in SD14_HOOK_WIDTHS for w in ("early", "middle", "final")}
    assert {e.source.repo for e in world.saes} == {"lab/sd14-saes"}
    assert world.sae("mid_block.attentions.0", "middle").source.subfolder == "saes/mid_block.attentions.0/middle/cond"  # `concepts.train`'s upload layout
    monkeypatch.setenv("CONCEPT_LAB_SD14_SAES", "../escape")
    with pytest.raises(CheckpointError):
        Registry.from_file(path)
