"""Collection on 1 process and on 2 processes (Accelerate, data split by sampling batch), in one run.

    python benchmarks/bench_collect_scaling.py [--prompts 96] [--repeats 2] [--out FILE]

The toy model's prompts (the classroom script's) are collected with the paper's recipe scaled to the
toy: the three windows of the mid block at the toy's 25 steps, 4 prompts a batch. Variants, run
interleaved `--repeats` times, each a fresh `python -m concepts.train` in a subprocess (one epoch of
SAE training follows; only the collection is timed, from the run's own `timings.collect_seconds`,
which on two processes lasts until the slower rank is done and the shards are merged):

- one process, all cores (`OMP_NUM_THREADS` = cores): what `python -m concepts.train` does;
- one process, one thread: the per-process budget of the two-process run;
- two processes, one thread each: `accelerate launch --multi_gpu --num_processes 2` (torchrun).

Reported: median collection seconds per variant and the speed-up of two processes over one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import free_port, prompt_of  # noqa: E402
from timing import emit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ["--model", "toy-shapes", "--blocks", "mid_block.attentions.0", "--windows", "early", "middle", "final", "--steps", "25",
          "--guidance", "4.0", "--prompts-per-batch", "4", "--chunk-prompts", "32", "--batch-size", "256", "--device", "cpu",
          "--train-device", "cpu", "--no-disk-check"]


def run(variant: str, prompts: Path, out: Path) -> float:
    cores = os.cpu_count() or 1
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": str(cores if variant == "1 process, all cores" else 1)}
    args = ["-m", "concepts.train", "--prompts", str(prompts), *RECIPE, "--out", str(out)]
    if variant.startswith("2 processes"):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), *args]
    else:
        command = [sys.executable, *args]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout)["timings"]["collect_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    variants = ["1 process, all cores", "1 process, 1 thread", "2 processes, 1 thread each"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as scratch:
        prompts = Path(scratch) / "prompts.txt"
        prompts.write_text("\n".join(prompt_of(i, 0) for i in range(args.prompts)) + "\n")
        for repeat in range(args.repeats):
            for index, variant in enumerate(variants):
                times[variant].append(run(variant, prompts, Path(scratch) / f"run-{repeat}-{index}"))
    median = {v: round(statistics.median(t), 2) for v, t in times.items()}
    emit({
        "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "prompts": args.prompts, "repeats": args.repeats, "collect_seconds": times, "median_collect_seconds": median,
        "prompts_per_second": {v: round(args.prompts / s, 2) for v, s in median.items()},
        "speedup_2_processes_over_1_all_cores": round(median[variants[0]] / median[variants[2]], 2),
        "speedup_2_processes_over_1_one_thread": round(median[variants[1]] / median[variants[2]], 2),
    }, args.out)


if __name__ == "__main__":
    main()
