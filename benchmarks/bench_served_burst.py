"""A class pressing Generate at the same moment, on the served app: batching across users on and off.

    python benchmarks/bench_served_burst.py [--users 30] [--rounds 3] [--out FILE]

`bench_batching.py` times the same burst inside one process, where no request counts as served, so
the first UNet worker takes every request and every core. Here the app runs as `python app.py`
serves it (Gradio's queue and places, one worker per core on one thread each in a busy server), one
server with batching and one without, started side by side. Each round, on each server in turn, N
gradio_client students (connected beforehand, untimed) press Generate at once with their own
prompt and seed. Reported per mode: the burst's wall time (median over the rounds after a warm-up
round), and per-request p50 / p95 / max latency; and whether every image equals the other server's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import MODEL, images_of, prompt_of, serve  # noqa: E402
from timing import burst_summary, emit, image_differences, released_together  # noqa: E402


def burst(url: str, users: int, round_: int) -> tuple[float, list[float], list[np.ndarray]]:
    """Every student presses Generate at once; (wall seconds, latencies, first images)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(users)]  # connected before the release: untimed
    latencies, images = [0.0] * users, [None] * users

    def student(i: int) -> None:
        started = time.perf_counter()
        out = clients[i].predict(MODEL, prompt_of(i, 10 + round_), i, 25, 4.0, api_name="/generate")
        latencies[i] = time.perf_counter() - started
        images[i] = images_of(out)[0]

    return released_together(users, student), latencies, images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds, after one warm-up round")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    servers, urls = {}, {}
    for mode in ("on", "off"):
        servers[mode], urls[mode], _ = serve(mode == "on", Path(tempfile.mkdtemp(prefix=f"served-burst-{mode}-")))
    runs: dict[str, list] = {"on": [], "off": []}
    try:
        for round_ in range(args.rounds + 1):
            for mode in ("on", "off"):
                done = burst(urls[mode], args.users, round_)
                if round_:
                    runs[mode].append(done)
            print(f"round {round_} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait()
    result = {"what": "served generation burst", "model": MODEL, "device": "cpu", "cores": os.cpu_count(), "users": args.users,
              "rounds_counted": args.rounds}
    for mode, done in runs.items():
        result[f"batching_{mode}"] = burst_summary(done, args.users)
    result["images_on_vs_off"] = image_differences(runs["on"][0][2], runs["off"][0][2])
    result["throughput_ratio_on_over_off"] = round(result["batching_on"]["requests_per_s"] / result["batching_off"]["requests_per_s"], 2)
    emit(result, args.out)


if __name__ == "__main__":
    main()
