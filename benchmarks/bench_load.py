"""Many users at once: the app served on localhost, N gradio_client users each sending a different
generate / steer / erase request at the same moment.

    python benchmarks/bench_load.py [--users 8] [--rounds 2] [--out FILE]

First every request runs alone (one user, one at a time): that is what each user should get. Then
all users fire together, `--rounds` times. Every image a user gets under load must equal the one it
got alone, to within 1/255 per pixel value (heatmaps drawn from them within 4/255; requests share UNet calls, `concepts.batching`), the shared model's weights must still equal the checkpoint's,
and no hook may be left on any module. Prints one JSON object: the isolation verdict, throughput
(requests per second under load) and median / p95 latency per request kind. `tests/test_load.py`
runs the same scenario once and asserts the isolation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import released_together  # noqa: E402

MODEL = "toy-shapes"
RED = "a large red solid square at the top left on a white background"
BLUE = "a small blue striped circle in the center on a black background"
GREEN = "a large green dotted star at the bottom right on a gray background"
MID = "mid_block.attentions.0"


@dataclass(frozen=True)
class UserRequest:
    """One user's request: an API endpoint of the app and its arguments, in the UI's order."""

    kind: str
    api_name: str
    args: tuple


def user_requests(steps: int = 10) -> list[UserRequest]:
    """Eight different requests over the three panels (generate, steer, erase/amplify)."""
    gen = lambda prompt, seed: UserRequest("generate", "/generate", (MODEL, prompt, seed, steps, 4.0))  # noqa: E731
    steer = lambda prompt, seed, window, concept, features, where, beta, branch: UserRequest(  # noqa: E731
        "steer", "/steer", (MODEL, prompt, seed, steps, 4.0, MID, window, concept, features, where, None, beta, branch))
    edit = lambda concept, action, ratio, images: UserRequest(  # noqa: E731
        "edit", "/edit", (MODEL, concept, action, ratio, "fast", "", BLUE, 0, images, ""))
    return [
        gen(RED, 1),
        gen(BLUE, 2),
        gen(GREEN, 3),
        steer(RED, 1, "middle", "dotted", "", "global", 100.0, "both"),
        steer(BLUE, 4, "early", None, "3, 7", "top left", 8.0, "cond"),
        steer(GREEN, 5, "0:4", None, "12", "bottom right", 16.0, "cond"),
        edit("red", "erase", 0.02, 2),
        edit("striped", "amplify", 0.04, 1),
    ]


def served_app(concurrency: int = 2) -> tuple[Any, str]:
    """The app as `python app.py` serves it (queue, concurrency limit), on a free localhost port."""
    import app

    app.demo.queue(default_concurrency_limit=concurrency)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    return app.demo, url


def images_of(output: Any) -> Any:
    """What a user sees, as pixel arrays: images, galleries and tables; text (which carries
    timings) and plots are left out."""
    from PIL import Image

    if isinstance(output, (list, tuple)):
        return [images_of(x) for x in output]
    if isinstance(output, dict):
        if "image" in output:
            return images_of(output["image"])
        if "path" in output:
            return images_of(output["path"])
        if "data" in output and "headers" in output:
            return output["data"]
        return None
    if isinstance(output, str) and os.path.isfile(output) and output.lower().endswith((".png", ".webp", ".jpg", ".jpeg")):
        return np.asarray(Image.open(output).convert("RGB"))
    return None


TOLERANCE = 1
"""Largest difference per pixel value (of 255) that still counts as the same image: batching across
users may round a batched product differently (tests/test_batching.py); another user's edit leaking
in changes far more."""


HEATMAP_TOLERANCE = 4
"""The same for a heatmap drawn from such images (the steer's difference map, `concepts.heatmaps`):
a change in the last bit can move a pixel to the next of the colour map's 256 colours, up to 4.2/255
apart in inferno, drawn at 75 % opacity."""
HEATMAPS = {"steer": {2}}
"""Which outputs of a request kind are heatmaps (by position)."""


def same(a: Any, b: Any, tolerance: int = TOLERANCE) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and int(np.abs(a.astype(int) - b.astype(int)).max(initial=0)) <= tolerance)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tolerance) for x, y in zip(a, b))
    return a == b


def same_output(kind: str, a: Any, b: Any) -> bool:
    """A request's outputs against the solo ones: images within TOLERANCE, heatmaps within HEATMAP_TOLERANCE."""
    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)):
        return same(a, b)
    return all(same(x, y, HEATMAP_TOLERANCE if i in HEATMAPS.get(kind, ()) else TOLERANCE) for i, (x, y) in enumerate(zip(a, b)))


