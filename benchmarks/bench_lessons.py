"""How long each lesson's Run takes, and what it reads over several seeds (mean ± sd), in one run.

    python benchmarks/bench_lessons.py [--seeds 0 1 2] [--cold] [--out FILE]

For every lesson and seed: the seconds of `run_lesson` (what the tab's Run does, figures excepted)
and every bar of its chart. Reported per lesson: the median and the largest time, and per bar the
mean ± sd over the seeds (the multi-draw table docs/lessons.md gives beside the tab's one draw).
As the yardstick, in the same run: plain diffusers drawing one batch of 8 toy images (in a thread
of its own, on every core, gone before the lessons start). The lessons then run as the served app
runs them: this thread on one torch thread, the UNet's work on the batcher's thread, which has every
core (`concepts.torch_threads`).

`--cold` points the attribution cache at an empty folder first, so the erase lessons pay for any
attribution the toy does not ship (`checkpoints/toy-shapes/cad-scores/`); with `--no-shipped` they
also ignore the shipped scores (what a lesson on a concept nobody erased before costs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from timing import emit  # noqa: E402

from concepts.generation import SHARED_PIPELINES  # noqa: E402
from concepts.lessons import LESSONS, run_lesson  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402
from concepts.torch_threads import CORES, use_threads  # noqa: E402

TARGET_SECONDS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lessons", nargs="+", default=list(LESSONS))
    parser.add_argument("--cold", action="store_true", help="start from an empty attribution cache")
    parser.add_argument("--no-shipped", action="store_true", help="ignore the scores the toy ships (cold attribution)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_libraries()
    if args.cold or args.no_shipped:
        os.environ["CONCEPT_LAB_CACHE"] = tempfile.mkdtemp(prefix="lessons-cold-")
    if args.no_shipped:
        import concepts.edit.service as service

        service.load_shipped = lambda world, key: None

    world = load_registry().get("toy-shapes")
    pipe = SHARED_PIPELINES.get(world, "cpu")
    d = world.defaults

    def plain_batch() -> float:
        start = time.perf_counter()
        pipe(["a red large solid circle in the center on a white background"] * 8, num_inference_steps=d.steps, guidance_scale=d.guidance,
             height=d.height, width=d.width, generator=torch.Generator().manual_seed(0), output_type="pt")
        return time.perf_counter() - start

    plain_times: list[float] = []

    def yardstick() -> None:
        use_threads(CORES)
        plain_batch()  # warm-up
        plain_times.extend(plain_batch() for _ in range(3))

    thread = threading.Thread(target=yardstick)
    thread.start()
    thread.join()  # its torch threads go with it
    plain = statistics.median(plain_times)
    use_threads(1)  # as app.py does when served
    lessons = {}
    for name in args.lessons:
        times, bars = [], {}
        for seed in args.seeds:
            reading = run_lesson(name, seed=seed, cached=False)
            times.append(reading.seconds)
            for bar in reading.bars:
                if not bar.paper and bar.value is not None:
                    bars.setdefault(f"{bar.group} · {bar.series}", []).append(bar.value)
            print(f"{name} seed {seed}: {reading.seconds:.1f} s", file=sys.stderr, flush=True)
        lessons[name] = {
            "seconds": {"first": times[0], "median": statistics.median(times), "max": max(times), "runs": times},
            "within_target": max(times) <= TARGET_SECONDS,
            "bars_mean_sd": {k: {"mean": round(statistics.fmean(v), 3), "sd": round(statistics.pstdev(v), 3), "draws": len(v)} for k, v in bars.items()},
        }
    result = {"what": "lessons", "device": "cpu", "threads": CORES, "seeds": args.seeds, "cold_cache": args.cold or args.no_shipped,
              "shipped_scores": not args.no_shipped, "target_seconds": TARGET_SECONDS,
              "plain_diffusers_batch_of_8_seconds": round(plain, 3), "lessons": lessons}
    emit(result, args.out)


if __name__ == "__main__":
    main()
