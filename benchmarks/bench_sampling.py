"""Speed of our sampler against plain diffusers, as ratios measured in one run.

    python benchmarks/bench_sampling.py [--model toy-shapes] [--steps 25] [--repeats 5] [--out FILE]

Times, on the same pipeline and seed: (1) plain `StableDiffusionPipeline.__call__`, (2) our
`generate` with no hooks, (3) with capture hooks on every transformer block at every step, and
(4) with a no-op edit on one block at every step. Prints one JSON object with the median seconds and
each variant's ratio to plain diffusers. The repeats are interleaved so drift hits every variant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from concepts.hooks import BlockEdit, BlockHooks, transformer_blocks  # noqa: E402
from concepts.pipeline import load_pipeline  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402
from concepts.sampling import GenerationRequest, generate  # noqa: E402
from concepts.steps import StepWindow  # noqa: E402
from timing import median_seconds, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    quiet_libraries()

    world = load_registry().get(args.model)
    pipe = load_pipeline(world, args.device)
    d = world.defaults
    request = GenerationRequest("a red circle on the left", seed=0, steps=args.steps, guidance=d.guidance, height=d.height, width=d.width)
    blocks = list(transformer_blocks(pipe.unet))

    def plain() -> None:
        pipe(request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance, height=request.height, width=request.width, generator=torch.Generator().manual_seed(0), output_type="pt")

    def ours() -> None:
        generate(pipe, request)

    def ours_capture_all() -> None:
        with BlockHooks(pipe.unet, capture=blocks, capture_dtype=torch.float16) as hooks:
            generate(pipe, request, hooks)

    def ours_noop_edit() -> None:
        edit = BlockEdit(blocks[len(blocks) // 2], lambda step, read: read, StepWindow(0, request.steps - 1))
        with BlockHooks(pipe.unet, edits=[edit]) as hooks:
            generate(pipe, request, hooks)

    variants = {"diffusers": plain, "ours": ours, "ours_capture_all_blocks": ours_capture_all, "ours_noop_edit": ours_noop_edit}
    median = median_seconds(variants, args.repeats, pipe.device)
    report(world.name, pipe.device, median, args.repeats, args.out, steps=args.steps, size=[request.height, request.width])


if __name__ == "__main__":
    main()
