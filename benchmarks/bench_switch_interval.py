"""Why the served app shortens Python's switch interval: the UNet worker beside threads running Python.

    python benchmarks/bench_switch_interval.py [--repeats 3] [--out FILE]

The UNet worker (`concepts.batching`) lets go of the interpreter lock around every torch op and must
take it back after each. While another thread runs pure Python (Gradio's request handling, drawing a
matplotlib figure), the worker waits for it up to the switch interval every time: Python's 5 ms by
default. A toy UNet step is a few hundred small ops, so that wait, not the arithmetic, sets its time.

For each switch interval (5 ms, Python's default; 0.5; 0.1, the app's; 0.02) and each count of busy
Python threads (0, 1, 2), a worker thread with every torch thread denoises the toy's 4 images (25
steps, or as many as fit in `--window` seconds: at 5 ms beside two busy threads a whole generation
took 447 s); the busy threads spin in Python meanwhile and count their loops, so the cost to them
shows too. Conditions are interleaved `--repeats` times in one process; the median time per step,
a whole generation's time at that pace, and the ratio to "alone at 5 ms" are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

INTERVALS_MS = (5.0, 0.5, 0.1, 0.02)
BUSY_THREADS = (0, 1, 2)


def busy_python(stop: threading.Event, loops: list[int]) -> None:
    """Pure Python work, like a handler building a response: no torch, no I/O."""
    count = 0
    while not stop.is_set():
        total = 0
        for i in range(2000):
            total += i * i
        count += 1
    loops.append(count)


class _Enough(Exception):
    """Stops a generation once its time window is used up."""


def one_condition(pipe, request, interval_ms: float, busy: int, window_s: float) -> tuple[float, float]:
    """(seconds per denoising step, the busy threads' Python loops per second in all): the worker
    denoises for at most `window_s` (at 5 ms beside busy threads a whole generation takes minutes)."""
    from concepts.sampling import generate
    from concepts.torch_threads import CORES, use_threads

    sys.setswitchinterval(interval_ms / 1000)
    stop, loops = threading.Event(), []
    others = [threading.Thread(target=busy_python, args=(stop, loops)) for _ in range(busy)]
    steps: list[int] = []
    took: list[float] = []

    def worker() -> None:
        use_threads(CORES)
        start = time.perf_counter()

        def on_step(state) -> None:
            steps.append(state.index)
            if time.perf_counter() - start > window_s:
                raise _Enough

        try:
            generate(pipe, request, on_step=on_step)
        except _Enough:
            pass
        took.append(time.perf_counter() - start)

    for thread in others:
        thread.start()
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    stop.set()
    for other in others:
        other.join()
    return took[0] / len(steps), sum(loops) / took[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="seconds each condition denoises at most")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from concepts.sampling import generate
    from toy_worker import toy_pipe_and_requests

    pipe, requests, d = toy_pipe_and_requests((4,))
    request = requests[4]
    generate(pipe, request)  # warm-up
    default = sys.getswitchinterval()
    runs: dict[tuple[float, int], list[tuple[float, float]]] = {(i, b): [] for i in INTERVALS_MS for b in BUSY_THREADS}
    try:
        for _ in range(args.repeats):
            for key in runs:
                runs[key].append(one_condition(pipe, request, *key, args.window))
                print(f"{key[0]} ms, {key[1]} busy: {1000 * runs[key][-1][0]:.1f} ms a step", file=sys.stderr, flush=True)
    finally:
        sys.setswitchinterval(default)
    alone = statistics.median(t for t, _ in runs[(5.0, 0)])
    result = {"what": "the UNet worker beside busy Python threads, by switch interval", "model": "toy-shapes", "device": "cpu",
              "images": 4, "steps": d.steps, "repeats": args.repeats, "window_s": args.window,
              "conditions": [{"switch_interval_ms": i, "busy_python_threads": b,
                              "ms_per_step_median": round(1000 * statistics.median(t for t, _ in v), 1),
                              "ms_per_step_runs": [round(1000 * t, 1) for t, _ in v],
                              "a_whole_generation_s": round(d.steps * statistics.median(t for t, _ in v), 2),
                              "ratio_to_alone_at_5ms": round(statistics.median(t for t, _ in v) / alone, 2),
                              "busy_threads_loops_per_s": round(statistics.median(n for _, n in v))}
                             for (i, b), v in runs.items()]}
    emit(result, args.out)


if __name__ == "__main__":
    main()
