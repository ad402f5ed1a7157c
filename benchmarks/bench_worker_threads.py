"""How many torch threads the UNet worker should use: alone, and beside a process busy on one core.

    python benchmarks/bench_worker_threads.py [--repeats 3] [--out FILE]

A worker thread makes the toy's images (1, 4 and 8 at 25 steps) on one torch thread and on every
core, first alone, then while another process spins on one core (what a busy class looks like to the
worker: the other students' handlers keep a core busy). The conditions are interleaved `--repeats`
times; medians are reported. `concepts.torch_threads.WorkerThreads` picks its counts from this.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

IMAGES = (1, 4, 8)


def in_a_worker(pipe, request, threads: int) -> float:
    """Seconds for one generation in a fresh thread running torch on `threads` threads."""
    import torch

    from concepts.sampling import generate

    took: list[float] = []

    def worker() -> None:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        generate(pipe, request)
        took.append(time.perf_counter() - start)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    return took[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from concepts.torch_threads import CORES
    from toy_worker import toy_pipe_and_requests

    pipe, requests, d = toy_pipe_and_requests(IMAGES)
    counts = sorted({1, CORES})
    runs: dict[tuple[int, int, bool], list[float]] = {(n, t, busy): [] for n in IMAGES for busy in (False, True) for t in counts}
    for n in IMAGES:
        for t in counts:
            in_a_worker(pipe, requests[n], t)  # warm-up
    for _ in range(args.repeats):
        for busy in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.3 if busy else 0.0)
                for n in IMAGES:
                    for t in counts:
                        runs[(n, t, busy)].append(round(in_a_worker(pipe, requests[n], t), 3))
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    result = {"what": "the UNet worker's torch threads, alone and beside a process busy on one core", "model": "toy-shapes",
              "device": "cpu", "cores": CORES, "steps": d.steps, "repeats": args.repeats,
              "conditions": [{"images": n, "torch_threads": t, "beside_a_busy_core": busy, "median_s": round(statistics.median(v), 3),
                              "runs_s": v} for (n, t, busy), v in runs.items()]}
    emit(result, args.out)


if __name__ == "__main__":
    main()
