"""Speed of steering against plain diffusers, as ratios measured in one run.

    python benchmarks/bench_steering.py [--model toy-shapes] [--repeats 5] [--out FILE]

Times, on the same pipeline, prompt and seed at the model's default steps and guidance:
(1) plain `StableDiffusionPipeline.__call__`; (2) our `generate` with a global steering edit (the mid
block's SAE, middle window); (3) with a spatial edit (a preset cell, early window); (4) one whole
steering request as the app and CLI run it (`run_steering`: baseline + steered image, validation,
difference map); (4b) the same when the baseline is cached (after an exploration of the same prompt
and seed, or a second steer of it); (5) one exploration (`run_explore`: a generation with SAE feature maps read every
step of the window). Prints one JSON object with median seconds and ratios to plain diffusers; the
repeats are interleaved so drift hits every variant alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_seconds, report  # noqa: E402

from concepts.generation import SHARED_PIPELINES  # noqa: E402
from concepts.hooks import BlockHooks  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402
from concepts.saes import SAES  # noqa: E402
from concepts.sampling import GenerationRequest, generate  # noqa: E402
from concepts.steer.explore import run_explore  # noqa: E402
from concepts.steer.service import SteerSpec, run_steering  # noqa: E402
from concepts.steer.steering import SteeringPlan, default_strength, region_mask  # noqa: E402
from concepts.steps import StepWindow  # noqa: E402

PROMPT = "a large red solid square at the top left on a white background"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--block", default="mid_block.attentions.0")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    quiet_libraries()

    registry = load_registry()
    world = registry.get(args.model)
    pipe = SHARED_PIPELINES.get(world, args.device)
    d = world.defaults
    request = GenerationRequest(PROMPT, seed=0, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width)
    middle, early = StepWindow.parse("middle", d.steps), StepWindow.parse("early", d.steps)
    mid_sae = SAES.get(world, args.block, "middle", "cond", pipe.unet)
    early_sae = SAES.get(world, args.block, "early", "cond", pipe.unet)
    features = tuple(range(4))
    global_plan = SteeringPlan(mid_sae.entry.block, features, middle, default_strength("middle", False, d.strengths))
    spatial_plan = SteeringPlan(early_sae.entry.block, features, early, default_strength("early", True, d.strengths), region_mask("bottom right", d.height, d.width))
    spec = SteerSpec(block=args.block, window="middle", strength=default_strength("middle", False, d.strengths), features=features)

    def plain() -> None:
        pipe(request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance, height=request.height, width=request.width, generator=torch.Generator().manual_seed(0), output_type="pt")

    def steered_global() -> None:
        with BlockHooks(pipe.unet, edits=[global_plan.edit(mid_sae.sae)]) as hooks:
            generate(pipe, request, hooks)

    def steered_spatial() -> None:
        with BlockHooks(pipe.unet, edits=[spatial_plan.edit(early_sae.sae)]) as hooks:
            generate(pipe, request, hooks)

    fresh_seeds = iter(range(1000, 10**6))

    def steering_request() -> None:  # cold: a seed never seen, so the baseline is generated too
        run_steering(world.name, PROMPT, spec, seed=next(fresh_seeds), device=args.device, registry=registry)

    def steering_request_cached_baseline() -> None:
        run_steering(world.name, PROMPT, spec, seed=1, device=args.device, registry=registry)

    def explore_request() -> None:
        run_explore(world.name, PROMPT, args.block, "middle", seed=0, device=args.device, registry=registry)

    variants = {
        "diffusers": plain,
        "steered_global": steered_global,
        "steered_spatial": steered_spatial,
        "steering_request_baseline_and_steered": steering_request,
        "steering_request_cached_baseline": steering_request_cached_baseline,
        "explore_request": explore_request,
    }
    median = median_seconds(variants, args.repeats, pipe.device)
    report(world.name, pipe.device, median, args.repeats, args.out, steps=d.steps, guidance=d.guidance, size=[d.height, d.width],
           targets={"steering_request_baseline_and_steered_seconds": 3.0, "steered_ratio": 1.10})


if __name__ == "__main__":
    main()
