"""What a request costs the batcher's worker besides its UNet rows, on toy-shapes.

    python benchmarks/bench_request_overhead.py [--repeats 30] [--out FILE]

The worker starts each request (its scheduler, text conditioning, seeded noise: `InFlight.start`)
and finishes it (VAE decode, PIL image: `InFlight.result`) on its own thread, one request at a time,
while every other request in flight waits for the next shared step. This times those, the pipeline
lookups they make (diffusers' and `concepts.devices`'), and one shared step of 8 images per image, on
one torch thread as a busy server's workers run; medians of `--repeats`, nothing else running. It
also times decoding 8 finished images at once against one at a time, which says whether finishing
requests together would save anything.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402


def median_ms(work, repeats: int) -> float:
    """Median wall milliseconds of `work()` over `repeats` calls."""
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        took.append(time.perf_counter() - started)
    return round(1000 * statistics.median(took), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch
    from toy_worker import toy_pipe_and_requests

    from concepts.devices import execution_device, unet_dtype
    from concepts.sampling import decode_latents
    from concepts.shared_steps import InFlight, step_together
    from concepts.torch_threads import use_threads

    use_threads(1)
    pipe, requests, d = toy_pipe_and_requests((1,))
    base = requests[1]
    eight = [replace(base, prompt=[f"{base.prompts[0]} {i}"], seed=i) for i in range(8)]
    shared = [InFlight.start(pipe, r, []) for r in eight]
    step_together(shared, lambda *_: None)  # warm-up: the traced blocks for 8 images
    step_ms = median_ms(lambda: step_together(shared, lambda *_: None), min(args.repeats, shared[0].num_steps - 2)) / len(shared)
    while not shared[0].done:
        step_together(shared, lambda *_: None)
    finished = torch.cat([f.latents for f in shared])
    start_ms = median_ms(lambda: InFlight.start(pipe, base, []), args.repeats)
    finish_ms = median_ms(shared[0].result, args.repeats)
    overhead = start_ms + finish_ms
    image_ms = d.steps * step_ms
    result = {
        "what": "a request's own work in the batcher's worker, besides its UNet rows (one torch thread)",
        "model": "toy-shapes", "device": "cpu", "repeats": args.repeats,
        "ms": {
            "start a request (scheduler, text, noise)": start_ms,
            "finish a request (decode, PIL image)": finish_ms,
            "one image-step in a shared step of 8": round(step_ms, 2),
            "decode 1 image": median_ms(lambda: decode_latents(pipe, finished[:1]), args.repeats),
            "decode 8 images at once": median_ms(lambda: decode_latents(pipe, finished), args.repeats),
            "diffusers pipe._execution_device": median_ms(lambda: pipe._execution_device, args.repeats),
            "diffusers pipe.unet.dtype": median_ms(lambda: pipe.unet.dtype, args.repeats),
            "concepts.devices execution_device + unet_dtype": median_ms(lambda: (execution_device(pipe), unet_dtype(pipe)), args.repeats),
        },
        "steps": d.steps,
        "overhead_share_of_a_requests_worker_time": round(overhead / (overhead + image_ms), 3),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
