"""What oneDNN's primitive cache holds as a class brings new batch sizes, and what capping it costs.

    python benchmarks/bench_primitive_cache.py [--capacities default,512,256,128,0] [--generations 40] [--repeats 3] [--out FILE]

On the CPU, torch runs the toy's convolutions through oneDNN, which builds (and JIT-compiles) a
"primitive" for every convolution and layout change at every input shape and thread count, and keeps
the last `ONEDNN_PRIMITIVE_CACHE_CAPACITY` of them (1,024 by default). The batcher's calls hold 1 to
8 requests' images, on one or both threads, so a class keeps meeting shapes it has not run yet and the cache
fills over many minutes: memory that looks like a slow leak in a soak, though it is bounded.

Each capacity runs in a fresh process (oneDNN reads the variable once). It first makes 1 to 16 images
at a time, on one thread then on two (32 new shapes), reading RSS after a garbage collection and
`malloc_trim` after each; then two threads make `--generations` images each at once, with image
counts drawn at random from 1 to 8 (the same draws for every capacity), the way the batcher's two
workers do in a class, and the wall time is reported against the first capacity's in the same round.
Rounds repeat every capacity in order; medians and ranges are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit, released_together, rss_mb, spread  # noqa: E402

SWEEP_IMAGES = range(1, 17)
CHURN_MAX_IMAGES = 8


def rss_mb_settled() -> float:
    """RSS after the garbage collector and malloc_trim(0): memory something still holds."""
    from ui import memory

    memory.return_freed()
    return rss_mb()


def one_capacity(generations: int) -> dict:
    """Run in the child process: the sweep's RSS and the churn's time at this process's capacity."""
    import random

    import torch

    from concepts.sampling import GenerationRequest, generate
    from toy_worker import PROMPT, toy_pipe_and_requests
    from ui import memory

    memory.keep_memory_returned(interval_s=3600)  # two malloc arenas as in the app; its own trims an hour away
    pipe, requests, d = toy_pipe_and_requests(tuple(SWEEP_IMAGES))
    torch.set_num_threads(1)
    generate(pipe, requests[1])
    start_mb = rss_mb_settled()
    sweep = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n in SWEEP_IMAGES:
            generate(pipe, requests[n])
            sweep.append(round(rss_mb_settled() - start_mb, 1))

    def draws(worker: int) -> list[GenerationRequest]:
        rng = random.Random(worker)
        return [GenerationRequest([PROMPT] * rng.randint(1, CHURN_MAX_IMAGES), seed=0, steps=d.steps,
                                  guidance=d.guidance, height=d.height, width=d.width) for _ in range(generations)]

    def worker(batch: list[GenerationRequest]) -> None:
        torch.set_num_threads(1)
        for request in batch:
            generate(pipe, request)

    batches = [draws(i) for i in range(2)]
    churn_s = released_together(2, lambda i: worker(batches[i]))
    return {"rss_mb_after_warmup": round(start_mb, 1), "sweep_growth_mb": sweep,
            "churn_s": round(churn_s, 2), "growth_after_churn_mb": round(rss_mb_settled() - start_mb, 1)}


def run_child(capacity: str, generations: int) -> dict:
    env = dict(os.environ)
    env.pop("ONEDNN_PRIMITIVE_CACHE_CAPACITY", None)
    if capacity != "default":
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
    done = subprocess.run([sys.executable, __file__, "--child", "--generations", str(generations)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rounds: list[dict], capacity: str, first: str) -> dict:
    """Median and range over the rounds; the churn's time as a ratio to the first capacity's in the
    same round (the rounds run one after another, so a slow minute slows both)."""
    runs = [r[capacity] for r in rounds]
    return {
        "held_after_sweep_mb": spread([run["sweep_growth_mb"][-1] for run in runs], 3),
        "mb_per_new_shape_one_thread": spread([(run["sweep_growth_mb"][len(SWEEP_IMAGES) - 1] - run["sweep_growth_mb"][0]) / (len(SWEEP_IMAGES) - 1) for run in runs], 3),
        "held_after_churn_mb": spread([run["growth_after_churn_mb"] for run in runs], 3),
        "churn_s": spread([run["churn_s"] for run in runs], 3),
        "churn_time_vs_first": spread([run["churn_s"] / r[first]["churn_s"] for run, r in zip(runs, rounds)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacities", default="default,512,256,128,0", help="comma-separated; 'default' leaves the variable unset (1,024)")
    parser.add_argument("--generations", type=int, default=40, help="generations per worker in the churn")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs every capacity once, in order")
    parser.add_argument("--out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_capacity(args.generations)))
        return
    capacities = args.capacities.split(",")
    rounds = [{capacity: run_child(capacity, args.generations) for capacity in capacities} for _ in range(args.repeats)]
    emit({"model": "toy-shapes", "device": "cpu", "repeats": args.repeats,
          "sweep": "1..16 images on 1 thread, then on 2 (CFG: 2..32 rows); MB held over the RSS after warm-up",
          "churn": f"2 threads x {args.generations} generations of 1..{CHURN_MAX_IMAGES} images, 1 torch thread each",
          "capacities": {capacity: summary(rounds, capacity, capacities[0]) for capacity in capacities},
          "rounds": rounds}, args.out)


if __name__ == "__main__":
    main()
