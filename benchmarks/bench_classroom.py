"""A class on one free CPU Space: N students at once, with batching across users on and off, in one run.

    python benchmarks/bench_classroom.py [--users 30] [--arrival 60] [--minutes M] [--quiet-at Q] [--out FILE]

The app is started as `python app.py` serves it (a subprocess, so its memory is its own), once with
batching across users (`CONCEPT_LAB_BATCHING=1`) and once without. Each student is a gradio_client
user with its own session who follows a lesson's script with think-time pauses: arrive within the
first `--arrival` seconds, run the lesson the teacher linked (concept-maps, seed 0), generate twice, explore, steer, follow an
evolution (10 steps) and erase red. With `--minutes M` the class lasts M minutes instead: each student
goes through the script again (new prompts and seeds) until then, so the server never runs out of
work, and throughput counts the requests answered within the M minutes. Reported per mode: throughput, p50 / p95 / max latency per
request kind, failed requests, the server's RSS and open files over time (growth after warm-up;
with `--minutes`, also its resident memory by kind of mapping each minute: heap, other anonymous,
JIT code, files),
with `--quiet-at Q`, a quiet point Q minutes in: no student starts a request until those in flight have
ended and SETTLE_S has passed, and the RSS read then is compared with the one read SETTLE_S after the
bell, both with nothing in flight (the class's clock stops meanwhile, so it still has M minutes of
work; the CPU cores used and the UNet workers' busy share leave the whole pause out, also the
20-25 s in which the requests in flight end, so they read up to 8 % high in a five-minute class); the caches on disk afterwards (CAD scores, the app's files, Gradio's temp folder), the CPU cores the
server and the students' clients used, and, with batching on, what the UNet worker did (its batch
log, `CONCEPT_LAB_BATCH_LOG`: images per shared UNet call, milliseconds per image and step, how
long generations waited for their first step), and in both modes the CPU spent inside the UNet's
calls against all the server spent (`CONCEPT_LAB_UNET_LOG`, `concepts.unet_clock`: the only part
batching can make cheaper; per request, and how much faster the unbatched class could go at most if
its UNet cost nothing). Checked: the
first generation of every student equals the one it gets alone before the class, within 1/255 per
pixel (`concepts.batching`), and after the class the same requests still give the same images (the
shared model and its hooks are untouched).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import images_of  # noqa: E402
from timing import emit  # noqa: E402

MODEL, MID = "toy-shapes", "mid_block.attentions.0"
SETTLE_S = 35.0
"""RSS is read again this long after the class: past the app's malloc_trim rounds (every 10 s)."""
SHAPES, COLOURS = ("circle", "square", "triangle", "star", "cross"), ("red", "orange", "yellow", "green", "blue", "purple")
PLACES = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")


def prompt_of(student: int, turn: int) -> str:
    rng = random.Random(student * 1000 + turn)
    return f"a {rng.choice(('small', 'large'))} {rng.choice(COLOURS)} {rng.choice(('solid', 'striped', 'dotted'))} {rng.choice(SHAPES)} " \
           f"at the {rng.choice(PLACES)} on a {rng.choice(('black', 'white', 'gray'))} background"


