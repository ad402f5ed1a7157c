"""Activation collection: the right rows in the right shard folders, resumable without duplicates."""

from __future__ import annotations

import pytest
import torch

import concepts.training.collect as collect_module
from concepts.errors import InvalidInputError
from concepts.training import ShardReader
from concepts.training.collect import CollectConfig, collect_activations

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a red square", "a blue circle"]
MID, UP = "mid_block.attentions.0", "up_blocks.1.attentions.0"


def config(**overrides) -> CollectConfig:
    values = dict(blocks=(MID, UP), windows=("early", "final"), branches=("cond", "uncond"), steps=4, guidance=7.5, height=64, width=64, prompts_per_batch=2, chunk_prompts=2, rows_per_shard=1000, dtype="float32")
    values.update(overrides)
    return CollectConfig(**values)


def all_rows(folder) -> torch.Tensor:
    reader = ShardReader(folder)
    return torch.cat([reader.load_shard(i) for i in range(len(reader.shards))])


def test_rows_per_block_window_and_branch(tmp_path, tiny_pipe):
    result = collect_activations(tiny_pipe, PROMPTS, tmp_path, config(), progress=False)
    assert result.prompts_done == 5
    # one representative step per window; mid is 16x16, up_blocks.1 is 32x32 at 64 px
    assert result.rows[(MID, "early", "cond")] == 5 * 16 * 16
    assert result.rows[(UP, "final", "uncond")] == 5 * 32 * 32
    reader = ShardReader(result.folders[(MID, "early", "cond")])
    assert reader.d == 64 and reader.meta["block"] == MID and reader.meta["window"] == "early"
    cond, uncond = all_rows(result.folders[(MID, "early", "cond")]), all_rows(result.folders[(MID, "early", "uncond")])
    assert not torch.equal(cond, uncond)
    assert not torch.equal(cond, all_rows(result.folders[(MID, "final", "cond")]))


def test_interrupted_collection_resumes_without_duplicates(tmp_path, tiny_pipe, monkeypatch):
    # batches of one prompt, checkpoints every two prompts, shards small enough to be flushed mid-chunk
    cfg = config(prompts_per_batch=1, chunk_prompts=2, rows_per_shard=300)
    whole = collect_activations(tiny_pipe, PROMPTS, tmp_path / "whole", cfg, progress=False)
    calls = {"n": 0}
    real_sample = collect_module.sample

    def crash_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # prompt 3: prompts 0-1 are checkpointed, prompt 2 wrote shards past it
            raise KeyboardInterrupt("killed")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(collect_module, "sample", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        collect_activations(tiny_pipe, PROMPTS, tmp_path / "split", cfg, progress=False)
    assert ShardReader(tmp_path / "split" / UP / "early" / "cond").rows > 2 * 32 * 32  # rows past the checkpoint
    monkeypatch.setattr(collect_module, "sample", real_sample)
    resumed = collect_activations(tiny_pipe, PROMPTS, tmp_path / "split", cfg, progress=False)
    assert resumed.rows == whole.rows
    for key in whole.folders:
        torch.testing.assert_close(all_rows(resumed.folders[key]), all_rows(whole.folders[key]))


def test_another_prompt_list_in_the_same_folder_is_refused(tmp_path, tiny_pipe):
    collect_activations(tiny_pipe, PROMPTS[:2], tmp_path, config(blocks=(MID,), windows=("early",), branches=("cond",)), progress=False)
    with pytest.raises(InvalidInputError, match="another prompt list"):
        collect_activations(tiny_pipe, PROMPTS[2:], tmp_path, config(blocks=(MID,), windows=("early",), branches=("cond",)), progress=False)


@pytest.mark.parametrize("kwargs,field", [({"windows": ("noon",)}, "windows"), ({"branches": ("uncond",), "guidance": 1.0}, "branches"), ({"blocks": ()}, "blocks")])
def test_bad_collect_config_names_the_field(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        config(**kwargs)
    assert info.value.field == field


def test_activations_of_other_weights_in_the_same_folder_are_refused(tmp_path, tiny_pipe):
    """A retrained model must not reuse (or resume into) the old model's activations."""
    cfg = config(blocks=(MID,), windows=("early",), branches=("cond",))
    collect_activations(tiny_pipe, PROMPTS[:2], tmp_path, cfg, progress=False)
    collect_activations(tiny_pipe, PROMPTS[:2], tmp_path, cfg, progress=False)  # same weights: reused
    weight = next(tiny_pipe.unet.parameters())
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(0.01)
        with pytest.raises(InvalidInputError, match="other model weights"):
            collect_activations(tiny_pipe, PROMPTS[:2], tmp_path, cfg, progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
