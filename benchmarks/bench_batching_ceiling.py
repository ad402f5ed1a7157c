"""How much batching can save at most on the toy's UNet on this machine: cost per image and step.

    python benchmarks/bench_batching_ceiling.py [--repeats 3] [--out FILE]

Without the batcher, the served app runs each request in its own thread on one torch thread, so two
requests at once already use both cores, one image each. With it, requests share UNet calls in one
worker thread (or one per core, `CONCEPT_LAB_BATCH_WORKERS`). What batching can gain is the ratio of
the machine time one image and step costs either way, measured here with nothing else running:
25-step toy generations (CFG, traced blocks, the app's defaults), each condition started in fresh
threads, conditions interleaved `--repeats` times, the median reported. "ms per image and step" is
the wall time divided by every image-step done in it, so two threads side by side count together;
"CPU ms per image and step" is the process's CPU time (every thread's) divided the same way, what
the image-step costs the machine whatever else runs beside it (`benchmarks/bench_classroom.py`
reports the same for a class's UNet calls).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit, released_together  # noqa: E402

CONDITIONS = (  # (name, threads side by side, images each, torch threads each)
    ("unbatched: two requests at once, one image each", 2, 1, 1),
    ("one worker, 2 images, 1 thread", 1, 2, 1),
    ("one worker, 4 images, 1 thread", 1, 4, 1),
    ("one worker, 8 images, 1 thread", 1, 8, 1),
    ("one worker, 16 images, 1 thread", 1, 16, 1),
    ("one worker, 4 images, every core", 1, 4, 0),
    ("one worker, 8 images, every core", 1, 8, 0),
    ("one worker, 16 images, every core", 1, 16, 0),
    ("two workers, 2 images each, 1 thread each", 2, 2, 1),
    ("two workers, 4 images each, 1 thread each", 2, 4, 1),
    ("two workers, 8 images each, 1 thread each", 2, 8, 1),
)


def one_condition(pipe, base_request, side_by_side: int, images: int, torch_threads: int) -> tuple[float, float]:
    """Machine milliseconds per image and step, and CPU milliseconds per image and step (the process's
    CPU time, every thread's): `side_by_side` fresh threads each generate `images`."""
    from concepts.sampling import generate
    from concepts.torch_threads import CORES, use_threads

    request = replace(base_request, prompt=[base_request.prompts[0]] * images)
    cpu = time.process_time()
    took = released_together(side_by_side, lambda _: generate(pipe, request), setup=lambda: use_threads(torch_threads or CORES))
    image_steps = side_by_side * images * request.steps
    return 1000 * took / image_steps, 1000 * (time.process_time() - cpu) / image_steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from concepts.sampling import generate
    from toy_worker import toy_pipe_and_requests

    from concepts.torch_threads import use_threads

    pipe, requests, d = toy_pipe_and_requests((1,))
    base = requests[1]
    use_threads(1)  # as the served app's main thread: a thread that once ran ops on every core slows the others' (concepts/torch_threads.py)
    for images in (1, 2, 4, 8, 16):  # warm-up: every batch size's graphs traced and checked once
        generate(pipe, replace(base, prompt=[base.prompts[0]] * images, steps=2))
    runs: dict[str, list[float]] = {name: [] for name, *_ in CONDITIONS}
    cpu: dict[str, list[float]] = {name: [] for name, *_ in CONDITIONS}
    for _ in range(args.repeats):
        for name, side, images, threads in CONDITIONS:
            wall_ms, cpu_ms = one_condition(pipe, base, side, images, threads)
            runs[name].append(wall_ms)
            cpu[name].append(cpu_ms)
            print(f"{name}: {wall_ms:.2f} ms, {cpu_ms:.2f} CPU ms", file=sys.stderr, flush=True)
    unbatched = statistics.median(runs[CONDITIONS[0][0]])
    emit({"what": "machine time per image and denoising step, batched and not (the most batching can save)",
          "model": "toy-shapes", "device": "cpu", "steps": d.steps, "repeats": args.repeats,
          "conditions": [{"condition": name, "ms_per_image_step": round(statistics.median(runs[name]), 2),
                          "runs_ms": [round(v, 2) for v in runs[name]],
                          "cpu_ms_per_image_step": round(statistics.median(cpu[name]), 2),
                          "unbatched_over_this": round(unbatched / statistics.median(runs[name]), 2)}
                         for name, *_ in CONDITIONS]}, args.out)


if __name__ == "__main__":
    main()
