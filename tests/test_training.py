"""Training: sharded activations on disk, geometric-median init, and a resumable SAE trainer.

The trainer is checked on activations built from a KNOWN sparse dictionary, where a working TopK
SAE must explain nearly all the variance, and on exact resumption after an interruption.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from concepts.errors import CheckpointError, InvalidInputError
from concepts.sae import load_native
from concepts.training import (
    ShardReader,
    ShardWriter,
    TrainConfig,
    geometric_median,
    train_sae,
    truncate_shards,
    weiszfeld,
)

# ---------------------------------------------------------------- shards


def _write(folder: Path, x: torch.Tensor, rows_per_shard: int = 64, chunk: int = 50, **kw) -> None:
    with ShardWriter(folder, x.shape[1], rows_per_shard=rows_per_shard, **kw) as writer:
        for part in x.split(chunk):
            writer.add(part)


def _ids(n: int, d: int = 4) -> torch.Tensor:
    """Rows whose first column is a unique id (exact in float16 up to 2048)."""
    x = torch.randn(n, d)
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    return x


def test_shards_round_trip_every_row_once_per_epoch(tmp_path):
    x = _ids(300)
    _write(tmp_path, x, meta={"block": "mid"})
    files = sorted(p.name for p in tmp_path.glob("shard_*.safetensors"))
    assert files == [f"shard_{i:05d}.safetensors" for i in range(5)]  # 64 * 4 + 44
    reader = ShardReader(tmp_path)
    assert (reader.d, reader.rows, reader.meta) == (4, 300, {"block": "mid", "closed_shards": 5})
    batches = list(reader.iter_batches(32, seed=0, epoch=0))
    assert all(b.dtype == torch.float32 and b.shape[1] == 4 for b in batches)
    assert [b.shape[0] for b in batches] == [32] * 9 + [12]
    ids = torch.cat(batches)[:, 0]
    assert sorted(ids.long().tolist()) == list(range(300))
    # Stored as float16: values come back rounded, not garbled.
    by_id = torch.cat(batches)[ids.argsort()]
    assert torch.allclose(by_id, x, atol=1e-2)
    other_seed = torch.cat(list(reader.iter_batches(32, seed=1, epoch=0)))[:, 0]
    other_epoch = torch.cat(list(reader.iter_batches(32, seed=0, epoch=1)))[:, 0]
    again = torch.cat(list(reader.iter_batches(32, seed=0, epoch=0)))[:, 0]
    assert torch.equal(again, ids)
    assert not torch.equal(other_seed, ids) and not torch.equal(other_epoch, ids)
    # Resuming mid-epoch gives exactly the batches that were left.
    tail = list(reader.iter_batches(32, seed=0, epoch=0, start_batch=7))
    assert torch.equal(torch.cat(tail), torch.cat(batches[7:]))


def test_sample_draws_distinct_rows(tmp_path):
    _write(tmp_path, _ids(300))
    reader = ShardReader(tmp_path)
    sample = reader.sample(100, seed=3)
    assert sample.shape == (100, 4)
    assert len(set(sample[:, 0].long().tolist())) == 100
    assert reader.sample(10_000).shape == (300, 4)  # capped at the data size


def test_reopening_appends_after_last_shard(tmp_path):
    x = _ids(200)
    _write(tmp_path, x[:130])
    _write(tmp_path, x[130:], meta={"part": 2})
    reader = ShardReader(tmp_path)
    assert reader.rows == 200 and reader.meta == {"part": 2, "closed_shards": 5}
    assert len(list(tmp_path.glob("shard_*.safetensors"))) == 3 + 2  # 64+64+2, then 64+6
    ids = torch.cat(list(reader.iter_batches(64)))[:, 0]
    assert sorted(ids.long().tolist()) == list(range(200))


def test_truncate_rewinds_to_the_last_close(tmp_path):
    x = _ids(200)
    _write(tmp_path, x[:130])  # closed with 3 shards
    writer = ShardWriter(tmp_path, 4, rows_per_shard=64)
    writer.add(x[130:])  # one more full shard reaches disk; the writer is never closed (killed)
    assert ShardReader(tmp_path).rows == 130 + 64
    truncate_shards(tmp_path, ShardReader(tmp_path).meta["closed_shards"])
    reader = ShardReader(tmp_path)
    assert reader.rows == 130 and len(list(tmp_path.glob("shard_*.safetensors"))) == 3


def test_killed_writer_leaves_a_readable_folder(tmp_path):
    writer = ShardWriter(tmp_path, 4, rows_per_shard=64)
    writer.add(_ids(150))  # two shards on disk, 22 rows buffered, never closed
    reader = ShardReader(tmp_path)
    assert reader.rows == 128


def test_width_mismatch_is_refused(tmp_path):
    with ShardWriter(tmp_path, 4) as writer:
        with pytest.raises(InvalidInputError, match=r"\[N, 4\]"):
            writer.add(torch.zeros(3, 5))
        writer.add(torch.zeros(3, 4))
    with pytest.raises(InvalidInputError, match="width 4"):
        ShardWriter(tmp_path, 8)


def test_corrupt_manifest_and_shard_name_the_file(tmp_path):
    _write(tmp_path, _ids(100))
    (tmp_path / "shard_00001.safetensors").write_bytes(b"not a safetensors file")
    reader = ShardReader(tmp_path)
    with pytest.raises(CheckpointError, match="shard_00001"):
        list(reader.iter_batches(16))
    (tmp_path / "manifest.json").write_text("{ broken")
    with pytest.raises(CheckpointError, match="manifest.json"):
        ShardReader(tmp_path)
    with pytest.raises(CheckpointError, match="manifest.json"):
        ShardReader(tmp_path / "missing")


# ---------------------------------------------------------------- geometric median


def test_geometric_median_of_symmetric_points_is_the_centre():
    centre = torch.tensor([3.0, -2.0, 0.5])
    offsets = torch.cat([torch.eye(3), -torch.eye(3)]) * torch.tensor([1.0, 2.0, 5.0])
    result = weiszfeld(centre + offsets)
    assert result.converged
    assert torch.allclose(result.median, centre, atol=1e-5)


def test_geometric_median_resists_an_outlier():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(99, 8, generator=gen) * 0.1
    points = torch.cat([points, torch.full((1, 8), 1000.0)])
    assert points.mean(0).norm() > 20  # the mean is dragged far away
    assert geometric_median(points).norm() < 0.2
    on_a_point = geometric_median(torch.zeros(5, 2))  # every distance zero: no division by zero
    assert torch.isfinite(on_a_point).all() and on_a_point.abs().max() == 0


# ---------------------------------------------------------------- trainer

# 48 atoms in 32 dimensions: overcomplete in use (3 active of 48) yet incoherent enough for a linear
# encoder to tell them apart, so a working trainer clearly clears EV 0.9 and recovers the atoms.
D, ATOMS, ACTIVE = 32, 48, 3


def _sparse_data(folder: Path, n: int = 8192, seed: int = 0) -> torch.Tensor:
    """Rows = 3 of 48 known unit directions with positive weights, a common offset, and small noise."""
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(ATOMS, D, generator=gen), dim=1)
    which = torch.rand(n, ATOMS, generator=gen).argsort(1)[:, :ACTIVE]
    mags = 1.0 + torch.rand(n, ACTIVE, generator=gen)
    x = (mags[..., None] * atoms[which]).sum(1) + 0.5 + 0.02 * torch.randn(n, D, generator=gen)
    _write(folder, x, rows_per_shard=2048, chunk=4096, dtype=torch.float32)
    return atoms


def _cfg(**kw) -> TrainConfig:
    base = dict(k=ACTIVE + 1, expansion_factor=2, batch_size=256, lr=1e-2, epochs=8, checkpoint_every=0,
                median_samples=512, dead_after_tokens=2048, k_aux=16, eval_batches=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sparse_shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sparse-acts")
    _sparse_data(folder)
    return folder


@pytest.fixture(scope="module")
def trained(sparse_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae-out")
    fields = {"block": "mid_block.attentions.0", "branch": "cond", "base_model": "toy"}
    return train_sae(sparse_shards, out, _cfg(), sae_fields=fields, progress=False)


def test_trained_sae_explains_known_sparse_data(trained, tmp_path):
    assert trained.explained_variance > 0.9
    assert 0.0 <= trained.dead_fraction <= 1.0
    assert trained.steps == 8 * 32 and trained.tokens == 8 * 8192
    # The learned decoder rows are the ground-truth directions (up to order).
    atoms = _sparse_data(tmp_path)  # same seed: the same dictionary
    best = (atoms @ trained.sae.W_dec.detach().T).max(dim=1).values
    assert (best > 0.9).float().mean() > 0.8
    norms = trained.sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)  # unit-norm decoder rows


def test_saved_sae_loads_with_its_stats(trained, sparse_shards):
    sae = load_native(trained.out_dir)
    stats = sae.cfg.stats
    assert math.isclose(stats["explained_variance"], trained.explained_variance, rel_tol=1e-6)
    assert stats["dead_fraction"] == trained.dead_fraction
    assert (stats["steps"], stats["tokens"]) == (trained.steps, trained.tokens)
    assert sae.cfg.block == "mid_block.attentions.0" and sae.cfg.base_model == "toy"
    assert (sae.cfg.d_in, sae.cfg.k) == (D, ACTIVE + 1)
    assert torch.equal(sae.W_dec, trained.sae.W_dec.detach())
    x = next(ShardReader(sparse_shards).iter_batches(512))
    with torch.no_grad():
        assert torch.allclose(sae(x).sae_out, trained.sae(x).sae_out)


def test_resumed_run_matches_an_uninterrupted_one(sparse_shards, tmp_path):
    # Both runs end mid-epoch; the interrupted one restarts from a checkpoint that is not at its stop.
    cfg = _cfg(epochs=2, checkpoint_every=7)
    whole = train_sae(sparse_shards, tmp_path / "whole", cfg, progress=False, max_steps=45)
    first = train_sae(sparse_shards, tmp_path / "split", cfg, progress=False, max_steps=20)
    state = json.loads((tmp_path / "split" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 20 and first.steps == 20
    rest = train_sae(sparse_shards, tmp_path / "split", cfg, progress=False, max_steps=45)
    assert rest.steps == 45 and rest.tokens == whole.tokens
    for name, value in whole.sae.state_dict().items():
        assert torch.equal(value, rest.sae.state_dict()[name]), name
    assert not torch.equal(whole.sae.W_dec, first.sae.W_dec)  # training did move the weights


def test_killed_run_resumes_from_its_last_checkpoint(sparse_shards, tmp_path, monkeypatch, caplog):
    import concepts.training.trainer as trainer

    # 32 steps an epoch: the kill lands mid-epoch 2, late enough that some latents have stopped firing.
    cfg = _cfg(epochs=3, checkpoint_every=40)
    whole = train_sae(sparse_shards, tmp_path / "whole", cfg, progress=False, max_steps=90)
    real_write, calls = trainer._write_checkpoint, []

    def write_then_die(*args, **kwargs):
        real_write(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # killed right after the step-80 checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_sae(sparse_shards, tmp_path / "killed", cfg, progress=False, max_steps=90)
    monkeypatch.setattr(trainer, "_write_checkpoint", real_write)
    # A crash between the two renames of the checkpoint swap leaves only checkpoint.old behind.
    (tmp_path / "killed" / "checkpoint").rename(tmp_path / "killed" / "checkpoint.old")
    with caplog.at_level(logging.INFO, logger="concepts.training.trainer"):
        rest = train_sae(sparse_shards, tmp_path / "killed", cfg, progress=False, max_steps=90)
    assert "resuming" in caplog.text and "step 80" in caplog.text  # not a fresh (equally seeded) run
    assert rest.steps == 90
    assert torch.equal(rest.sae.W_dec, whole.sae.W_dec) and torch.equal(rest.sae.b_dec, whole.sae.b_dec)
    # The whole trainer state (Adam moments, tokens-since-fired counters) matches too, so a further
    # resume from either folder continues identically.
    state_a = load_file(str(tmp_path / "whole" / "checkpoint" / "trainer_state.safetensors"))
    state_b = load_file(str(tmp_path / "killed" / "checkpoint" / "trainer_state.safetensors"))
    assert state_a.keys() == state_b.keys() and "since_fired" in state_a
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_resume_refuses_a_changed_recipe(sparse_shards, tmp_path):
    train_sae(sparse_shards, tmp_path, _cfg(epochs=1), progress=False, max_steps=2)
    with pytest.raises(InvalidInputError, match="lr"):
        train_sae(sparse_shards, tmp_path, _cfg(epochs=1, lr=1e-3), progress=False, max_steps=3)


def test_resume_refuses_a_checkpoint_trained_on_other_activations(sparse_shards, tmp_path):
    """A retrained model's fresh activations must not resume (and so silently return) the SAE
    trained on the old model's: the same rows from other weights, or an older unrecorded checkpoint."""
    other = tmp_path / "other-weights"
    x = torch.cat([b for b in ShardReader(sparse_shards).iter_batches(8192, seed=0, epoch=0)])
    _write(other, x, rows_per_shard=2048, chunk=4096, dtype=torch.float32, meta={"weights_digest": "retrained"})
    out = tmp_path / "sae"
    train_sae(sparse_shards, out, _cfg(epochs=1), progress=False, max_steps=2)
    with pytest.raises(InvalidInputError, match="other activations") as error:
        train_sae(other, out, _cfg(epochs=1), progress=False, max_steps=3)
    assert error.value.field == "shards"
    state_path = out / "checkpoint" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state.pop("activations")
    state_path.write_text(json.dumps(state))
    with pytest.raises(InvalidInputError, match="unrecorded activations"):
        train_sae(sparse_shards, out, _cfg(epochs=1), progress=False, max_steps=3)
    assert train_sae(other, tmp_path / "fresh", _cfg(epochs=1), progress=False, max_steps=3).steps == 3


def test_bad_config_and_empty_folder_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(InvalidInputError, match="lr"):
        TrainConfig(lr=float("nan"))
    ShardWriter(tmp_path, 4).close()
    with pytest.raises(InvalidInputError, match="no activations"):
        train_sae(tmp_path, tmp_path / "out", TrainConfig(), progress=False)
