"""One student alone on the served app: each request's latency with the app's one-torch-thread rule
on and off, in one run (`concepts.torch_threads`).

    python benchmarks/bench_solo.py [--rounds 4] [--out FILE]

Two servers are started as `python app.py` serves it, one with $CONCEPT_LAB_ONE_TORCH_THREAD=1 (the
default) and one with 0. One gradio_client student follows the classroom script (the lesson, two
generations, an exploration, a steering, an evolution, an erase) on each server in turn, round after
round, so only one server works at a time. The first round warms both up and is not counted; per
request kind the median over the other rounds, and off ÷ on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import script, serve  # noqa: E402
from timing import emit  # noqa: E402

MODES = {"on": "1", "off": "0"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from gradio_client import Client

    servers, clients = {}, {}
    for mode, flag in MODES.items():
        os.environ["CONCEPT_LAB_ONE_TORCH_THREAD"] = flag  # the server inherits it
        servers[mode], url, _ = serve(True, Path(tempfile.mkdtemp(prefix=f"solo-{mode}-")))
        clients[mode] = Client(url, verbose=False)
    times: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    try:
        for round_ in range(args.rounds):
            for mode in MODES:
                for kind, api, call_args, _ in script(1 + round_):
                    if kind == "lesson":
                        call_args = ("concept-maps", round_)  # another seed each round: computed, not kept
                    start = time.perf_counter()
                    clients[mode].predict(*call_args, api_name=api)
                    if round_:
                        times[mode].setdefault(kind, []).append(round(time.perf_counter() - start, 3))
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait()
    kinds = {}
    for kind in times["on"]:
        on, off = statistics.median(times["on"][kind]), statistics.median(times["off"][kind])
        kinds[kind] = {"on_s": round(on, 2), "off_s": round(off, 2), "off_over_on": round(off / on, 2),
                       "runs_on": times["on"][kind], "runs_off": times["off"][kind]}
    emit({"what": "one student alone, served", "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(),
          "rounds_counted": args.rounds - 1, "rule": "CONCEPT_LAB_ONE_TORCH_THREAD: on = every core only in the batcher's thread",
          "kinds": kinds}, args.out)


if __name__ == "__main__":
    main()
