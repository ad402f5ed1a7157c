"""Our overhead on Stable Diffusion v1.4's architecture (random weights built from config, so no
download), against plain diffusers, all in one run:

    python benchmarks/bench_sd14_arch.py                     # GPU: SD1.4 width, fp16, 512 px, 50 steps
    python benchmarks/bench_sd14_arch.py --divisor 8 --size 128 --steps 10   # a CPU-sized run
    python benchmarks/bench_sd14_arch.py --compile           # also a torch.compile'd steered generation

Variants, each timed interleaved with the others (`timing.median_seconds`):
- `diffusers`: `StableDiffusionPipeline.__call__`, CFG 7.5;
- `ours_no_edit`: our sampler (`concepts.sampling.generate`), no hook;
- `ours_steering`: a global SAE edit at the mid block in the middle window (random TopK SAE,
  4× expansion, k = 32: the paper's SAE shape at that width);
- `ours_capture_3_blocks`: every step's Δ captured at the paper's three blocks, each encoded by an
  SAE into feature maps (what the Evolution tab does);
- `cad_fast_attribution`: fast-mode CAD attribution of one concept prompt (2 trajectories);
- `uce_fit`: fitting the UCE erase of one concept (guide "", "" held) and building its edit of every
  cross-attention K/V;
- with `--faithful`: faithful-mode CAD attribution (a fresh trajectory per timestep), timed
  `--faithful-repeats` times after the rest (it is the slow one), with fast mode's speedup over it;
- `ours_steering_compiled` (with `--compile`): the steered generation with the UNet compiled.

Targets (issue 7): no edit ≤ 1.02×, steering ≤ 1.05×, capture ≤ 1.25× plain diffusers; compiled
steered generation ≥ 1.5× faster than plain diffusers eager; CAD fast attribution ≤ 5 s on an
H100-class GPU. A CPU run at reduced width says so in its output (`divisor`, `device`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_seconds, report  # noqa: E402

from concepts.arch import SD14_HOOK_WIDTHS, ArchConfig, sd14_pipeline  # noqa: E402
from concepts.edit import AttributionConfig, attribute  # noqa: E402
from concepts.edit.uce import UcePrompts, text_map, uce_plan  # noqa: E402
from concepts.features import feature_maps  # noqa: E402
from concepts.hooks import BlockHooks, block_width, resolve_blocks  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.sae import SAEConfig, TopKSAE  # noqa: E402
from concepts.sampling import GenerationRequest, generate  # noqa: E402
from concepts.steer.steering import SteeringPlan  # noqa: E402
from concepts.steps import StepWindow  # noqa: E402

PROMPT = "a red circle on the left"
CONCEPT_PROMPT = "a photo of a dog"


def random_sae(d: int, device: torch.device, dtype: torch.dtype) -> TopKSAE:
    sae = TopKSAE(SAEConfig(d_in=d, expansion_factor=4, k=32))
    return sae.to(device=device, dtype=dtype).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--divisor", type=int, default=1 if cuda else 8, help="divide every width (1: SD1.4's shapes)")
    parser.add_argument("--size", type=int, default=512 if cuda else 128)
    parser.add_argument("--steps", type=int, default=50 if cuda else 10)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--repeats", type=int, default=5 if cuda else 3)
    parser.add_argument("--compile", action="store_true", help="also time a steered generation with the UNet compiled")
    parser.add_argument("--faithful", action="store_true", help="also time faithful-mode CAD attribution (fresh trajectory per timestep)")
    parser.add_argument("--faithful-repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_libraries()

    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    pipe = sd14_pipeline(ArchConfig(divisor=args.divisor)).to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    request = GenerationRequest(PROMPT, seed=0, steps=args.steps, guidance=args.guidance, height=args.size, width=args.size)
    blocks = resolve_blocks(pipe.unet, list(SD14_HOOK_WIDTHS))
    saes = {name: random_sae(block_width(block), device, dtype) for name, block in blocks.items()}
    mid = "mid_block.attentions.0"
    plan = SteeringPlan(mid, (0, 1, 2, 3), StepWindow.parse("middle", args.steps), 10.0)

    def plain() -> None:
        pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.size, width=args.size,
             generator=torch.Generator(device).manual_seed(0), output_type="pt")

    def ours() -> None:
        generate(pipe, request)

    def steering() -> None:
        with BlockHooks(pipe.unet, edits=[plan.edit(saes[mid])]) as hooks:
            generate(pipe, request, hooks)

    def capture() -> None:
        def sink(block: str, captured) -> None:
            feature_maps(saes[block], captured.cond)

        with BlockHooks(pipe.unet, capture=list(saes), sink=sink) as hooks:
            generate(pipe, request, hooks)

    settings = {"steps": args.steps, "guidance": args.guidance, "height": args.size, "width": args.size}

    def attribution(mode: str = "fast") -> None:
        attribute(pipe, CONCEPT_PROMPT, AttributionConfig(mode=mode, **settings))  # type: ignore[arg-type]

    def uce() -> None:
        uce_plan(pipe.unet, text_map(pipe, UcePrompts("dog", (CONCEPT_PROMPT,), (("",),), ("",))))

    variants = {
        "diffusers": plain,
        "ours_no_edit": ours,
        "ours_steering": steering,
        "ours_capture_3_blocks": capture,
        "cad_fast_attribution": attribution,
        "uce_fit": uce,
    }
    if args.compile:
        compiled = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs" if cuda else "default")

        def steering_compiled() -> None:
            eager = pipe.unet
            pipe.unet = compiled
            try:
                with BlockHooks(eager, edits=[plan.edit(saes[mid])]) as hooks:
                    generate(pipe, request, hooks)
            finally:
                pipe.unet = eager

        variants["ours_steering_compiled"] = steering_compiled
    median = median_seconds(variants, args.repeats, device)
    faithful = {}
    if args.faithful:
        seconds = median_seconds({"faithful": lambda: attribution("faithful")}, args.faithful_repeats, device)["faithful"]
        faithful = {"cad_faithful_attribution_seconds": round(seconds, 2), "faithful_repeats": args.faithful_repeats,
                    "cad_fast_speedup_vs_faithful": round(seconds / median["cad_fast_attribution"], 1)}
    report(f"sd14-architecture/{args.divisor}", device, median, args.repeats, args.out, **settings, dtype=str(dtype), divisor=args.divisor,
           unet_parameters=sum(p.numel() for p in pipe.unet.parameters()),
           gpu=torch.cuda.get_device_name() if cuda else None, concept_prompt=CONCEPT_PROMPT, **faithful,
           targets={"ours_no_edit_ratio": 1.02, "ours_steering_ratio": 1.05, "ours_capture_3_blocks_ratio": 1.25,
                    "compiled_steering_speedup_vs_diffusers": 1.5, "cad_fast_attribution_seconds_h100": 5.0})


if __name__ == "__main__":
    main()
