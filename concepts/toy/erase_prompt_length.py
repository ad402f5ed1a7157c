"""`python -m concepts.toy.erase_prompt_length`: does an erase reach short prompts as well as long ones?

The same CAD erase (the concept's fast-mode scores, plain or contrasted with the other values'
mean, per matrix) is applied while generating a short and a fully specified prompt of the concept,
`--images` seeds each; the judge's rate of the concept is printed before and after, as one JSON object.
The scores are attributed on the short template prompt, so how far the erase reaches fuller prompts
is a question of the weights: on one toy model full prompts lost red first, on its retrained
successor "a red shape" did (docs/erase.md, "What falls short")."""

from __future__ import annotations

import argparse
import json
import sys

from ..edit import plan_ablation
from ..edit.service import EditSpec, contrasted, scores_for
from ..errors import ConceptLabError
from ..generation import SHARED_PIPELINES
from ..quiet import quiet_libraries
from ..registry import load_registry
from .evaluate_edit import attribute_of, judged_images
from .world import ATTRIBUTES

PROMPTS = ("a {c} shape", "a {c} square", "a small {c} circle", "a large {c} solid square at the top left on a white background")


def erase_by_prompt(concept: str, ratios: tuple[float, ...], images: int, seed: int = 0, model: str = "toy-shapes") -> dict:
    world = load_registry().get(model)
    d, pipe, judge = world.defaults, SHARED_PIPELINES.get(world, "cpu"), world.knowledge.reader()
    attribute = attribute_of(concept)
    keep = tuple(v for v in ATTRIBUTES[attribute] if v != concept)
    plain = scores_for(world, pipe, d.concept_template.format(concept=concept), "erase", "fast")
    variants = {"plain": plain, "contrasted (mean)": contrasted(world, pipe, EditSpec(concept, "erase", mode="fast", keep=keep, scenes=0), plain, "mean", 1.0)}

    def rate(prompt: str, plan=None) -> float:
        reads = judged_images(pipe, judge, world, [prompt] * images, seed, plan)
        return round(sum(r[attribute] == concept for r in reads) / images, 3)

    rows = []
    for template in PROMPTS:
        prompt = template.format(c=concept)
        row = {"prompt": prompt, "before": rate(prompt)}
        for name, scores in variants.items():
            for ratio in ratios:
                row[f"{name}, per matrix {ratio:g}"] = rate(prompt, plan_ablation(pipe.unet, scores.scores, ratio, scope="matrix"))
        rows.append(row)
    return {"concept": concept, "images_per_prompt": images, "seed": seed, "rate_of_the_concept": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concepts.toy.erase_prompt_length", description=__doc__)
    parser.add_argument("--concept", default="red")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.012, 0.024])
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        if args.images < 1:
            raise ConceptLabError("--images must be at least 1")
        print(json.dumps(erase_by_prompt(args.concept, tuple(args.ratios), args.images)))
    except (ConceptLabError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
