"""Traced blocks against eager ones, alone and beside threads running Python (`concepts.traced_blocks`).

    python benchmarks/bench_traced_blocks.py [--repeats 5] [--out FILE]

The served app's UNet worker shares the interpreter with Gradio's threads and the handlers'
figures, and an eager toy UNet call is some 500 torch ops, each of which lets go of the interpreter
lock and must take it back. Here one thread denoises a batch (4 images, 25 steps, CFG, one torch
thread, the app's 0.1 ms switch interval) with the blocks eager and traced, interleaved `--repeats`
times, with 0, 1 and 2 other threads spinning in pure Python meanwhile (their loops per second are
counted, so the cost to them shows too). Also reported: the time the first generation spends
tracing and checking the graphs, the torch ops one UNet call runs from Python either way, and
whether the images are identical.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_switch_interval import busy_python  # noqa: E402
from timing import emit  # noqa: E402

BUSY_THREADS = (0, 1, 2)
MODES = {"eager": "0", "traced": "1"}


def one_run(pipe, request, mode: str, busy: int) -> tuple[float, float, object]:
    """(seconds for the generation, the busy threads' loops per second, the images)."""
    from concepts.sampling import generate

    os.environ["CONCEPT_LAB_TRACED_BLOCKS"] = MODES[mode]
    stop, loops = threading.Event(), []
    others = [threading.Thread(target=busy_python, args=(stop, loops)) for _ in range(busy)]
    for thread in others:
        thread.start()
    start = time.perf_counter()
    result = generate(pipe, request)
    took = time.perf_counter() - start
    stop.set()
    for thread in others:
        thread.join()
    return took, sum(loops) / took, result.images


def ops_per_unet_call(pipe, traced: bool) -> int:
    """Torch functions one UNet call runs from Python (each a hand-off of the interpreter lock)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from concepts.traced_blocks import traced_blocks

    class Count(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = collections.Counter()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.calls[getattr(func, "__qualname__", str(func))] += 1
            return func(*args, **(kwargs or {}))

    unet = pipe.unet
    size = unet.config.sample_size
    inputs = (torch.randn(8, unet.config.in_channels, size, size), torch.full((8,), 500))
    context = torch.randn(8, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim)
    os.environ["CONCEPT_LAB_TRACED_BLOCKS"] = "1" if traced else "0"
    with torch.no_grad(), traced_blocks(unet):
        unet(*inputs, encoder_hidden_states=context)
        with Count() as count:
            unet(*inputs, encoder_hidden_states=context)
    # attribute reads (.shape, .dtype) do not let go of the lock
    return sum(n for name, n in count.calls.items() if not name.startswith("getset_descriptor"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import numpy as np

    from concepts.torch_threads import SWITCH_INTERVAL_MS, use_threads
    from concepts.traced_blocks import installed
    from toy_worker import toy_pipe_and_requests

    pipe, requests, d = toy_pipe_and_requests((4,))
    request = requests[4]
    use_threads(1)
    sys.setswitchinterval(SWITCH_INTERVAL_MS / 1000)
    first = {mode: one_run(pipe, request, mode, 0)[0] for mode in ("eager", "traced")}  # the traced one traces its graphs
    graphs = sum(len(f.graphs) for f in installed(pipe.unet))
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {(m, b): [] for b in BUSY_THREADS for m in MODES}
    images: dict[str, object] = {}
    for _ in range(args.repeats):
        for key in runs:
            took, loops, images[key[0]] = one_run(pipe, request, *key)
            runs[key].append((took, loops))
            print(f"{key}: {took:.2f} s", file=sys.stderr, flush=True)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images["eager"], images["traced"]))
    median = {key: statistics.median(t for t, _ in v) for key, v in runs.items()}
    result = {
        "what": "the toy UNet's blocks traced against eager, alone and beside threads running Python",
        "model": "toy-shapes", "device": "cpu", "cores": os.cpu_count(), "images": 4, "steps": d.steps, "torch_threads": 1,
        "switch_interval_ms": SWITCH_INTERVAL_MS, "repeats": args.repeats,
        "torch_ops_from_python_per_unet_call": {"eager": ops_per_unet_call(pipe, False), "traced": ops_per_unet_call(pipe, True)},
        "first_generation_s": {mode: round(s, 2) for mode, s in first.items()}, "graphs_traced": graphs,
        "images_identical": same,
        "conditions": [{"blocks": mode, "busy_python_threads": busy, "generation_s_median": round(median[(mode, busy)], 3),
                        "runs_s": [round(t, 3) for t, _ in runs[(mode, busy)]],
                        "busy_threads_loops_per_s": round(statistics.median(n for _, n in runs[(mode, busy)])),
                        "eager_over_traced": round(median[("eager", busy)] / median[("traced", busy)], 2) if mode == "traced" else None}
                       for (mode, busy) in runs],
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
