"""Shared by the benchmarks: time variants interleaved (so drift hits every one alike) and report
medians and ratios to the first variant (plain diffusers) as one JSON object."""

from __future__ import annotations

import json
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import torch


def median_seconds(variants: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, float]:
    """One warm-up call each, then `repeats` interleaved rounds; the median per variant."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def released_together(count: int, work: Callable[[int], None], setup: Callable[[], None] | None = None) -> float:
    """Run `work(i)` for i in range(count), each in its own thread, all released at once by one
    barrier (after `setup` in each thread, untimed); the wall seconds from the release until the last
    one ends. Errors are the caller's to catch inside `work`."""
    gate = threading.Barrier(count + 1)

    def run(i: int) -> None:
        if setup is not None:
            setup()
        gate.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def spread(values: list[float], places: int = 1) -> dict:
    """Median and range of repeated readings, as the benchmarks report them."""
    return {"median": round(statistics.median(values), places), "min": round(min(values), places), "max": round(max(values), places)}


def rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def report(model: str, device: torch.device, median: dict[str, float], repeats: int, out: str | None, **fields: object) -> dict:
    """Print (and with `out`, write) the result; ratios are to the first variant."""
    base = next(iter(median.values()))
    result = {
        "model": model,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        **fields,
        "repeats": repeats,
        "median_seconds": {k: round(v, 4) for k, v in median.items()},
        "ratio_to_diffusers": {k: round(v / base, 3) for k, v in median.items()},
    }
    return emit(result, out)


def emit(result: dict, out: str | None) -> dict:
    """Print a benchmark's result as indented JSON and, with `out`, write it there too."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return result


def burst_summary(done: list[tuple[float, list[float], list]], users: int) -> dict:
    """One mode of a burst benchmark from its rounds' (wall seconds, latencies, images): the median
    wall time and each round's, requests per second, and latency p50 / p95 / max over every request."""
    import numpy as np

    walls = [w for w, _, _ in done]
    latencies = [x for _, ls, _ in done for x in ls]
    return {"wall_s_median": round(statistics.median(walls), 2), "wall_s_each": [round(w, 2) for w in walls],
            "requests_per_s": round(users / statistics.median(walls), 2),
            "latency_s": {"p50": round(statistics.median(latencies), 2), "p95": round(float(np.percentile(latencies, 95)), 2),
                          "max": round(max(latencies), 2)}}


def image_differences(first: list, second: list) -> dict:
    """How far two lists of images (uint8 arrays, pairwise) differ: the largest difference in 1/255
    steps, how many values differ at all, and how many values there are."""
    import numpy as np

    diffs = [np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)) for a, b in zip(first, second)]
    return {"max_difference_of_255": int(max(d.max() for d in diffs)), "values_differing": int(sum((d > 0).sum() for d in diffs)),
            "values": int(sum(d.size for d in diffs))}
