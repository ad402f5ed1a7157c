"""Why the served app gives every core to one thread: a generation's time in a worker thread, alone
and beside another live thread that once ran torch ops (`concepts.torch_threads`).

    python benchmarks/bench_threads.py [--repeats 3] [--out FILE]

Each condition runs in its own process (a thread's OpenMP team, once made, lives as long as the
thread), interleaved `--repeats` times; in each, a worker thread makes the toy's default batch of 8
images five times and the median counts:
- alone: no other thread ever ran a torch op;
- beside a thread that ran one op on every core, then sleeps (a Gradio request thread that once read
  an image with the judge);
- the same, with that thread set to one torch thread before its op (what the app does);
- the same, set to one thread only after its op on every core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

CONDITIONS = {
    "alone": "no other thread ran a torch op",
    "beside_a_thread_on_every_core": "another live thread once ran one op on every core",
    "beside_a_thread_on_one_core": "another live thread ran its op on one thread (the app's rule)",
    "beside_a_thread_set_to_one_after": "another live thread ran one op on every core, then was set to one thread",
}


def one_condition(condition: str) -> float:
    """Run in a fresh process: the median of five generations in a worker thread."""
    import queue
    import threading
    import time

    import torch

    from concepts.sampling import generate
    from concepts.torch_threads import CORES, use_threads
    from toy_worker import toy_pipe_and_requests

    pipe, requests, _ = toy_pipe_and_requests((8,))
    request = requests[8]
    hold = queue.Queue()

    def other_thread() -> None:
        if condition == "beside_a_thread_on_one_core":
            use_threads(1)
        torch.nn.functional.conv2d(torch.randn(8, 64, 32, 32), torch.randn(64, 64, 3, 3))
        if condition == "beside_a_thread_set_to_one_after":
            use_threads(1)
        hold.get()

    if condition != "alone":
        threading.Thread(target=other_thread, daemon=True).start()
        time.sleep(1.0)
    times: list[float] = []

    def worker() -> None:
        use_threads(CORES)
        generate(pipe, request)  # warm-up
        for _ in range(5):
            start = time.perf_counter()
            generate(pipe, request)
            times.append(time.perf_counter() - start)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    hold.put(None)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--condition", choices=list(CONDITIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.condition:
        print(json.dumps(one_condition(args.condition)))
        return
    runs: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    for _ in range(args.repeats):
        for name in CONDITIONS:
            out = subprocess.run([sys.executable, __file__, "--condition", name], capture_output=True, text=True, check=True)
            runs[name].append(round(json.loads(out.stdout.strip().splitlines()[-1]), 3))
            print(f"{name}: {runs[name][-1]} s", file=sys.stderr, flush=True)
    alone = statistics.median(runs["alone"])
    result = {"what": "torch threads per OS thread", "model": "toy-shapes", "device": "cpu", "images": 8, "repeats": args.repeats,
              "conditions": {name: {"what": CONDITIONS[name], "median_s": round(statistics.median(v), 3), "runs_s": v,
                                    "ratio_to_alone": round(statistics.median(v) / alone, 2)} for name, v in runs.items()}}
    emit(result, args.out)


if __name__ == "__main__":
    main()
