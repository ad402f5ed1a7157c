"""Requests with hooks pressed together: N users run the same panel at once, batching across users on
and off, interleaved, in one process (the Steer, Evolution and Erase tabs' handlers, as the app calls
them, on the toy at the classroom script's settings).

    python benchmarks/bench_hooked_burst.py [--users 8] [--repeats 2] [--out FILE]

Per kind (explore, steer, evolve, erase, generate): the burst's wall time, median over repeats, in
each mode, their ratio, and the batch sizes the batcher formed. With batching on, explorations,
steerings, evolutions and erases share UNet batches, each caller's hooks on its own rows
(`concepts.batching`); off, each runs its own batch-1 calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import script  # noqa: E402
from timing import emit  # noqa: E402

KINDS = ("explore", "steer", "evolve", "erase", "generate")


def handlers() -> dict:
    import ui.erase
    import ui.evolution
    import ui.generate
    import ui.steer

    return {"/generate": lambda *a: ui.generate.generate_image(*a, progress=None), "/explore": ui.steer.explore_image,
            "/steer": ui.steer.steer_image, "/evolve": ui.evolution.follow_evolution, "/edit": ui.erase.edit_concept}


def burst(kind: str, users: int, batching: bool, calls: dict) -> tuple[float, list[int]]:
    """Wall seconds for `users` students pressing `kind` at once, and the batch sizes formed."""
    from concepts.batching import BATCHER

    os.environ["CONCEPT_LAB_BATCHING"] = "1" if batching else "0"
    jobs = [next((api, args) for k, api, args, _ in script(s) if k == kind) for s in range(users)]
    gate = threading.Barrier(users + 1)

    def user(api: str, args: tuple) -> None:
        gate.wait()
        calls[api](*args)

    threads = [threading.Thread(target=user, args=job) for job in jobs]
    for t in threads:
        t.start()
    before = len(BATCHER.batches)
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, BATCHER.batches[before:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.chdir(ROOT)
    from concepts.quiet import quiet_libraries

    quiet_libraries()
    from concepts.torch_threads import use_threads

    use_threads(1)  # as app.py does when served: the main thread never holds torch threads
    calls = handlers()
    for _, api, call_args, _ in script(args.users + 1):  # warm-up: every model, SAE and score loaded
        if api in calls:
            calls[api](*call_args)
    times: dict[tuple[str, bool], list[float]] = {}
    batches: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        for kind in KINDS:
            for batching in (True, False):
                seconds, formed = burst(kind, args.users, batching, calls)
                times.setdefault((kind, batching), []).append(seconds)
                if batching:
                    batches.setdefault(kind, []).extend(formed)
    rows = {}
    for kind in KINDS:
        on, off = statistics.median(times[(kind, True)]), statistics.median(times[(kind, False)])
        rows[kind] = {"on_s": round(on, 2), "off_s": round(off, 2), "off_over_on": round(off / on, 2), "batches_on": batches.get(kind, [])}
    emit({"what": "hooked burst", "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(), "users": args.users,
          "repeats": args.repeats, "kinds": rows}, args.out)


if __name__ == "__main__":
    main()
