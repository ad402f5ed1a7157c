"""One student alone on the served app: each request's latency under two thread settings, in one run
(`concepts.torch_threads`).

    python benchmarks/bench_solo.py [--rounds 4] [--compare rule|worker|switch|traced] [--out FILE]
    python benchmarks/bench_solo.py --against ../other-checkout [--rounds 4] [--out FILE]

Two servers are started as `python app.py` serves it. `--compare rule` (the default): the
one-torch-thread rule on ($CONCEPT_LAB_ONE_TORCH_THREAD=1, the default) and off (0). `--compare
worker`: the UNet worker's threads chosen by load (the default: every core for one student) and fixed
at one ($CONCEPT_LAB_WORKER_THREADS=1, what it takes in a busy class). `--compare switch`: Python's
switch interval at the app's 0.1 ms and at Python's default 5 ms ($CONCEPT_LAB_SWITCH_INTERVAL_MS).
`--compare traced`: the UNet's blocks traced (the app's) and eager ($CONCEPT_LAB_TRACED_BLOCKS=0).
`--against DIR`: this checkout's app ("here") and the app of another checkout of the repository
("there", e.g. `git worktree add ../before HEAD~1`), each with its default settings: a change's
effect on one student, measured in one run.
One gradio_client student follows the classroom script (the lesson, two generations, an
exploration, a steering, an evolution, an erase) on each server in turn, round after
round, so only one server works at a time. The first round warms both up and is not counted; per
request kind the median over the other rounds, and the second setting's ÷ the first's.
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

COMPARISONS = {
    "rule": {"on": {"CONCEPT_LAB_ONE_TORCH_THREAD": "1"}, "off": {"CONCEPT_LAB_ONE_TORCH_THREAD": "0"}},
    "worker": {"by_load": {"CONCEPT_LAB_WORKER_THREADS": ""}, "one": {"CONCEPT_LAB_WORKER_THREADS": "1"}},
    "switch": {"short": {"CONCEPT_LAB_SWITCH_INTERVAL_MS": "0.1"}, "python_default": {"CONCEPT_LAB_SWITCH_INTERVAL_MS": "5"}},
    "traced": {"traced": {"CONCEPT_LAB_TRACED_BLOCKS": "1"}, "eager": {"CONCEPT_LAB_TRACED_BLOCKS": "0"}},
}
WHAT = {"rule": "CONCEPT_LAB_ONE_TORCH_THREAD: on = every core only in the batcher's thread",
        "worker": "CONCEPT_LAB_WORKER_THREADS: by_load = every core while one request is served; one = one thread always",
        "switch": "CONCEPT_LAB_SWITCH_INTERVAL_MS: short = 0.1 ms (the app's); python_default = 5 ms",
        "traced": "CONCEPT_LAB_TRACED_BLOCKS: traced = the UNet's blocks as traced graphs (the app's); eager = as diffusers runs them"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--compare", choices=list(COMPARISONS), default="rule")
    parser.add_argument("--against", type=Path, default=None, help="another checkout: compare its app with this one's")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.against is not None and not (args.against / "app.py").is_file():
        parser.error(f"--against: {args.against} holds no app.py (give a checkout of this repository)")
    modes = {"here": {}, "there": {}} if args.against is not None else COMPARISONS[args.compare]
    roots = {"here": ROOT, "there": args.against.resolve()} if args.against is not None else {}
    first, second = modes
    from gradio_client import Client

    servers, clients = {}, {}
    for mode, settings in modes.items():
        os.environ.update(settings)  # the server inherits them
        servers[mode], url, _ = serve(True, Path(tempfile.mkdtemp(prefix=f"solo-{mode}-")), roots.get(mode, ROOT))
        clients[mode] = Client(url, verbose=False)
    times: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    try:
        for round_ in range(args.rounds):
            for mode in modes:
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
    for kind in times[first]:
        a, b = statistics.median(times[first][kind]), statistics.median(times[second][kind])
        kinds[kind] = {f"{first}_s": round(a, 2), f"{second}_s": round(b, 2), f"{second}_over_{first}": round(b / a, 2),
                       f"runs_{first}": times[first][kind], f"runs_{second}": times[second][kind]}
    emit({"what": "one student alone, served", "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(),
          "rounds_counted": args.rounds - 1,
          **({"compared": f"here = {ROOT}, there = {roots['there']}"} if args.against is not None
             else {"rule" if args.compare == "rule" else "compared": WHAT[args.compare]}),
          "kinds": kinds}, args.out)


if __name__ == "__main__":
    main()
