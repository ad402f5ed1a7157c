"""Where a request's CPU goes: inside the UNet's calls, which batching can make cheaper, and everywhere
else (text encoding, decoding, SAE codes, the judge, figures, images for the page, the web server),
which it cannot.

    python benchmarks/bench_cpu_budget.py [--rounds 4] [--out FILE]

One student alone on the served app without batching (`python app.py` as it serves it, with
`CONCEPT_LAB_BATCHING=0`: each request in its own thread on one torch thread, as an unbatched class
runs it) follows the classroom script (`bench_classroom.script`) round after round; the first round
warms up and is not counted. Per request kind, median and range over the rounds: the server's CPU
time (every thread's, from before the request until the server is idle again, less what the idle
server uses in that time, measured before the rounds as `idle_server_cores`), the part spent inside
the UNet's calls ($CONCEPT_LAB_UNET_LOG, `concepts.unet_clock`) and the image-steps it ran.

Summed over the script (one of each request, two generations), that gives the UNet's share of a
student's CPU and two bounds on what batching can gain for a server that is busy on every core:
`if_the_unet_cost_nothing` = 1 / (1 − share), and `at_the_batched_floor`, with every image-step at
the CPU that `bench_batching_ceiling.py`'s best condition costs (two workers of 8 images each on one
thread each, measured here after the rounds, median of 3).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classroom import cpu_seconds, idle_cores, script, serve  # noqa: E402
from timing import emit  # noqa: E402

IDLE_S = 0.5
"""After an answer, the server is left this long to finish its side (images written for the page)."""
FLOOR = ("two workers, 8 images each, 1 thread each", 2, 8, 1)


def unet_lines(path: Path, skip: int) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines[skip:]]


def floor_cpu_ms(repeats: int = 3) -> float:
    """The CPU one image-step costs at the ceiling benchmark's best condition, in this process."""
    from dataclasses import replace

    from bench_batching_ceiling import one_condition
    from toy_worker import toy_pipe_and_requests

    from concepts.sampling import generate
    from concepts.torch_threads import use_threads

    pipe, requests, _ = toy_pipe_and_requests((1,))
    base = requests[1]
    use_threads(1)
    generate(pipe, replace(base, prompt=[base.prompts[0]] * FLOOR[2], steps=2))  # traced and checked once
    return statistics.median(one_condition(pipe, base, *FLOOR[1:])[1] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import psutil
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="cpu-budget-"))
    server, url, env = serve(False, work)  # batching off; its UNet log on
    proc = psutil.Process(server.pid)
    log = Path(env["CONCEPT_LAB_UNET_LOG"])
    client = Client(url, verbose=False)
    per_kind: dict[str, dict[str, list[float]]] = {}
    try:
        idle = idle_cores(proc, 3.0, 3.0)  # the idle server's own ticking, for the record
        seen = 0  # lines of the UNet log read so far
        for round_ in range(args.rounds):
            for kind, api, call_args, _ in script(1 + round_):
                before, started = cpu_seconds(proc), time.perf_counter()
                client.predict(*call_args, api_name=api)
                time.sleep(IDLE_S)
                total = cpu_seconds(proc) - before - idle * (time.perf_counter() - started)  # less what the idle server ticks meanwhile
                calls = unet_lines(log, seen)
                seen += len(calls)
                if round_:
                    entry = per_kind.setdefault(kind, {"server_cpu_s": [], "unet_cpu_s": [], "image_steps": [], "calls_on_more_threads": []})
                    entry["server_cpu_s"].append(total)
                    entry["unet_cpu_s"].append(sum(c["cpu_ms"] for c in calls) / 1000)
                    entry["image_steps"].append(sum(c["images"] for c in calls))
                    entry["calls_on_more_threads"].append(sum(c["threads"] != 1 for c in calls))
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    floor = floor_cpu_ms()
    kinds, mix = {}, {}
    for kind, entry in per_kind.items():
        med = {name: statistics.median(values) for name, values in entry.items()}
        kinds[kind] = {"server_cpu_s": round(med["server_cpu_s"], 3),
                       "server_cpu_s_range": [round(min(entry["server_cpu_s"]), 3), round(max(entry["server_cpu_s"]), 3)],
                       "unet_cpu_s": round(med["unet_cpu_s"], 3), "elsewhere_cpu_s": round(med["server_cpu_s"] - med["unet_cpu_s"], 3),
                       "unet_share": round(med["unet_cpu_s"] / med["server_cpu_s"], 3) if med["server_cpu_s"] else None,
                       "image_steps": med["image_steps"], "calls_on_more_threads": max(entry["calls_on_more_threads"])}
    for kind, *_ in script(1):
        mix[kind] = mix.get(kind, 0) + 1
    server_s = sum(n * kinds[k]["server_cpu_s"] for k, n in mix.items())
    unet_s = sum(n * kinds[k]["unet_cpu_s"] for k, n in mix.items())
    image_steps = sum(n * kinds[k]["image_steps"] for k, n in mix.items())
    share = unet_s / server_s
    emit({"what": "where one student's CPU goes on the unbatched server: inside the UNet's calls and elsewhere",
          "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(), "rounds_counted": args.rounds - 1,
          "idle_server_cores": round(idle, 4), "kinds": kinds,
          "script": {"requests": mix, "server_cpu_s": round(server_s, 3), "unet_cpu_s": round(unet_s, 3), "unet_share": round(share, 3),
                     "image_steps": image_steps, "unet_cpu_ms_per_image_step": round(1000 * unet_s / image_steps, 2)},
          "batched_floor": {"condition": FLOOR[0], "cpu_ms_per_image_step": round(floor, 2)},
          "most_batching_can_gain": {"if_the_unet_cost_nothing": round(1 / (1 - share), 2),
                                     "at_the_batched_floor": round(server_s / (server_s - unet_s + image_steps * floor / 1000), 2)}},
         args.out)


if __name__ == "__main__":
    main()
