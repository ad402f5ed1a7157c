"""Speed of CAD attribution: fast mode (one trajectory per image, timesteps batched), faithful mode
(a fresh trajectory per timestep) and the world's default (its `edit_mode` with its
`attribution_images`: faithful with 6 images on toy-shapes, chosen for seed stability), with a plain
generation for scale, in one run.

    python benchmarks/bench_attribution.py [--model toy-shapes] [--concept red] [--repeats 3] [--out FILE]

Attribution runs at the model's default steps, guidance and size; fast and faithful over 2 images,
the default over the world's own count; scores are not cached here. Prints one JSON object with median seconds and
ratios to the plain generation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_seconds, report  # noqa: E402

from concepts.edit import AttributionConfig, attribute  # noqa: E402
from concepts.generation import SHARED_PIPELINES  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--concept", default="red")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_libraries()
    world = load_registry().get(args.model)
    pipe = SHARED_PIPELINES.get(world, args.device)
    d = world.defaults
    prompt = d.concept_template.format(concept=args.concept)
    settings = {"steps": d.steps, "guidance": d.guidance, "height": d.height, "width": d.width}

    def plain() -> None:
        pipe(prompt, num_inference_steps=d.steps, guidance_scale=d.guidance, height=d.height, width=d.width,
             generator=torch.Generator().manual_seed(0), output_type="pt")

    variants = {
        "diffusers": plain,
        "attribution_fast": lambda: attribute(pipe, prompt, AttributionConfig(mode="fast", **settings)),
        "attribution_faithful": lambda: attribute(pipe, prompt, AttributionConfig(mode="faithful", **settings)),
        "attribution_default": lambda: attribute(pipe, prompt, AttributionConfig(mode=d.edit_mode, images=d.attribution_images[d.edit_mode], **settings)),
    }
    median = median_seconds(variants, args.repeats, pipe.device)
    report(world.name, pipe.device, median, args.repeats, args.out, concept_prompt=prompt, images=2,
           default={"mode": d.edit_mode, "images": d.attribution_images[d.edit_mode]}, **settings,
           targets={"attribution_fast_seconds_cpu_toy": 10.0, "attribution_default_seconds_cpu_toy": 15.0, "attribution_fast_seconds_gpu_sd14": 5.0})


if __name__ == "__main__":
    main()
