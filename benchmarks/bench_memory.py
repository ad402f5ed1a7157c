"""Does any panel's handler leak? Each one 40 times in a row, alone, in-process, after 3 warm-up calls.

    python benchmarks/bench_memory.py [--peak] [generate explore steer evolve erase]

Prints, per handler, the RSS after warm-up and its growth after 10, 20, 30 and 40 more calls (MB,
after a garbage collection), and, for the handlers that keep a per-session result (explore, evolve),
the bytes of the arrays, tensors and images it holds: what one session keeps in memory. Flat rows mean the handler keeps nothing per request; growth seen only
under a class (`bench_classroom.py`) then comes from concurrency and sessions, not the handlers.
With `--peak`, instead: how much more RSS each handler uses while it runs than just before (freed
memory returned first, RSS sampled every 2 ms; median and range of 5 calls): what one request in
flight adds to a class's readings.
"""

import gc
import os
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
from concepts.quiet import quiet_libraries  # noqa: E402

quiet_libraries()
import ui.erase  # noqa: E402
import ui.evolution  # noqa: E402
import ui.generate  # noqa: E402
import ui.steer  # noqa: E402

proc = psutil.Process()
MID = "mid_block.attentions.0"


def p(i):
    return f"a large red solid square at the top left on a {('white','black','gray')[i%3]} background"

kinds = {
 "generate": lambda i: ui.generate.generate_image("toy-shapes", p(i), i, 25, 4.0),
 "explore": lambda i: ui.steer.explore_image("toy-shapes", p(i), i, 25, 4.0, MID, "middle"),
 "steer": lambda i: ui.steer.steer_image("toy-shapes", p(i), i, 25, 4.0, MID, "middle", "dotted", "", "global", None, 1000.0, "cond"),
 "evolve": lambda i: ui.evolution.follow_evolution("toy-shapes", p(i), i, 10, 4.0, MID, None),
 "erase": lambda i: ui.erase.edit_concept("toy-shapes", "red", "erase", 0.056, "faithful", "", p(i).replace("red","blue"), i, 2, "", "matrix", 0, "mean", "presence", "cad"),
}
def held_bytes(obj, seen=None) -> int:
    """Bytes of the arrays, tensors and images inside a result (containers walked, each object once)."""
    import numpy as np
    import torch
    from PIL import Image

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, Image.Image):
        return obj.width * obj.height * len(obj.getbands())
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(held_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return held_bytes(vars(obj), seen)
    return 0


def transient_peak_mb(handler, i: int) -> float:
    """RSS above its value just before, at its highest while `handler(i)` runs (MB)."""
    import threading
    import time

    from ui.memory import return_freed

    return_freed()
    before = proc.memory_info().rss
    highest, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            highest[0] = max(highest[0], proc.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        handler(i)
    finally:
        done.set()
        sampler.join()
    return (highest[0] - before) / 2**20


SESSION_STATE = {"explore": 4, "evolve": 0}
"""The output position of the `gr.State` a handler returns."""
peak_only = "--peak" in sys.argv
which = [a for a in sys.argv[1:] if a != "--peak"] or list(kinds)
if peak_only:
    import statistics

    for k in which:
        for i in range(2):
            kinds[k](i)
        peaks = [transient_peak_mb(kinds[k], i) for i in range(2, 7)]
        print(k, "uses %.1f MB more while it runs (median; %.1f-%.1f)" % (statistics.median(peaks), min(peaks), max(peaks)), flush=True)
    sys.exit(0)
for k in which:
    f = kinds[k]
    for i in range(3):
        out = f(i)
    if k in SESSION_STATE:
        print(k, "session state", round(held_bytes(out[SESSION_STATE[k]]) / 2**20, 2), "MB of arrays, tensors and images", flush=True)
    gc.collect()
    base = proc.memory_info().rss / 2**20
    marks = []
    for i in range(3, 43):
        f(i)
        if i % 10 == 2:
            gc.collect()
            marks.append(round(proc.memory_info().rss / 2**20 - base, 1))
    print(k, "base", round(base), "MB; growth after 10/20/30/40 calls:", marks, flush=True)
