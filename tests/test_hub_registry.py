"""Registry and Hub resolution: real huggingface_hub code against a Hub cache laid out offline."""

from __future__ import annotations

import json

import pytest
import torch

from concepts.errors import CheckpointError, HubUnavailableError, InvalidInputError, UnknownNameError
from concepts.hub import Source, resolve
from concepts.pipeline import load_pipeline
from concepts.registry import Registry, load_registry
from concepts.sampling import GenerationRequest, generate
from hubcache import add_folder_to_hub_cache, add_to_hub_cache


def test_shipped_registry_loads_with_a_runnable_default():
    registry = load_registry()
    world = registry.get()
    assert world.name == registry.default and world.name in registry.names
    assert world.pipeline.path is not None and (world.base_dir / world.pipeline.path / "model_index.json").is_file()
    assert "sd14" in registry.names and registry.get("sd14").pipeline.repo == "CompVis/stable-diffusion-v1-4"


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        load_registry().get("sd-99")
    assert "sd-99" in str(info.value) and "sd14" in str(info.value)


def test_malformed_registry_files_name_the_file(tmp_path):
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{not json")
    with pytest.raises(CheckpointError, match="broken.json"):
        Registry.from_file(bad_json)
    bad_window = tmp_path / "window.json"
    bad_window.write_text(json.dumps({"models": {"m": {"pipeline": {"path": "x"}, "saes": [{"block": "b", "window": "noon", "path": "s"}]}}}))
    with pytest.raises(CheckpointError, match="window"):
        Registry.from_file(bad_window)
    no_pipeline = tmp_path / "nopipe.json"
    no_pipeline.write_text(json.dumps({"models": {"m": {}}}))
    with pytest.raises(CheckpointError, match="nopipe.json.*pipeline"):
        Registry.from_file(no_pipeline)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"repo": "../../etc"},
        {"repo": "owner/../name"},
        {"repo": "no-slash"},
        {"repo": "a/b", "subfolder": "../../outside"},
        {"repo": "a/b", "subfolder": "/abs"},
        {"repo": "a/b", "revision": "../main"},
        {"repo": "a/b", "path": "x"},
    ],
)
def test_sources_refuse_names_that_escape_the_cache(kwargs):
    with pytest.raises(InvalidInputError):
        Source(**kwargs)


def test_resolve_finds_a_subfolder_in_the_hub_cache_offline(hub_cache):
    snapshot = add_to_hub_cache(hub_cache, "lab/saes", {"mid/early/cfg.json": b"{}", "mid/early/sae.safetensors": b"x", "other/big.bin": b"y"})
    folder = resolve(Source(repo="lab/saes", subfolder="mid/early"), required=["cfg.json", "sae.safetensors"])
    assert folder == snapshot / "mid" / "early"
    assert json.loads((folder / "cfg.json").read_text()) == {}


def test_missing_file_names_repo_and_file(hub_cache):
    add_to_hub_cache(hub_cache, "lab/partial", {"mid/early/cfg.json": b"{}"})
    with pytest.raises(CheckpointError) as info:
        resolve(Source(repo="lab/partial", subfolder="mid/early"), required=["cfg.json", "sae.safetensors"])
    message = str(info.value)
    assert "lab/partial" in message and "sae.safetensors" in message


def test_repo_not_cached_while_offline_says_hub_unreachable(hub_cache):
    with pytest.raises(HubUnavailableError) as info:
        resolve(Source(repo="lab/never-downloaded"), required=["model_index.json"])
    message = str(info.value)
    assert "lab/never-downloaded" in message and "hf download" in message


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve(Source(path=str(tmp_path / "nowhere")), required=[])


def test_pipeline_loads_from_hub_cache_like_a_local_folder(hub_cache, tiny_folder):
    add_folder_to_hub_cache(hub_cache, "lab/tiny-sd", tiny_folder)
    # a repo also holds files we must not fetch or load
    request = GenerationRequest("a red circle", seed=5, steps=3, height=64, width=64)
    from_hub = load_pipeline(Source(repo="lab/tiny-sd"), device="cpu")
    from_disk = load_pipeline(Source(path=str(tiny_folder)), device="cpu")
    assert type(from_hub.scheduler).__name__ == "DDIMScheduler"
    assert from_hub.safety_checker is None
    assert torch.equal(generate(from_hub, request).pixels, generate(from_disk, request).pixels)


def test_corrupt_pipeline_folder_is_a_checkpoint_error(tmp_path, tiny_folder):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken"):
        load_pipeline(Source(path=str(broken)), device="cpu")
    (broken / "model_index.json").write_text("{")
    with pytest.raises(CheckpointError, match="model_index.json"):
        load_pipeline(Source(path=str(broken)), device="cpu")
    not_sd = tmp_path / "not-sd"
    not_sd.mkdir()
    (not_sd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CheckpointError, match="lacks unet"):
        load_pipeline(Source(path=str(not_sd)), device="cpu")
