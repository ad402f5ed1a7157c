"""Speed of the timestep evolution viewer against plain diffusers, as ratios measured in one run.

    python benchmarks/bench_evolution.py [--model toy-shapes] [--repeats 5] [--out FILE]

Times, at the model's default steps and guidance: (1) plain `StableDiffusionPipeline.__call__`;
(2) capture at every step at all three SAE blocks with SAE encoding into concept maps, no previews
(`run_evolution(with_previews=False)`); (3) the same with every step's x0 preview decoded and read by
the world's judge (toy); (4) the app's whole first render of the Evolution tab (`follow_evolution`:
(3) plus the figures, the GIF, the strip and the JSON). Prints one JSON object with median seconds
and ratios to plain diffusers; the repeats are interleaved so drift hits every variant alike.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from timing import median_seconds, report  # noqa: E402

from concepts.evolve.evolution import run_evolution  # noqa: E402
from concepts.generation import SHARED_PIPELINES  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402

PROMPT = "a small blue striped circle in the center on a black background"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-app", action="store_true", help="skip the app's first-render variant (no gradio import)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    quiet_libraries()

    registry = load_registry()
    world = registry.get(args.model)
    pipe = SHARED_PIPELINES.get(world, args.device)
    d = world.defaults
    reader = world.knowledge.reader()

    def plain() -> None:
        pipe(PROMPT, num_inference_steps=d.steps, guidance_scale=d.guidance, height=d.height, width=d.width, generator=torch.Generator().manual_seed(0), output_type="pt")

    def capture_three_blocks() -> None:
        run_evolution(world.name, PROMPT, seed=0, with_previews=False, device=args.device, registry=registry)

    def capture_with_previews() -> None:
        run_evolution(world.name, PROMPT, seed=0, reader=reader, device=args.device, registry=registry)

    variants = {"diffusers": plain, "capture_sae_three_blocks": capture_three_blocks, "capture_previews_and_judge": capture_with_previews}
    if not args.no_app:
        import ui.evolution

        block = next(b for b in world.blocks if b.startswith("mid_block"))

        def first_render() -> None:
            import matplotlib.pyplot as plt

            ui.evolution.follow_evolution(world.name, PROMPT, 0, d.steps, d.guidance, block, [])
            plt.close("all")

        variants["app_first_render"] = first_render
    median = median_seconds(variants, args.repeats, pipe.device)
    report(world.name, pipe.device, median, args.repeats, args.out, steps=d.steps, guidance=d.guidance, size=[d.height, d.width],
           blocks=world.blocks, targets={"capture_sae_three_blocks_ratio": 1.25, "app_first_render_seconds": 4.0})


if __name__ == "__main__":
    main()
