"""Our SAE loader against the code that writes the checkpoints: EleutherAI's sparsify (eai-sparsify,
installed from PyPI and run for real) and the flags SAeUron's training writes into cfg.json.

Saved by sparsify, loaded by us (and the reverse), the same input gives the same top-k latents and
the same reconstruction; a checkpoint whose encoder differs from TopK (groupmax) is refused by name;
SAeUron's training-only `batch_topk` loads and runs per-sample TopK, as SAeUron's own loader does;
a checkpoint stored in fp16 runs in fp32."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder, SparseCoderConfig

from concepts.errors import CheckpointError
from concepts.sae import SAEConfig, TopKSAE, load_native, save_native

D, K = 32, 4


def sparsify_coder(activation: str = "topk", seed: int = 0) -> SparseCoder:
    torch.manual_seed(seed)
    coder = SparseCoder(D, SparseCoderConfig(activation=activation, expansion_factor=4, k=K))
    with torch.no_grad():  # not its zero-bias, tied initialisation: every parameter matters
        coder.encoder.bias.normal_(0, 0.1)
        coder.b_dec.normal_(0, 0.1)
        coder.W_dec.add_(0.05 * torch.randn_like(coder.W_dec))
    return coder


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(64, D, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def assert_same(ours: TopKSAE, theirs: SparseCoder, x: torch.Tensor) -> None:
    mine, other = ours.encode(x), theirs.encode(x)
    assert torch.equal(mine.top_indices.sort(-1).values, other.top_indices.sort(-1).values)  # the same top-k sets
    assert torch.allclose(mine.top_acts.sort(-1).values, other.top_acts.float().sort(-1).values, rtol=1e-5, atol=1e-6)
    a, b = ours.decode(*mine), theirs.decode(other.top_acts, other.top_indices)
    assert float((a - b).norm() / b.norm()) < 1e-4


def test_saved_by_sparsify_loaded_by_us(tmp_path):
    coder = sparsify_coder()
    coder.save_to_disk(tmp_path)
    ours = load_native(tmp_path)
    assert (ours.cfg.d_in, ours.num_latents, ours.cfg.k) == (D, 4 * D, K)
    assert_same(ours, coder, inputs())


def test_saved_by_us_loaded_by_sparsify(tmp_path):
    torch.manual_seed(3)
    ours = TopKSAE(SAEConfig(d_in=D, expansion_factor=4, k=K, block="mid_block.attentions.0", window="early"))
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.2)
    save_native(ours, tmp_path)
    theirs = SparseCoder.load_from_disk(tmp_path)  # our extra cfg.json fields are dropped by its loader
    assert_same(ours, theirs, inputs(2))


def test_a_groupmax_checkpoint_is_refused_naming_activation(tmp_path):
    sparsify_coder("groupmax").save_to_disk(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["activation"] == "groupmax"
    with pytest.raises(CheckpointError, match="activation 'groupmax'"):
        load_native(tmp_path)


def test_saeurons_training_flags_load_and_encode_per_sample(tmp_path):
    """SAeUron writes `batch_topk: true` (its published SAEs are trained so); inference is TopK of each
    sample's own pre-activations."""
    coder = sparsify_coder(seed=5)
    coder.save_to_disk(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg.update(batch_topk=True, sample_topk=False, input_unit_norm=False, multi_topk=False)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    ours = load_native(tmp_path)
    assert ours.cfg.training_only == ["batch_topk"]
    x = inputs(4)
    pre = torch.relu((x - coder.b_dec.detach()) @ coder.encoder.weight.detach().T + coder.encoder.bias.detach())
    expected = torch.zeros_like(pre).scatter(-1, pre.topk(K, dim=-1).indices, pre.topk(K, dim=-1).values)
    assert torch.equal(ours.encode_dense(x), expected)
    for flag in ("input_unit_norm", "skip_connection", "transcode"):  # still refused: they change inference
        (tmp_path / "cfg.json").write_text(json.dumps({**cfg, flag: True}))
        with pytest.raises(CheckpointError, match=flag):
            load_native(tmp_path)


def test_an_fp16_checkpoint_runs_in_fp32(tmp_path):
    coder = sparsify_coder(seed=7)
    coder.save_to_disk(tmp_path)
    path = tmp_path / "sae.safetensors"
    half = {k: v.half() for k, v in load_file(str(path)).items()}
    save_file(half, str(path))
    ours = load_native(tmp_path)
    assert ours.dtype == torch.float32
    upcast = {k: v.float() for k, v in half.items()}
    x = inputs(6)
    pre = torch.relu((x - upcast["b_dec"]) @ upcast["encoder.weight"].T + upcast["encoder.bias"])
    assert torch.allclose(ours.pre_acts(x), pre, atol=1e-6)


def test_the_explore_info_says_how_a_checkpoint_with_training_flags_is_run(tmp_path):
    from concepts.saes import LoadedSAE, loading_notes

    coder = sparsify_coder(seed=9)
    coder.save_to_disk(tmp_path)
    plain = load_native(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "batch_topk": True}))
    flagged = load_native(tmp_path)
    assert loading_notes(LoadedSAE(None, plain, None, None, None)) == []
    (note,) = loading_notes(LoadedSAE(None, flagged, None, None, None))
    assert "batch_topk" in note and "per-sample TopK" in note
