"""Train a TopK SAE on sharded activations, resumably, with the paper's recipe (docs/paper.md).

Loss = FVU + α·AuxK (α = 1/32, k_aux = 256), Adam lr 1e-4, batch 4096, one epoch, decoder rows at
unit norm (the gradient component parallel to each row is removed before the step, the rows are
renormalised after it), `b_dec` initialised at the geometric median of a sample. A latent is dead
once it has not fired for `dead_after_tokens` tokens, as in sparsify; AuxK then trains the dead
latents to model the residual.

Resuming is exact: the batch order is a pure function of (seed, epoch), and a checkpoint stores the
weights, Adam's tensors, the tokens-since-fired counters and the position in the epoch, so N steps,
a restart and M more steps give bit-identical weights to N + M steps in one go.

With several processes (`accelerate launch`, an `Accelerator` passed in) one SAE is trained data-
parallel with DDP: process r reads every N-th shard (`ShardReader.part_shards`) in batches of
batch_size / N, so the optimiser still steps on the paper's 4,096 rows and each process reads only
its share of the disk; DDP averages the gradients, the processes pool which latents fired, and the
main process writes the checkpoints, evaluates and saves. Why one SAE on all processes rather than
one SAE per process: the paper's 9 SAEs on 8 GPUs would leave 7 idle for a second round, and an SAE
is bound by reading its activations, which DDP divides by N (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from concepts.errors import CheckpointError, InvalidInputError
from concepts.sae import SAEConfig, TopKSAE, load_native, save_native
from concepts.training.geometric_median import geometric_median
from concepts.training.ranks import device_of
from concepts.training.shards import ShardReader

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
# Fields that may change between a run and its resumption without changing the trajectory.
_RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "device", "eval_batches"}
# SAEConfig fields that TrainConfig owns; sae_fields may not set them.
_OWNED = {"d_in", "k", "num_latents", "expansion_factor"}


@dataclass
class TrainConfig:
    """How to train one SAE; defaults are the paper's (docs/paper.md)."""

    k: int = 10
    """Latents kept per token by TopK (the paper also reports k = 20)."""
    expansion_factor: int = 4
    """Latents per input dimension when num_latents is 0 (n = 4d = 5120 for SD1.4)."""
    num_latents: int = 0
    """Dictionary size; 0 means expansion_factor · d."""
    batch_size: int = 4096
    """Tokens (spatial positions) per optimiser step."""
    lr: float = 1e-4
    """Adam learning rate."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that revives dead latents; 0 turns it off."""
    k_aux: int = 256
    """Dead latents AuxK may use per token."""
    dead_after_tokens: int = 10_000_000
    """A latent that has not fired for this many tokens counts as dead (sparsify's threshold)."""
    epochs: int = 1
    """Passes over the activations."""
    seed: int = 0
    """Fixes the initial weights, the median sample and every epoch's batch order."""
    checkpoint_every: int = 500
    """Steps between resumable checkpoints in out_dir/checkpoint/; 0 only checkpoints at the end."""
    median_samples: int = 4096
    """Rows sampled to initialise b_dec at their geometric median."""
    device: str = "cpu"
    """Torch device to train on, e.g. "cpu" or "cuda"."""
    eval_batches: int = 100
    """Batches in the final explained-variance / dead-latent pass; 0 means the whole data set."""

    def __post_init__(self) -> None:
        positive = ("k", "expansion_factor", "batch_size", "k_aux", "dead_after_tokens", "epochs", "median_samples")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInputError(name, f"must be a positive integer, got {value!r}")
        for name in ("num_latents", "seed", "checkpoint_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(name, f"must be a non-negative integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError("lr", f"must be a positive number, got {self.lr!r}")
        if not (isinstance(self.auxk_alpha, (int, float)) and math.isfinite(self.auxk_alpha) and self.auxk_alpha >= 0):
            raise InvalidInputError("auxk_alpha", f"must be a non-negative number, got {self.auxk_alpha!r}")
        if 0 < self.num_latents < self.k:
            raise InvalidInputError("k", f"k={self.k} exceeds num_latents={self.num_latents}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInputError("device", f"{self.device!r} is not a torch device; use 'cpu' or 'cuda'") from exc


class TrainResult(NamedTuple):
    """What a training run produced; `sae` is also saved in native format in `out_dir`."""

    sae: TopKSAE
    explained_variance: float
    dead_fraction: float
    steps: int
    tokens: int
    out_dir: Path


class _State(NamedTuple):
    """Counters that, with the weights and Adam's tensors, fully determine the rest of a run."""

    step: int
    epoch: int
    batch_in_epoch: int
    tokens: int


def _build_sae(d: int, cfg: TrainConfig, sae_fields: dict[str, Any]) -> TopKSAE:
    clash = _OWNED & set(sae_fields)
    if clash:
        raise InvalidInputError("sae_fields", f"{sorted(clash)} come from TrainConfig; set them there")
    sae_cfg = SAEConfig(d_in=d, num_latents=cfg.num_latents, k=cfg.k, expansion_factor=cfg.expansion_factor,
                        **sae_fields)
    # Initialise on the CPU from a private RNG so the weights depend only on cfg.seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = TopKSAE(sae_cfg)
    return sae.to(cfg.device)


def activations_identity(reader: ShardReader) -> dict[str, Any]:
    """What a checkpoint was trained on: the shard folder's rows and, where the collector recorded
    them, its prompt list's and model weights' digests. A checkpoint resumed on other activations
    would be returned as if trained on these (a retrained model's SAEs silently kept the old ones)."""
    return {"rows": reader.rows, "prompt_digest": reader.meta.get("prompt_digest"), "weights_digest": reader.meta.get("weights_digest")}


def _write_checkpoint(out_dir: Path, sae: TopKSAE, opt: torch.optim.Adam, since_fired: torch.Tensor,
                      state: _State, cfg: TrainConfig, activations: dict[str, Any]) -> None:
    """Write out_dir/checkpoint/ atomically: build it in a temp folder, then swap it in by rename."""
    final, tmp, old = out_dir / CHECKPOINT, out_dir / f"{CHECKPOINT}.tmp", out_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_native(sae, tmp)
    tensors = {"since_fired": since_fired.detach().cpu().contiguous()}
    for index, param_state in opt.state_dict()["state"].items():
        for name, value in param_state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(tensors, str(tmp / STATE_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps({**state._asdict(), "config": dataclasses.asdict(cfg), "activations": activations}, indent=1))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _find_checkpoint(out_dir: Path) -> Path | None:
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):  # .old survives a crash between the two renames
        if (out_dir / name / STATE_JSON).is_file():
            return out_dir / name
    return None


def _load_checkpoint(folder: Path, cfg: TrainConfig, d: int, activations: dict[str, Any]) -> tuple[TopKSAE, dict[str, torch.Tensor], _State]:
    try:
        saved = json.loads((folder / STATE_JSON).read_text())
        state = _State(*(int(saved[f]) for f in _State._fields))
        saved_cfg = dict(saved["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder / STATE_JSON}: corrupt trainer state ({exc}); delete {folder} to restart") from exc
    if saved.get("activations") != activations:
        what = "unrecorded activations (an older checkpoint)" if saved.get("activations") is None else "other activations"
        raise InvalidInputError("shards", f"the checkpoint in {folder} was trained on {what}, not on these; "
                                "use a new out_dir or delete that checkpoint to start over")
    changed = sorted(f for f, v in dataclasses.asdict(cfg).items()
                     if f not in _RESUMABLE_CHANGES and saved_cfg.get(f) != v)
    if changed:
        raise InvalidInputError("cfg", f"{changed} differ from the checkpoint in {folder}; use a new out_dir "
                                "or delete that checkpoint to start over")
    sae = load_native(folder, device=cfg.device)
    if sae.cfg.d_in != d:
        raise CheckpointError(f"{folder}: SAE width {sae.cfg.d_in} but the activations have {d}; use a new out_dir")
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
    except Exception as exc:
        raise CheckpointError(f"{folder / STATE_TENSORS}: unreadable ({exc}); delete {folder} to restart") from exc
    return sae, tensors, state


def _restore_optimizer(opt: torch.optim.Adam, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


@torch.no_grad()
def evaluate(sae: TopKSAE, reader: ShardReader, batch_size: int, max_batches: int = 0,
             seed: int = 0, device: str | torch.device = "cpu") -> tuple[float, float, int]:
    """(explained variance, dead fraction, tokens) over a pass of the data, or `max_batches` of it.

    EV = 1 − Σ‖x − x̂‖² / Σ‖x − mean‖², accumulated in float64 so large passes do not lose precision;
    dead fraction = share of latents that never fired in the pass.
    """
    n = sae.W_dec.shape[0]
    fired = torch.zeros(n, dtype=torch.bool, device=device)
    sum_x = torch.zeros(reader.d, dtype=torch.float64, device=device)
    sum_sq = err = 0.0
    tokens = 0
    # An epoch index no training run uses, so the evaluated sample is fixed by the seed alone.
    for i, x in enumerate(reader.iter_batches(batch_size, seed=seed, epoch=-1)):
        if max_batches and i >= max_batches:
            break
        x = x.to(device)
        out = sae(x)
        err += float((x - out.sae_out).double().pow(2).sum())
        sum_x += x.double().sum(0)
        sum_sq += float(x.double().pow(2).sum())
        fired[out.latent_indices[out.latent_acts > 0]] = True  # a TopK pick with zero activation is no firing
        tokens += x.shape[0]
    total_var = sum_sq - float(sum_x.pow(2).sum()) / max(tokens, 1)
    ev = 1.0 - err / total_var if total_var > 0 else float("nan")
    return ev, 1.0 - float(fired.float().mean()), tokens


def train_sae(
    shards: ShardReader | str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    sae_fields: dict[str, Any] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    accelerator: Any = None,
) -> TrainResult:
    """Train (or resume training) an SAE on the activations in `shards`; save it to `out_dir`.

    `sae_fields` are extra SAEConfig fields recorded with the SAE (block, window, branch, reads,
    base_model, ...). `max_steps` stops after that many steps in total, leaving a checkpoint that a
    later call with the same out_dir resumes from. The returned SAE and the one saved in out_dir
    carry explained variance, dead fraction, tokens and steps in `cfg.stats`. `accelerator` (an
    `accelerate.Accelerator` of several processes) trains data-parallel: see the module docstring.
    """
    reader = shards if isinstance(shards, ShardReader) else ShardReader(shards)
    world = accelerator.num_processes if accelerator is not None else 1
    rank, main = (accelerator.process_index, accelerator.is_main_process) if world > 1 else (0, True)
    if world > 1:
        if cfg.batch_size % world:
            raise InvalidInputError("batch_size", f"{cfg.batch_size} rows do not split over {world} processes; use a multiple of {world}")
        if len(reader.shards) < world:
            raise InvalidInputError("num_processes", f"{reader.folder} holds {len(reader.shards)} shards, fewer than the {world} "
                                    "processes; train with fewer processes, or collect into smaller shards (CollectConfig.rows_per_shard)")
        cfg = dataclasses.replace(cfg, device=device_of(accelerator))
    if reader.rows == 0:
        raise InvalidInputError("shards", f"{reader.folder} holds no activations; collect some before training")
    if max_steps is not None and max_steps < 0:
        raise InvalidInputError("max_steps", f"must be non-negative, got {max_steps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    checkpoint = _find_checkpoint(out_dir)
    activations = activations_identity(reader)
    if checkpoint is not None:
        sae, tensors, state = _load_checkpoint(checkpoint, cfg, reader.d, activations)
        since_fired = tensors["since_fired"].to(cfg.device)
        log.info("resuming %s at step %d (epoch %d, batch %d)", out_dir, state.step, state.epoch, state.batch_in_epoch)
    else:
        sae = _build_sae(reader.d, cfg, dict(sae_fields or {}))
        sample = reader.sample(cfg.median_samples, seed=cfg.seed)
        sae.b_dec.data.copy_(geometric_median(sample).to(sae.b_dec))
        since_fired = torch.zeros(sae.W_dec.shape[0], dtype=torch.long, device=cfg.device)
        state, tensors = _State(0, 0, 0, 0), {}
    sae.train()
    model = accelerator.prepare_model(sae) if world > 1 else sae  # DDP: gradients averaged in backward
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    if tensors:
        _restore_optimizer(opt, tensors)

    local_batch = cfg.batch_size // world
    # Every process takes the same number of steps (DDP needs it): the fewest any process's shards give.
    per_epoch = min(reader.num_batches(local_batch, rank=r, world=world) for r in range(world))
    total = cfg.epochs * per_epoch
    stop = total if max_steps is None else min(total, max_steps)
    step, epoch, batch_in_epoch, tokens = state
    bar = tqdm(total=total, initial=min(step, total), disable=not (progress and main), desc="train SAE", unit="step")
    saved_at = step
    try:
        while step < stop and epoch < cfg.epochs:
            batches = reader.iter_batches(local_batch, seed=cfg.seed, epoch=epoch, start_batch=batch_in_epoch, rank=rank, world=world)
            start, this_epoch = step, epoch
            for x in batches:
                if step >= stop or epoch != this_epoch:  # a process with more shards stops with the others
                    break
                x = x.to(cfg.device)
                dead = since_fired > cfg.dead_after_tokens
                out = model(x, dead_mask=dead if cfg.auxk_alpha > 0 else None, k_aux=cfg.k_aux)
                loss = out.fvu + cfg.auxk_alpha * out.auxk_loss
                loss.backward()
                fired = torch.zeros_like(since_fired)
                fired[out.latent_indices[out.latent_acts > 0]] = 1
                rows = torch.tensor(x.shape[0], device=since_fired.device)
                if world > 1:  # a latent fired if it fired on any process; the step saw every process's rows
                    fired, rows = accelerator.reduce(fired, "sum"), accelerator.reduce(rows, "sum")
                since_fired += rows
                since_fired[fired > 0] = 0
                if sae.cfg.normalize_decoder:
                    sae.remove_gradient_parallel_to_decoder_directions()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if sae.cfg.normalize_decoder:
                    sae.set_decoder_norm_to_unit_norm()
                step, batch_in_epoch, tokens = step + 1, batch_in_epoch + 1, tokens + int(rows)
                if batch_in_epoch == per_epoch:
                    epoch, batch_in_epoch = epoch + 1, 0
                fvu, auxk = float(out.fvu.detach()), float(out.auxk_loss.detach())
                bar.update(1)
                bar.set_postfix(fvu=f"{fvu:.3f}", dead=f"{float(dead.float().mean()):.1%}")
                if step % 100 == 0 or step == 1:
                    log.info("step %d fvu %.4f auxk %.4f dead %.2f%%", step, fvu, auxk, 100 * float(dead.float().mean()))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and main:
                    _write_checkpoint(out_dir, sae, opt, since_fired, _State(step, epoch, batch_in_epoch, tokens), cfg, activations)
                    saved_at = step
            if step == start:  # the epoch yielded nothing: a manifest/position mismatch, never loop forever
                raise CheckpointError(f"{reader.folder}: no batches at epoch {epoch}, batch {batch_in_epoch}; "
                                      f"delete {out_dir / CHECKPOINT} to restart")
    finally:
        bar.close()
    if main and (saved_at != step or _find_checkpoint(out_dir) is None):
        _write_checkpoint(out_dir, sae, opt, since_fired, _State(step, epoch, batch_in_epoch, tokens), cfg, activations)

    sae.eval()
    if main:
        ev, dead_fraction, eval_tokens = evaluate(sae, reader, cfg.batch_size, cfg.eval_batches, cfg.seed, cfg.device)
        log.info("done: %d steps, %d tokens, explained variance %.4f, dead %.2f%%", step, tokens, ev, 100 * dead_fraction)
        sae.cfg.stats = {**sae.cfg.stats, "explained_variance": ev, "dead_fraction": dead_fraction,
                         "tokens": tokens, "steps": step, "eval_tokens": eval_tokens}
        save_native(sae, out_dir)
    if world > 1:
        accelerator.wait_for_everyone()
        if not main:  # the other processes report what the main one measured and saved
            sae = load_native(out_dir, device=cfg.device)
            ev, dead_fraction = sae.cfg.stats["explained_variance"], sae.cfg.stats["dead_fraction"]
    return TrainResult(sae, ev, dead_fraction, step, tokens, out_dir)
