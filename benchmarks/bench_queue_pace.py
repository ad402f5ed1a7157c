"""Gradio's queue at its own pace (a look for startable work every 1 ms) against the app's (10 ms,
`ui/queue_pace.py`), in one run.

    python benchmarks/bench_queue_pace.py [--idle-draws 3] [--idle-seconds 15] [--minutes 5] [--users 30] [--out FILE]

Idle: the served app (`python app.py`) is started at each pace in turn, `--idle-draws` times,
alternating, and left alone for 20 s; then its CPU over `--idle-seconds` is read (cores used, every
thread's). A class: `bench_classroom.run_class` with batching on, `--minutes` long, once at each
pace (`--minutes 0` skips it): requests answered, generate p95, the server's cores and its CPU per
request. `CONCEPT_LAB_QUEUE_POLL_MS` sets the pace of each server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import idle_cores, run_class, serve  # noqa: E402
from timing import emit  # noqa: E402

PACES_MS = {"gradio_1ms": "1", "app_10ms": "10"}
SETTLE_S = 20.0


def idle_server_cores(seconds: float) -> float:
    """The CPU cores a freshly served app uses while no one asks anything, read after it has settled."""
    import psutil

    server, _, _ = serve(True, Path(tempfile.mkdtemp(prefix="queue-pace-")))
    try:
        return idle_cores(psutil.Process(server.pid), SETTLE_S, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-draws", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--minutes", type=float, default=5.0, help="a batching-on class at each pace; 0 skips it")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    idle: dict[str, list[float]] = {name: [] for name in PACES_MS}
    for _ in range(args.idle_draws):
        for name, ms in PACES_MS.items():
            os.environ["CONCEPT_LAB_QUEUE_POLL_MS"] = ms  # the server inherits it
            idle[name].append(round(idle_server_cores(args.idle_seconds), 4))
            print(f"idle {name}: {idle[name][-1]} cores", file=sys.stderr, flush=True)
    classes = {}
    if args.minutes:
        for name, ms in PACES_MS.items():
            os.environ["CONCEPT_LAB_QUEUE_POLL_MS"] = ms
            run = run_class(True, args.users, 60.0, minutes=args.minutes)
            split = run.get("cpu_in_the_unet") or {}
            classes[name] = {"requests": run["requests"], "failed": len(run["failed"]),
                             "generate_p50_p95_s": [run["latency_s"]["generate"]["p50"], run["latency_s"]["generate"]["p95"]],
                             "long_requests_p50_s": {k: v["p50"] for k, v in run["latency_s"].items() if k not in ("generate", "lesson")},
                             "server_cores": run["cpu_cores_used"]["server"],
                             "cpu_per_request_s": round(sum(split["per_request_cpu_s"].values()), 3) if split else None,
                             "first_images_as_alone": not run["first_generation_differs_from_solo"],
                             "same_images_after": run["same_images_after_the_class"]}
            print(f"class {name}: {classes[name]}", file=sys.stderr, flush=True)
    emit({"what": "Gradio's queue pace: idle CPU and a class, 1 ms against the app's 10 ms", "model": "toy-shapes", "device": "cpu",
          "cores": os.cpu_count(),
          "idle_server_cores": {name: {"median": statistics.median(v), "draws": v} for name, v in idle.items()},
          **({"class_minutes": args.minutes, "class_batching_on": classes} if classes else {})}, args.out)


if __name__ == "__main__":
    main()
