"""Collection split across processes (`accelerate launch`): which sampling batches each rank runs,
where it writes them, and the merged view that training and the word dictionaries read.

The prompt list is cut into sampling batches exactly as one process cuts it (`batch_layout`: chunks
of `chunk_prompts`, batches of `prompts_per_batch` inside each chunk), and batch b goes to rank
b mod N. A batch is sampled with seed `seed + its first prompt`, as in one process, so every prompt
is sampled with the same noise, in the same company, whatever N is: its rows are bit-identical to a
one-process run (tests/test_accelerate_train.py). Each rank writes ordinary shard folders under
`activations/rank-RRR-of-NNN/` with its own manifests (resumable on their own); once every rank has
finished, the main process writes `activations/<block>/<window>/<branch>/manifest.json` listing the
shards of every rank, so the trainer streams them all and `prompt_rows` can put each prompt's rows
back in prompt order.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidInputError
from .shards import MANIFEST, read_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankPart:
    """This process's share of a collection: rank `rank` of `world` processes."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise InvalidInputError("num_processes", f"rank {self.rank} of {self.world} processes is impossible")

    @property
    def split(self) -> bool:
        return self.world > 1

    @property
    def folder_name(self) -> str:
        return f"rank-{self.rank:03d}-of-{self.world:03d}"

    def batches(self, n_prompts: int, chunk_prompts: int, prompts_per_batch: int) -> list[tuple[int, int, int]]:
        """(chunk index, first prompt, prompt count) of this rank's batches, in the order it runs them."""
        return [b for i, b in enumerate(batch_layout(n_prompts, chunk_prompts, prompts_per_batch)) if i % self.world == self.rank]


def batch_layout(n_prompts: int, chunk_prompts: int, prompts_per_batch: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first prompt, prompt count) of every sampling batch of a one-process run."""
    for chunk, chunk_start in enumerate(range(0, n_prompts, chunk_prompts)):
        chunk_end = min(chunk_start + chunk_prompts, n_prompts)
        for start in range(chunk_start, chunk_end, prompts_per_batch):
            yield chunk, start, min(prompts_per_batch, chunk_end - start)


def collection_root(activations: Path, part: RankPart) -> Path:
    """Where this rank writes: the activations folder itself for one process, else its rank folder."""
    return activations / part.folder_name if part.split else activations


def check_layout(activations: Path, part: RankPart) -> None:
    """A run is resumed only with the number of processes it was started with (its batches were dealt
    by that number): anything else would collect some batches twice and others never."""
    ranks = sorted(p.name for p in activations.glob("rank-*-of-*") if p.is_dir())
    others = sorted({name.rsplit("-of-", 1)[1] for name in ranks} - ({f"{part.world:03d}"} if part.split else set()))
    single = any("ranks" not in read_manifest(m.parent)["meta"] for m in activations.glob(f"*/*/*/{MANIFEST}"))
    if others or (part.split and single):
        started = f"{int(others[0])} processes" if others else "one process"
        raise InvalidInputError("num_processes", f"{activations} was collected by {started}; relaunch with that many "
                                f"(accelerate launch --num_processes ...) to resume, or use a new --out")


def merge_ranks(activations: Path, keys: list[tuple[str, str, str]], world: int) -> dict[tuple[str, str, str], Path]:
    """Write the merged manifest of each (block, window, branch) over every rank's folder (main process,
    after every rank finished); returns the merged folders. Shard paths are relative to the merged folder."""
    folders = {}
    for key in keys:
        merged = activations.joinpath(*key)
        merged.mkdir(parents=True, exist_ok=True)
        shards, ranks, metas = [], [], []
        for rank in range(world):
            rank_folder = activations / RankPart(rank, world).folder_name
            man = read_manifest(rank_folder.joinpath(*key))
            up = os.path.relpath(rank_folder.joinpath(*key), merged)
            shards += [{"file": f"{up}/{s['file']}", "rows": int(s["rows"])} for s in man["shards"]]
            ranks.append(up)
            metas.append(man["meta"])
        d, dtype = man["d"], man["dtype"]
        meta = {k: v for k, v in metas[0].items() if k not in ("part", "batches_done", "closed_shards")}
        meta.update(ranks=ranks, world=world, prompts_done=sum(int(m.get("prompts_done", 0)) for m in metas))
        payload = {"d": d, "dtype": dtype, "rows": sum(s["rows"] for s in shards), "shards": shards, "meta": meta}
        tmp = merged / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, merged / MANIFEST)
        folders[key] = merged
    return folders


def rank_folders(folder: Path, meta: dict[str, Any]) -> list[tuple[Path, RankPart]]:
    """The (folder, part) of every rank behind a shard folder; the folder itself for one process."""
    if "ranks" not in meta:
        return [(folder, RankPart())]
    world = int(meta["world"])
    return [((folder / rel).resolve(), RankPart(rank, world)) for rank, rel in enumerate(meta["ranks"])]


def launched_accelerator():
    """The `accelerate.Accelerator` of a multi-process launch (torchrun-style: RANK and WORLD_SIZE set),
    else None: one process runs exactly as before, without a process group. Without a GPU the
    processes talk over gloo (`cpu=True`): that is how the CPU tests run two processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and os.environ.get("MASTER_PORT"):
            log.warning("one process: `accelerate launch --cpu` starts a single process unless it runs through mpirun; "
                        "for N CPU processes use `accelerate launch --multi_gpu --num_processes N` (torchrun) instead")
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def device_of(accelerator) -> str:
    """The pipeline device of this process: "cpu" or "cuda:<local rank>"."""
    device = accelerator.device
    return "cpu" if device.type == "cpu" else str(device)


def rows_by_batch(folder: Path) -> dict[int, Any]:
    """{first prompt of a sampling batch: its rows} over every rank behind `folder`, all in memory:
    to check that a multi-process collection holds exactly a one-process one's rows (small runs)."""
    import torch

    from .collect import CollectConfig
    from .shards import ShardReader

    meta = read_manifest(folder)["meta"]
    cfg = CollectConfig(**meta["config"])
    out = {}
    for rank_folder, part in rank_folders(Path(folder), meta):
        reader = ShardReader(rank_folder)
        rows = torch.cat([reader.load_shard(i) for i in range(len(reader.shards))]) if reader.shards else torch.zeros(0, reader.d)
        batches = part.batches(int(meta["prompts_total"]), cfg.chunk_prompts, cfg.prompts_per_batch)
        per_prompt, rest = divmod(rows.shape[0], max(1, sum(c for _, _, c in batches)))
        if rest:
            raise InvalidInputError("folder", f"{rank_folder}: {rows.shape[0]} rows do not split over its {len(batches)} batches")
        at = 0
        for _, start, count in batches:
            out[start] = rows[at:at + per_prompt * count]
            at += per_prompt * count
    return out
