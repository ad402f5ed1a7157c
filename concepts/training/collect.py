"""Collect block reads (Δ or output) over a prompt list into shards on disk, for SAE training.

One shard folder per (block, stage window, CFG branch): `<out>/<block>/<window>/<branch>/`. In each
window the paper trains on one timestep (t = 1.0 / 0.5 / 0.0 for early / middle / final,
docs/paper.md); `steps_per_window="all"` keeps every step of the window instead. Prompts are
processed in chunks; after each chunk every writer is closed (so shards end on a chunk boundary) and the number
of prompts done is recorded in each manifest. A rerun with the same out folder resumes after the
last finished chunk, dropping any shard written past it, so no row is stored twice.

Under `accelerate launch` each process collects its share of the batches (`part`, `ranks.py`) into
its own rank folder, resumable on its own; `merge_ranks` then lists every rank's shards.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..hooks import BlockHooks, Capture, block_width, resolve_blocks
from ..sampling import GenerationRequest, sample
from ..steps import BRANCHES, READS, STAGE_SAE_T, STAGES, StepWindow, nearest_step
from ..weights_digest import weights_digest
from .ranks import RankPart, collection_root
from .shards import MANIFEST, ShardWriter, read_manifest, truncate_shards

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    """What to record while sampling the prompts (paper defaults: 50 DDIM steps, guidance 7.5)."""

    blocks: tuple[str, ...]
    """Diffusers names of the transformer blocks to read."""
    windows: tuple[str, ...] = STAGES
    """Stage windows to collect (an SAE is trained per window)."""
    branches: tuple[str, ...] = ("cond",)
    """CFG branches to keep: "cond" (the paper's) and/or "uncond"."""
    steps: int = 50
    guidance: float = 7.5
    height: int = 512
    width: int = 512
    reads: str = "delta"
    """"delta" (output − input) or "output"."""
    steps_per_window: str = "representative"
    """"representative": only the paper's step of the window (t = 1, 0.5, 0); "all": every step in it."""
    prompts_per_batch: int = 4
    chunk_prompts: int = 256
    """Prompts between two resumable checkpoints."""
    rows_per_shard: int = 65536
    dtype: str = "float16"
    seed: int = 0
    """Batch i is sampled with seed + i."""

    def __post_init__(self) -> None:
        self.blocks, self.windows, self.branches = tuple(self.blocks), tuple(self.windows), tuple(self.branches)
        if not self.blocks:
            raise InvalidInputError("blocks", "name at least one block")
        for w in self.windows:
            if w not in STAGE_SAE_T:
                raise InvalidInputError("windows", f"{w!r} is not early, middle or final")
        for b in self.branches:
            if b not in BRANCHES:
                raise InvalidInputError("branches", f"{b!r} is not cond or uncond")
        if "uncond" in self.branches and self.guidance <= 1.0:
            raise InvalidInputError("branches", "uncond reads exist only with guidance > 1")
        if self.reads not in READS:
            raise InvalidInputError("reads", f"{self.reads!r} is not one of {', '.join(READS)}")
        if self.steps_per_window not in ("representative", "all"):
            raise InvalidInputError("steps_per_window", f"{self.steps_per_window!r} is not representative or all")
        if self.dtype not in ("float16", "bfloat16", "float32"):
            raise InvalidInputError("dtype", f"{self.dtype!r} is not float16, bfloat16 or float32")
        for name in ("prompts_per_batch", "chunk_prompts", "rows_per_shard"):
            if getattr(self, name) < 1:
                raise InvalidInputError(name, "must be at least 1")

    def window_steps(self) -> dict[str, set[int]]:
        """Step indices recorded for each window."""
        if self.steps_per_window == "representative":
            return {w: {nearest_step(STAGE_SAE_T[w], self.steps)} for w in self.windows}
        windows = {w: StepWindow.parse(w, self.steps) for w in self.windows}
        return {w: set(range(window.start, window.end + 1)) for w, window in windows.items()}


class CollectResult(NamedTuple):
    folders: dict[tuple[str, str, str], Path]
    """(block, window, branch) → shard folder."""
    rows: dict[tuple[str, str, str], int]
    prompts_done: int


def shard_folder(out_dir: Path, block: str, window: str, branch: str) -> Path:
    return Path(out_dir) / block / window / branch


def _prompt_digest(prompts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]


def _weights_digest(pipe: StableDiffusionPipeline) -> str:
    """A digest of the UNet's and text encoder's weights: activations of a retrained model must
    not be resumed into (or silently reused from) a folder collected from the old one."""
    return weights_digest(itertools.chain(pipe.unet.named_parameters(), pipe.text_encoder.named_parameters()), head=64)


def _rewind(folder: Path, digest: str, weights: str, batches: list[tuple[int, int, int]]) -> int:
    """Batches already done in `folder` (of this rank's `batches`), after dropping shards written past
    the last checkpoint."""
    if not (folder / MANIFEST).exists():
        return 0
    meta = read_manifest(folder)["meta"]
    if meta.get("prompt_digest") not in (None, digest):
        raise InvalidInputError("prompts", f"{folder} was collected from another prompt list; use a new output folder")
    if meta.get("weights_digest") not in (None, weights):
        raise InvalidInputError("model", f"{folder} was collected from other model weights (the model changed); use a new output folder")
    truncate_shards(folder, int(meta.get("closed_shards", 0)))
    if "batches_done" in meta:
        return int(meta["batches_done"])
    prompts_done, done = int(meta.get("prompts_done", 0)), 0  # a folder written before batches were counted
    while done < len(batches) and batches[done][1] + batches[done][2] <= prompts_done:
        done += 1
    return done


def collect_activations(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    out_dir: str | Path,
    cfg: CollectConfig,
    progress: bool = True,
    part: RankPart = RankPart(),
) -> CollectResult:
    """Sample every prompt (of this rank's batches) and store the chosen reads; resumable (see module
    docstring). With a split `part` the shards go to `out_dir/rank-RRR-of-NNN/`."""
    prompts = list(prompts)
    if not prompts:
        raise InvalidInputError("prompts", "the prompt list is empty")
    out_dir = collection_root(Path(out_dir), part)
    modules = resolve_blocks(pipe.unet, cfg.blocks)
    digest = _prompt_digest(prompts)
    keys = [(b, w, br) for b in cfg.blocks for w in cfg.windows for br in cfg.branches]
    folders = {key: shard_folder(out_dir, *key) for key in keys}
    weights = _weights_digest(pipe)
    batches = part.batches(len(prompts), cfg.chunk_prompts, cfg.prompts_per_batch)
    done = min(_rewind(folder, digest, weights, batches) for folder in folders.values())
    window_steps = cfg.window_steps()
    dtype = getattr(torch, cfg.dtype)
    meta_base = {"prompt_digest": digest, "weights_digest": weights, "config": asdict(cfg), "prompts_total": len(prompts),
                 "part": {"rank": part.rank, "world": part.world}}

    def open_writers() -> dict[tuple[str, str, str], ShardWriter]:
        return {
            key: ShardWriter(folders[key], block_width(modules[key[0]]), cfg.rows_per_shard, dtype, meta={**meta_base, "block": key[0], "window": key[1], "branch": key[2]})
            for key in keys
        }

    mine = sum(count for _, _, count in batches)
    bar = tqdm(total=mine, initial=sum(c for _, _, c in batches[:done]), desc=f"collect {part.folder_name}" if part.split else "collect",
               unit="prompt", disable=not progress)
    last = max(max(s) for s in window_steps.values())
    while done < len(batches):
        chunk = batches[done][0]
        chunk_end = done
        while chunk_end < len(batches) and batches[chunk_end][0] == chunk:
            chunk_end += 1
        writers = open_writers()

        def sink(block: str, capture: Capture) -> None:
            for window, steps in window_steps.items():
                if capture.step.index not in steps:
                    continue
                for branch in cfg.branches:
                    read = capture.cond if branch == "cond" else capture.uncond
                    writers[(block, window, branch)].add(read.reshape(-1, read.shape[-1]))

        for _, start, count in batches[done:chunk_end]:
            batch = prompts[start : start + count]
            request = GenerationRequest(batch, seed=cfg.seed + start, steps=cfg.steps, guidance=cfg.guidance, height=cfg.height, width=cfg.width)
            with BlockHooks(pipe.unet, capture=cfg.blocks, reads=cfg.reads, sink=sink) as hooks:
                for state in sample(pipe, request, hooks):
                    if state.index >= last:
                        break  # nothing later is recorded: skip the remaining steps
            bar.update(len(batch))
        prompts_done = sum(c for _, _, c in batches[:chunk_end])
        for writer in writers.values():
            writer.close({"prompts_done": prompts_done, "batches_done": chunk_end})
        done = chunk_end
        log.info("%scollected %d/%d prompts", f"{part.folder_name}: " if part.split else "", prompts_done, mine)
    bar.close()
    if not batches:  # more processes than batches: this rank's folders exist, empty, for the merge
        for writer in open_writers().values():
            writer.close({"prompts_done": 0, "batches_done": 0})
    rows = {key: read_manifest(folder)["rows"] for key, folder in folders.items()}
    return CollectResult(folders, rows, sum(c for _, _, c in batches[:done]))
