"""A burst of generations: N users press Generate at the same moment, with batching across users on
and off, in one run (in-process, the toy at its defaults: 25 steps, guidance 4).

    python benchmarks/bench_batching.py [--users 30] [--repeats 3] [--max-batch N] [--out FILE]

Each user is a thread calling `run_generation` (what the Generate tab calls) with its own prompt and
seed. Reported per mode: the burst's wall time (median over repeats, interleaved), throughput, and
per-request p50 / p95 / max latency; and how far each batched image is from the same request alone.
`--max-batch N` lets the process's batcher hold N requests in a shared call instead of the app's
`MAX_BATCH`. Called in one process, no request counts as served, so the first UNet worker takes
every request and every core (`concepts.batching`), unlike the served app in a busy class.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import prompt_of  # noqa: E402
from timing import burst_summary, emit, image_differences, released_together  # noqa: E402

from concepts.generation import run_generation  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402


def burst(users: int, batching: bool) -> tuple[float, list[float], list[np.ndarray]]:
    os.environ["CONCEPT_LAB_BATCHING"] = "1" if batching else "0"
    latencies, images = [0.0] * users, [None] * users

    def user(i: int) -> None:
        started = time.perf_counter()
        outcome = run_generation("toy-shapes", prompt_of(i, 0), seed=i)
        latencies[i] = time.perf_counter() - started
        images[i] = np.asarray(outcome.result.images[0], dtype=int)

    return released_together(users, user), latencies, images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=None, help="requests per shared call (default: the app's MAX_BATCH)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from concepts.batching import BATCHER

    if args.max_batch is not None:
        if args.max_batch < 1:
            parser.error("--max-batch must be at least 1")
        BATCHER.max_batch = args.max_batch
    quiet_libraries()
    burst(2, True)  # warm-up: pipeline loaded
    runs: dict[str, list] = {"on": [], "off": []}
    for _ in range(args.repeats):
        for mode in ("on", "off"):
            runs[mode].append(burst(args.users, mode == "on"))
    result = {"what": "generation burst", "device": "cpu", "cores": os.cpu_count(), "users": args.users, "repeats": args.repeats,
              "max_batch": BATCHER.max_batch}
    for mode, done in runs.items():
        result[f"batching_{mode}"] = burst_summary(done, args.users)
    result["images_vs_alone"] = image_differences(runs["on"][0][2], runs["off"][0][2])  # the unbatched run: each request alone
    result["throughput_ratio_on_over_off"] = round(result["batching_on"]["requests_per_s"] / result["batching_off"]["requests_per_s"], 2)
    emit(result, args.out)


if __name__ == "__main__":
    main()
