"""A class pressing Generate at the same moment, on the served app: batching across users on and off.

    python benchmarks/bench_served_burst.py [--users 30] [--rounds 3] [--against DIR] [--new-sessions] [--out FILE]

`bench_batching.py` times the same burst inside one process, where no request counts as served, so
the first UNet worker takes every request and every core. Here the app runs as `python app.py`
serves it (Gradio's queue and places, one worker per core on one thread each in a busy server), one
server with batching and one without, started side by side; with `--against DIR`, this checkout and
the one at DIR instead, both with batching (to measure a change in one run). Each round, on each
server in turn, N gradio_client students press Generate at once with their own prompt and seed.

Each student connects once, before the first round, and the untimed warm-up round builds their
session on the server, as a browser's page load does through the app's load event: Gradio builds a
session's state on its first event, on the server's one event-loop thread (docs/speed.md, "A served
burst, looked into"). `--new-sessions` connects the students anew before every round instead.

Reported per server: the burst's wall time (median over the counted rounds) and per-request p50 /
p95 / max latency; medians of the CPU seconds the server used per burst, of those in its UNet calls,
and of those the students' clients used (they share this machine's cores, where on a Space they run
in the students' browsers), and of how long after the press the first UNet call began; and whether
every image equals the other server's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import MODEL, images_of, prompt_of, serve  # noqa: E402
from timing import burst_summary, emit, image_differences, released_together  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def unet_calls(log: Path, since: float) -> list[dict]:
    """The server's UNet calls that began after `since` (wall clock), from its $CONCEPT_LAB_UNET_LOG."""
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [c for c in lines if c["end"] - c["wall_ms"] / 1000 >= since]


def burst(clients: list, server_pid: int, unet_log: Path, round_: int) -> tuple[tuple[float, list[float], list[np.ndarray]], dict]:
    """Every student presses Generate at once: ((wall seconds, latencies, first images), what the
    server and the clients used meanwhile: CPU seconds, the server's in its UNet calls, and how long
    after the press the first UNet call began)."""
    users = len(clients)
    latencies, images = [0.0] * users, [None] * users

    def student(i: int) -> None:
        started = time.perf_counter()
        out = clients[i].predict(MODEL, prompt_of(i, 10 + round_), i, 25, 4.0, api_name="/generate")
        latencies[i] = time.perf_counter() - started
        images[i] = images_of(out)[0]

    server_cpu, clients_cpu, pressed = cpu_seconds(server_pid), time.process_time(), time.time()
    wall = released_together(users, student)
    calls = unet_calls(unet_log, pressed)
    used = {"server": cpu_seconds(server_pid) - server_cpu, "server_in_the_unet": sum(c["cpu_ms"] for c in calls) / 1000,
            "clients": time.process_time() - clients_cpu,
            "first_unet_call_after": min(c["end"] - c["wall_ms"] / 1000 for c in calls) - pressed}
    return (wall, latencies, images), used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds, after one warm-up round")
    parser.add_argument("--against", default=None, help="another checkout: serve it beside this one, both with batching")
    parser.add_argument("--new-sessions", action="store_true",
                        help="students connect anew before every round, so each burst also builds their sessions")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from gradio_client import Client

    modes = {"this": ROOT, "against": Path(args.against).resolve()} if args.against else {"on": ROOT, "off": ROOT}
    servers, urls, clients, logs = {}, {}, {}, {}
    runs: dict[str, list] = {mode: [] for mode in modes}
    usage: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        for mode, root in modes.items():
            servers[mode], urls[mode], env = serve(mode != "off", Path(tempfile.mkdtemp(prefix=f"served-burst-{mode}-")), root=root)
            logs[mode] = Path(env["CONCEPT_LAB_UNET_LOG"])
            clients[mode] = [Client(urls[mode], verbose=False) for _ in range(args.users)]  # connected once: untimed
        for round_ in range(args.rounds + 1):
            for mode in modes:
                if args.new_sessions and round_:
                    clients[mode] = [Client(urls[mode], verbose=False) for _ in range(args.users)]  # untimed
                done, used = burst(clients[mode], servers[mode].pid, logs[mode], round_)
                if round_:
                    runs[mode].append(done)
                    usage[mode].append(used)
            print(f"round {round_} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait()
    first, second = modes
    result = {"what": "served generation burst", "model": MODEL, "device": "cpu", "cores": os.cpu_count(), "users": args.users,
              "rounds_counted": args.rounds, "new_sessions_every_round": args.new_sessions}
    if args.against:
        result["against_checkout"] = str(modes["against"])
    for mode, done in runs.items():
        result[f"batching_{mode}" if not args.against else mode] = {
            **burst_summary(done, args.users),
            "medians_s": {what: round(statistics.median(u[what] for u in usage[mode]), 2) for what in usage[mode][0]}}
    label = (lambda m: m) if args.against else (lambda m: f"batching_{m}")
    result[f"images_{first}_vs_{second}"] = image_differences(runs[first][0][2], runs[second][0][2])
    result[f"throughput_ratio_{first}_over_{second}"] = round(result[label(first)]["requests_per_s"] / result[label(second)]["requests_per_s"], 2)
    emit(result, args.out)


if __name__ == "__main__":
    main()