def count_images(a: Any) -> int:
    if isinstance(a, np.ndarray):
        return 1
    return sum(count_images(x) for x in a) if isinstance(a, list) else 0


def call(url: str, request: UserRequest) -> tuple[Any, float]:
    """One user: its own client (own session), one request; the pixels it got and the seconds it took."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    started = time.perf_counter()
    output = client.predict(*request.args, api_name=request.api_name)
    return images_of(output), time.perf_counter() - started


def together(url: str, requests: list[UserRequest]) -> tuple[list[Any], list[float], float]:
    """All users at once (released by one barrier); their pixels, latencies and the wall time."""
    results: list[Any] = [None] * len(requests)
    latencies = [0.0] * len(requests)
    errors: list[BaseException] = []

    def user(i: int) -> None:
        try:
            results[i], latencies[i] = call(url, requests[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    wall = released_together(len(requests), user)
    if errors:
        raise errors[0]
    return results, latencies, wall


def model_unchanged() -> dict:
    """The shared toy pipeline against its checkpoint files: equal weights, no hook on any module."""
    import torch
    from safetensors.torch import load_file

    import ui.common
    from concepts.generation import SHARED_PIPELINES
    from concepts.hub import resolve

    world = ui.common.REGISTRY.get(MODEL)
    pipe = SHARED_PIPELINES.get(world, ui.common.DEVICE)
    folder = resolve(world.pipeline, required=["model_index.json"], base_dir=world.base_dir)
    changed = []
    for part in ("unet", "text_encoder", "vae"):
        files = sorted((folder / part).glob("*.safetensors"))
        saved = {k: v for f in files for k, v in load_file(str(f)).items()}
        live = getattr(pipe, part).state_dict()
        changed += [f"{part}.{k}" for k, v in saved.items() if k in live and not torch.equal(live[k].cpu().to(v.dtype), v)]
    hooked = [f"{part}.{name}" for part in ("unet", "text_encoder", "vae") for name, m in getattr(pipe, part).named_modules()
              if m._forward_hooks or m._forward_pre_hooks]
    return {"weights_changed": changed, "hooks_left": hooked}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(users: int = 8, rounds: int = 1, steps: int = 10) -> dict:
    requests = (user_requests(steps) * ((users + 7) // 8))[:users]
    demo, url = served_app()
    try:
        alone = [call(url, r) for r in requests]
        mismatches, latencies, walls, overlap = [], {r.kind: [] for r in requests}, [], []
        for round_index in range(rounds):
            results, seconds, wall = together(url, requests)
            walls.append(wall)
            overlap.append(sum(seconds) / wall)
            for i, (r, got, s) in enumerate(zip(requests, results, seconds)):
                latencies[r.kind].append(s)
                if not same_output(r.kind, got, alone[i][0]):
                    mismatches.append({"round": round_index, "user": i, "kind": r.kind})
        checked = sum(count_images(a) for a, _ in alone) * rounds
    finally:
        demo.close()
    every = [s for v in latencies.values() for s in v]
    return {
        "users": users,
        "rounds": rounds,
        "steps": steps,
        "images_compared": checked,
        "mismatches": mismatches,
        **model_unchanged(),
        "alone_seconds": {r.kind + str(i): round(s, 3) for i, (r, (_, s)) in enumerate(zip(requests, alone))},
        "throughput_requests_per_s": round(users * rounds / sum(walls), 3),
        "mean_requests_in_flight": round(statistics.mean(overlap), 2),
        "latency_s": {
            kind: {"median": round(statistics.median(v), 3), "p95": round(percentile(v, 95), 3)} for kind, v in latencies.items()
        },
        "latency_all_s": {"median": round(statistics.median(every), 3), "p95": round(percentile(every, 95), 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps of the generate and steer requests")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    os.environ.setdefault("CONCEPT_LAB_CACHE", tempfile.mkdtemp(prefix="concept-lab-load-"))
    import platform

    import torch

    result = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "concurrency_limit": 2, **run(args.users, args.rounds, args.steps)}
    from timing import emit

    emit(result, args.out)


if __name__ == "__main__":
    main()
