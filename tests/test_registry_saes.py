"""Registry SAEs: loaded from the Hub cache or disk, checked against the block they read."""

from __future__ import annotations

import json

import pytest
import torch

from concepts.errors import CheckpointError, UnknownNameError
from concepts.registry import Registry
from concepts.sae import SAEConfig, TopKSAE, save_native
from concepts.saes import SAECache, load_entry
from hubcache import add_folder_to_hub_cache


def registry_with(tmp_path, saes: list[dict]) -> Registry:
    data = {"models": {"tiny": {"pipeline": {"path": "unused"}, "saes": saes}}}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data))
    return Registry.from_file(path)


def make_sae(folder, d_in: int, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SAEConfig(d_in=d_in, k=4, block="mid_block.attentions.0", window="early"))
    save_native(sae, folder, concepts={"features": {"0": {"label": "red", "precision": 0.9}}})
    return sae


def test_sae_from_hub_cache_fits_its_block(tmp_path, hub_cache, tiny_pipe):
    staged = tmp_path / "staged"
    original = make_sae(staged / "mid" / "early", d_in=64)
    add_folder_to_hub_cache(hub_cache, "lab/tiny-saes", staged)
    registry = registry_with(tmp_path, [{"block": "mid_block.attentions.0", "window": "early", "repo": "lab/tiny-saes", "subfolder": "mid/early"}])
    world = registry.get("tiny")
    loaded = SAECache().get(world, "mid_block.attentions.0", "early", unet=tiny_pipe.unet)
    assert torch.equal(loaded.sae.W_dec, original.W_dec)
    assert loaded.concepts["features"]["0"]["label"] == "red"
    assert loaded.feature_mean is None


def test_width_mismatch_is_a_clear_error(tmp_path, tiny_pipe):
    make_sae(tmp_path / "saes" / "wide", d_in=1280)
    registry = registry_with(tmp_path, [{"block": "mid_block.attentions.0", "window": "early", "path": "saes/wide"}])
    world = registry.get("tiny")
    with pytest.raises(CheckpointError, match=r"1280.*mid_block.attentions.0.*64"):
        load_entry(world, world.saes[0], unet=tiny_pipe.unet)


def test_sae_for_a_block_the_model_lacks(tmp_path, tiny_pipe):
    make_sae(tmp_path / "saes" / "x", d_in=64)
    registry = registry_with(tmp_path, [{"block": "up_blocks.0.attentions.0", "window": "early", "path": "saes/x"}])
    world = registry.get("tiny")
    with pytest.raises(UnknownNameError, match="up_blocks.0.attentions.0"):
        load_entry(world, world.saes[0], unet=tiny_pipe.unet)


def test_unknown_window_lists_available_saes(tmp_path):
    registry = registry_with(tmp_path, [{"block": "mid_block.attentions.0", "window": "early", "path": "x"}])
    with pytest.raises(UnknownNameError, match="mid_block.attentions.0/early/cond"):
        registry.get("tiny").sae("mid_block.attentions.0", "final")


def test_sae_missing_from_offline_hub(tmp_path):
    registry = registry_with(tmp_path, [{"block": "mid_block.attentions.0", "window": "early", "repo": "lab/not-cached", "subfolder": "mid"}])
    world = registry.get("tiny")
    with pytest.raises(CheckpointError, match="lab/not-cached"):
        load_entry(world, world.saes[0])