def script(student: int) -> list[tuple[str, str, tuple, float]]:
    """(kind, api name, arguments, think seconds before it) for one student."""
    rng = random.Random(student)
    think = lambda low, high: rng.uniform(low, high)  # noqa: E731
    return [
        ("lesson", "/lesson", ("concept-maps", 0), 0.0),  # the teacher's link: the same lesson and seed for all
        ("generate", "/generate", (MODEL, prompt_of(student, 0), student, 25, 4.0), think(4, 8)),
        ("generate", "/generate", (MODEL, prompt_of(student, 1), student + 100, 25, 4.0), think(2, 4)),
        ("explore", "/explore", (MODEL, prompt_of(student, 0), student, 25, 4.0, MID, "middle"), think(3, 6)),
        ("steer", "/steer", (MODEL, prompt_of(student, 0), student, 25, 4.0, MID, "middle", "dotted", "", "global", None, 1000.0, "cond"),
         think(4, 8)),
        ("evolve", "/evolve", (MODEL, prompt_of(student, 2), student, 10, 4.0, MID, []), think(3, 6)),
        ("erase", "/edit", (MODEL, "red", "erase", 0.056, "faithful", "", prompt_of(student, 3).replace("red", "blue"), student, 2, "",
                            "matrix", 0, "mean", "presence", "cad"), think(4, 8)),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def folder_size(path: Path) -> dict:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return {"files": len(files), "mb": round(sum(p.stat().st_size for p in files) / 2**20, 2)}


def serve(batching: bool, work: Path, root: Path = ROOT) -> tuple[subprocess.Popen, str, dict]:
    """`python app.py` of the checkout at `root` (this one by default) on a free port, its caches and
    logs under `work`; returns once it answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "CONCEPT_LAB_BATCHING": "1" if batching else "0",
           "CONCEPT_LAB_CACHE": str(work / "cache"), "GRADIO_TEMP_DIR": str(work / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
           "CONCEPT_LAB_BATCH_LOG": str(work / "batches.jsonl"), "CONCEPT_LAB_UNET_LOG": str(work / "unet.jsonl")}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    url = f"http://127.0.0.1:{port}/"
    import urllib.request

    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url, env
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the app did not start; see " + str(work / "server.log"))


def first_images(url: str, students: list[int]) -> dict[int, np.ndarray]:
    """Each student's first generation, asked alone (one at a time)."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    return {s: images_of(client.predict(*script(s)[1][2], api_name="/generate"))[0] for s in students}


def batch_summary(path: Path, since: float, until: float, paused: float = 0.0) -> dict:
    """What the UNet worker did during the class (`concepts.batching` logs each shared UNet step with
    batching on): the calls by how many images they held, with each size's share of all image-steps
    and its cost per image and step, the share of the class the workers were busy (on average and each), and how long plain
    generations waited for their first step. `paused`: seconds of the span the class stood still (its quiet point)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    calls = [b for b in lines if since <= b["start"] and b["end"] <= until]
    if not calls:
        return {}
    images = [sum(j["images"] for j in b["jobs"]) for b in calls]
    workers = sorted({b.get("worker", 0) for b in calls})
    total, span = sum(images), until - since - paused
    sizes = {"1": (1, 1), "2-4": (2, 4), "5-8": (5, 8), "9-16": (9, 16), "17+": (17, 10**6)}
    by_size = {}
    for name, (low, high) in sizes.items():
        chosen = [(b, n) for b, n in zip(calls, images) if low <= n <= high]
        work = sum(n for _, n in chosen)
        by_size[name] = {"calls": len(chosen), "share_of_image_steps": round(work / total, 3),
                         "ms_per_image_step": round(1000 * sum(b["end"] - b["start"] for b, _ in chosen) / work, 1) if work else None}
    waits = [j["waited"] for b in calls for j in b["jobs"] if not j["hooks"] and "waited" in j]
    return {"unet_calls": len(calls), "requests_per_call": round(statistics.mean(len(b["jobs"]) for b in calls), 2),
            "images_per_call": round(total / len(calls), 2), "by_images": by_size,
            "ms_per_image_step": round(1000 * sum(b["end"] - b["start"] for b in calls) / total, 1),
            "worker_busy_share": round(sum(b["end"] - b["start"] for b in calls) / span / len(workers), 2),
            "busy_share_by_worker": {w: round(sum(b["end"] - b["start"] for b in calls if b.get("worker", 0) == w) / span, 2)
                                     for w in workers},
            "plain_generation_wait_s": {"p50": round(statistics.median(waits), 2), "p95": round(float(np.percentile(waits, 95)), 2)} if waits else None}


def cpu_seconds(proc) -> float:
    """User and system CPU seconds of a process so far, every thread's (a psutil.Process)."""
    return sum(proc.cpu_times()[:2])


def idle_cores(proc, settle_s: float, seconds: float) -> float:
    """The CPU cores a server left alone uses (its own ticking): read over `seconds` after `settle_s`."""
    time.sleep(settle_s)
    before = cpu_seconds(proc)
    time.sleep(seconds)
    return (cpu_seconds(proc) - before) / seconds


def unet_cpu_summary(path: Path, since: float, until: float, server_cpu_s: float, answered: int) -> dict:
    """The CPU the server spent inside the UNet's calls ($CONCEPT_LAB_UNET_LOG, `concepts.unet_clock`)
    against all the CPU it spent in the class: the only part batching can make cheaper. Per request
    answered (also those answered after the bell, whose CPU the server's total counts): core-seconds
    in the UNet and elsewhere, image-steps, and the UNet's CPU per image and step. The UNet's CPU is
    the calling thread's; `calls_on_one_thread_share` says for how much of it torch ran on one thread
    (on more, the other threads' part is missed)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    calls = [c for c in lines if since <= c["end"] <= until]
    if not calls or not answered:
        return {}
    unet_s = sum(c["cpu_ms"] for c in calls) / 1000
    image_steps = sum(c["images"] for c in calls)
    return {"server_cpu_s": round(server_cpu_s, 1), "unet_cpu_s": round(unet_s, 1), "unet_share": round(unet_s / server_cpu_s, 3),
            "requests_answered": answered,
            "per_request_cpu_s": {"unet": round(unet_s / answered, 3), "elsewhere": round((server_cpu_s - unet_s) / answered, 3)},
            "image_steps_per_request": round(image_steps / answered, 1),
            "unet_cpu_ms_per_image_step": round(1000 * unet_s / image_steps, 2),
            "calls_on_one_thread_share": round(sum(c["threads"] == 1 for c in calls) / len(calls), 3)}


def cpu_bounds(on: dict | None, off: dict | None) -> dict:
    """What the two modes' CPU says about batching's reach: the CPU a request cost without batching
    ÷ with it (the saving batching made), and how much faster the unbatched class could go at most if
    its UNet calls cost nothing, 1 / (1 − the UNet's share of its CPU): batching cannot save more
    than the UNet costs."""
    if not on or not off:
        return {}
    per = lambda mode: sum(mode["per_request_cpu_s"].values())  # noqa: E731
    return {"cpu_per_request_off_over_on": round(per(off) / per(on), 2),
            "off_if_the_unet_cost_nothing": round(1 / (1 - off["unet_share"]), 2)}


def memory_parts(proc) -> dict[str, float]:
    """The server's resident memory in MB by kind of mapping (/proc/PID/smaps): the C heap, other
    anonymous memory (malloc's second arena, Python's arenas, large buffers, thread stacks), oneDNN's JIT code
    (anonymous and executable) and file-backed pages (the libraries' code and data)."""
    parts = {"heap": 0.0, "other_anonymous": 0.0, "jit_code": 0.0, "files": 0.0}
    for region in proc.memory_maps(grouped=False):
        if region.path == "[heap]":
            kind = "heap"
        elif region.path.startswith("/"):
            kind = "files"
        else:
            kind = "jit_code" if "x" in region.perms else "other_anonymous"
        parts[kind] += region.rss / 2**20
    return {kind: round(mb, 1) for kind, mb in parts.items()}


def rss_at(samples: list[tuple[float, float, int]], started: float, minute: float) -> float:
    """RSS in MB at `minute` minutes into the class: the first sample from then."""
    return next(m for t, m, _ in samples if t >= started + 60 * minute)


def low_in_minute(samples: list[tuple[float, float, int]], started: float, minute: int) -> float:
    """The lowest RSS in MB sampled in that minute of the class: what the server held just after one
    of the app's malloc_trim rounds (`ui/memory.py`, INTERVAL_S), without the freed pages a reading between
    two rounds still counts."""
    return min(m for t, m, _ in samples if started + 60 * minute <= t < started + 60 * (minute + 1))


def from_minute(samples: list[tuple[float, float, int]], started: float, minute: float) -> dict:
    """RSS at `minute` minutes into the class, at its end, and the growth between: the soak's
    measure, after a warm-up of the class itself. Also the lowest reading in that minute and in the
    last whole minute, and the growth between those: memory held, not freed pages awaiting a trim."""
    then = rss_at(samples, started, minute)
    last = int((samples[-1][0] - started) // 60) - 1  # the last whole minute
    low, low_last = low_in_minute(samples, started, int(minute)), low_in_minute(samples, started, last)
    return {"mb": round(then, 1), "end": round(samples[-1][1], 1), "growth_pct": round(100 * (samples[-1][1] - then) / then, 1),
            "lowest_in_that_minute": round(low, 1), "lowest_in_the_last_minute": round(low_last, 1),
            "lowest_growth_pct": round(100 * (low_last - low) / low, 1)}


def run_class(batching: bool, users: int, arrival: float, classes: int = 1, minutes: float | None = None,
              quiet_at: float | None = None) -> dict:
    import psutil

    work = Path(tempfile.mkdtemp(prefix=f"classroom-{'on' if batching else 'off'}-"))
    server, url, _ = serve(batching, work)
    proc = psutil.Process(server.pid)
    try:
        from gradio_client import Client

        warm = Client(url, verbose=False)
        for _, api, args, _ in script(users + 1):  # warm-up: one student's whole script, every model and SAE loaded
            warm.predict(*args, api_name=api)
        solo = first_images(url, list(range(users)))
        rss_before = proc.memory_info().rss / 2**20
        samples, parts, stop = [], [], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    samples.append((time.perf_counter(), proc.memory_info().rss / 2**20, proc.num_fds()))
                    if not parts or samples[-1][0] - parts[-1][0] >= 60:
                        parts.append((samples[-1][0], memory_parts(proc)))
                except psutil.Error:
                    pass
                stop.wait(2.0)

        gate, in_flight, quiet = threading.Event(), [0], {}
        gate.set()

        def hush() -> None:
            """The quiet point: no student starts a request, those in flight end, and after SETTLE_S the
            server's RSS is what it holds, read the same way as after the bell. The class's clock stops
            meanwhile, so it still has its minutes of work."""
            time.sleep(max(0.0, started + 60 * quiet_at - time.perf_counter()))
            hushed = time.perf_counter()
            with lock:
                gate.clear()
            while in_flight[0]:
                time.sleep(0.2)
            drained = time.perf_counter()
            time.sleep(SETTLE_S)
            quiet.update(at_minute=quiet_at, seconds_to_drain=round(drained - hushed, 1), mb=round(proc.memory_info().rss / 2**20, 1),
                         parts=memory_parts(proc))
            quiet["paused_s"] = round(time.perf_counter() - hushed, 1)
            clock[0] += quiet["paused_s"]
            gate.set()

        latencies: dict[str, list[float]] = {}
        answered = [0]  # every request answered, also after the bell: the server's CPU counts them all
        failures: list[str] = []
        mismatched: list[int] = []
        lock = threading.Lock()

        def student(s: int) -> None:
            time.sleep(random.Random(-s).uniform(0, arrival))
            client = Client(url, verbose=False)
            turns = list(enumerate(script(s)))
            again = 1
            while turns:
                k, (kind, api, args, pause) = turns.pop(0)
                if deadline is not None and not turns:  # a timed class: the script again, new prompts and seeds
                    turns = [(-1, step) for step in script(s + 100_000 * again)]
                    again += 1
                time.sleep(pause)
                while True:  # wait out a quiet point, then count this request in flight
                    gate.wait()
                    with lock:
                        if gate.is_set():
                            in_flight[0] += 1
                            break
                if deadline is not None and time.perf_counter() >= deadline + clock[0]:
                    with lock:
                        in_flight[0] -= 1
                    return
                started = time.perf_counter()
                try:
                    output = client.predict(*args, api_name=api)
                except Exception as exc:  # noqa: BLE001 - counted
                    with lock:
                        failures.append(f"{kind}: {str(exc)[:120]}")
                    continue
                finally:
                    with lock:
                        in_flight[0] -= 1
                took = time.perf_counter() - started
                with lock:
                    answered[0] += 1
                if deadline is not None and started + took > deadline + clock[0]:
                    return  # answered after the bell: not counted
                with lock:
                    latencies.setdefault(kind, []).append(took)
                if k == 1 and s in solo:
                    got = images_of(output)[0]
                    if np.abs(got.astype(int) - solo[s].astype(int)).max() > 1:
                        with lock:
                            mismatched.append(s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu_server, cpu_students, wall_started = cpu_seconds(proc), cpu_seconds(psutil.Process()), time.time()
        started = time.perf_counter()
        deadline = started + 60 * minutes if minutes else None
        clock = [0.0]  # seconds the class stood still at its quiet point
        if quiet_at is not None:
            threading.Thread(target=hush, daemon=True).start()
        rss_after_class = []
        for lesson_round in range(classes):  # later classes: new students (new sessions) on the same server
            offset = lesson_round * 1000
            threads = [threading.Thread(target=student, args=(offset + s,)) for s in range(users)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rss_after_class.append(round(proc.memory_info().rss / 2**20, 1))
        wall = 60 * minutes if minutes else time.perf_counter() - started - clock[0]
        elapsed = time.perf_counter() - started - clock[0]
        server_cpu_s, wall_ended = cpu_seconds(proc) - cpu_server, time.time()
        cores = {"server": round(server_cpu_s / elapsed, 2),
                 "students": round((cpu_seconds(psutil.Process()) - cpu_students) / elapsed, 2)}
        unet_cpu = unet_cpu_summary(work / "unet.jsonl", wall_started, wall_ended, server_cpu_s, answered[0])
        batching_log = batch_summary(work / "batches.jsonl", wall_started, wall_started + wall + clock[0], clock[0])
        stop.set()
        sampler.join()
        time.sleep(SETTLE_S)  # past one malloc_trim interval of the app (ui/memory.py): what it still holds
        rss_settled, parts_settled = round(proc.memory_info().rss / 2**20, 1), memory_parts(proc)
        after = first_images(url, list(range(min(users, 5))))
        unchanged = all(np.array_equal(after[s], solo[s]) or np.abs(after[s].astype(int) - solo[s].astype(int)).max() <= 1 for s in after)
        total = sum(len(v) for v in latencies.values())
        return {
            "batching": batching, "users": users, "wall_seconds": round(wall, 1), "requests": total, "failed": failures,
            "throughput_requests_per_s": round(total / wall, 3),
            "latency_s": {k: {"n": len(v), "p50": round(statistics.median(v), 2), "p95": round(float(np.percentile(v, 95)), 2), "max": round(max(v), 2)}
                          for k, v in sorted(latencies.items())},
            "cpu_cores_used": cores, "cpu_in_the_unet": unet_cpu, "unet_worker": batching_log,
            "first_generation_differs_from_solo": mismatched, "same_images_after_the_class": unchanged,
            "rss_mb": {"after_warmup": round(rss_before, 1), "end": round(samples[-1][1], 1), "max": round(max(m for _, m, _ in samples), 1),
                       "growth_after_warmup_pct": round(100 * (samples[-1][1] - rss_before) / rss_before, 1)},
            "rss_mb_after_each_class": rss_after_class,
            **({"minutes": minutes, "rss_mb_from_minute_2": from_minute(samples, started, 2.0),
                "rss_mb_each_minute": [round(rss_at(samples, started, k), 1) for k in range(int(minutes))],
                "rss_mb_lowest_each_minute": [round(low_in_minute(samples, started, k), 1) for k in range(int(minutes))],
                "memory_parts_mb_each_minute": [p for _, p in parts]}
               if minutes and minutes > 2 else {}),
            "rss_mb_settled": {"mb": rss_settled, "seconds_after_the_class": SETTLE_S,
                               "growth_after_warmup_pct": round(100 * (rss_settled - rss_before) / rss_before, 1),
                               "parts": parts_settled},
            **({"rss_mb_quiet": {"at_the_quiet_point": quiet, "after_the_bell": rss_settled,
                                 "growth_pct": round(100 * (rss_settled - quiet["mb"]) / quiet["mb"], 1)}} if quiet else {}),
            "open_files": {"start": samples[0][2], "end": samples[-1][2], "max": max(f for _, _, f in samples)},
            "disk": {"cad_cache": folder_size(work / "cache"), "gradio_temp": folder_size(work / "gradio"),
                     "app_files": folder_size(Path(tempfile.gettempdir()) / "concept-lab-files")},
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--arrival", type=float, default=60.0, help="students arrive within this many seconds")
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", choices=["on", "off"], default=None, help="run one mode only (no ratio)")
    parser.add_argument("--classes", type=int, default=1, help="with --only: this many classes back to back on one server (a soak)")
    parser.add_argument("--minutes", type=float, default=None, help="a class of this many minutes: students repeat the script until then")
    parser.add_argument("--quiet-at", type=float, default=None,
                        help="at this minute of the class, let the requests in flight end and read RSS after SETTLE_S, as after the bell")
    args = parser.parse_args()
    if args.only:
        emit(run_class(args.only == "on", args.users, args.arrival, args.classes, args.minutes, args.quiet_at), args.out)
        return
    on = run_class(True, args.users, args.arrival, minutes=args.minutes, quiet_at=args.quiet_at)
    print(json.dumps(on), file=sys.stderr, flush=True)
    off = run_class(False, args.users, args.arrival, minutes=args.minutes, quiet_at=args.quiet_at)
    result = {"what": "classroom", "device": "cpu", "cores": os.cpu_count(), "batching_on": on, "batching_off": off,
              "throughput_ratio_on_over_off": round(on["throughput_requests_per_s"] / off["throughput_requests_per_s"], 2),
              "generate_p95_ratio_off_over_on": round(off["latency_s"]["generate"]["p95"] / on["latency_s"]["generate"]["p95"], 2),
              **cpu_bounds(on.get("cpu_in_the_unet"), off.get("cpu_in_the_unet"))}
    emit(result, args.out)


if __name__ == "__main__":
    main()
