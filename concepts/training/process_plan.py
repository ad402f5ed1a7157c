"""The plan of a collection over N processes on M machines (`--dry-run --num-processes N --num-machines M`):
disk per rank and per machine from the disk plan, and the collection's time from a measured cost
per prompt on this device, before a GPU-hour is spent."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .collect import CollectConfig, collect_activations
from .disk_plan import DiskPlan, human_bytes
from .ranks import RankPart


def plan_processes(plan: DiskPlan, cfg: CollectConfig, processes: int, machines: int, seconds_per_prompt: float | None) -> dict[str, Any]:
    """What each rank and machine stores and (given a measured cost) how long collection takes."""
    if processes < 1 or machines < 1 or processes % machines:
        raise InvalidInputError("num_processes", f"{processes} processes do not split evenly over {machines} machines")
    per_rank_prompts = [sum(c for _, _, c in RankPart(r, processes).batches(plan.prompts, cfg.chunk_prompts, cfg.prompts_per_batch))
                        for r in range(processes)]
    busiest = max(per_rank_prompts)
    rank_bytes = -(-plan.activation_bytes * busiest // plan.prompts)
    machine_bytes = rank_bytes * (processes // machines)
    out: dict[str, Any] = {
        "processes": processes, "machines": machines, "processes_per_machine": processes // machines,
        "prompts_per_rank": {"min": min(per_rank_prompts), "max": busiest},
        "activation_bytes_per_rank": rank_bytes, "activations_per_rank": human_bytes(rank_bytes),
        "activation_bytes_per_machine": machine_bytes, "activations_per_machine": human_bytes(machine_bytes),
        "total_bytes": plan.total_bytes, "total": human_bytes(plan.total_bytes),
        "note": "activations are written on each rank's machine; training reads every rank's folder, so they must share "
                "a file system (or be copied together) before the SAEs train; the SAEs and checkpoints are written by the main process",
    }
    if seconds_per_prompt is not None:
        seconds = busiest * seconds_per_prompt
        hours = seconds / 3600
        out.update(seconds_per_prompt=round(seconds_per_prompt, 4), collection_seconds=round(seconds, 1), collection_hours=round(hours, 2),
                   collection_gpu_hours=round(hours * processes, 2),
                   time_note="each process's device assumed as fast as the one measured; SAE training and loading not included")
    return out


def measure_seconds_per_prompt(pipe, prompts: list[str], cfg: CollectConfig, scratch: Path) -> float:
    """Collect one warm-up batch, then time a second one with the run's settings (into `scratch`)."""
    batch = cfg.prompts_per_batch
    sample = (prompts * (2 * batch // max(1, len(prompts)) + 1))[: 2 * batch]
    one = replace(cfg, chunk_prompts=batch)
    collect_activations(pipe, sample[:batch], scratch / "warm-up", one, progress=False)
    started = time.perf_counter()
    collect_activations(pipe, sample[batch:], scratch / "timed", one, progress=False)
    return (time.perf_counter() - started) / len(sample[batch:])
