"""`python -m concepts.toy.erase_repair`: can any feed-forward edit erase a colour and keep its neighbours?

CAD's default erase of the concept (its fast-mode scores, the world's ratio per matrix) is applied
plain and then repaired (`cad.repair`): each edited row's other weights are re-fitted by least
squares to hold the other values' feed-forward outputs on `--scenes` scenes (the concept's scenes
with each other value swapped in), with the concept's own outputs held at their ablated values with
weight β. β = 0 asks whether holding the neighbours gives the concept back; larger β trades between
the two. The judge's rates on the same 24 + 24 prompts as `evaluate edit` are printed as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..edit import plan_ablation
from ..edit.components import ff_layers
from ..edit.repair import RepairConfig, input_grams, repaired_plan
from ..edit.scenes import kept_scene_prompts, scene_prompts
from ..edit.service import scores_for
from ..generation import SHARED_PIPELINES
from ..quiet import quiet_libraries
from ..registry import load_registry
from ..sampling import GenerationRequest, generate
from .evaluate_edit import attribute_of, erase_rates, judged_images, split_prompts
from .prompts import labelled_prompts
from .world import ATTRIBUTES

GRAM_SEED = 1
"""The trajectories the Gram matrices are collected on (not the evaluation seed)."""


def erase_with_repair(concept: str = "red", betas: tuple[float, ...] = (0.0, 1.0, 4.0, 16.0), scenes: int = 8, prompts: int = 24,
                      seed: int = 555, model: str = "toy-shapes") -> dict:
    world = load_registry().get(model)
    d, pipe, judge = world.defaults, SHARED_PIPELINES.get(world, "cpu"), world.knowledge.reader()
    attribute = attribute_of(concept)
    peers = [v for v in ATTRIBUTES[attribute] if v != concept]
    target, others = split_prompts(labelled_prompts(prompts * 12, seed), attribute, concept, prompts)
    layers = ff_layers(pipe.unet)

    def run(texts: list[str]):
        return lambda: generate(pipe, GenerationRequest(texts, seed=GRAM_SEED, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width))

    started = time.perf_counter()
    kept_texts = [p for v in peers for p in kept_scene_prompts(world, concept, v, scenes)]
    concept_texts = scene_prompts(world, concept, scenes)
    kept = {n: g / len(kept_texts) for n, g in input_grams(layers, run(kept_texts)).items()}
    own = {n: g / len(concept_texts) for n, g in input_grams(layers, run(concept_texts)).items()}
    gram_seconds = time.perf_counter() - started

    def rates(plan=None) -> dict:
        judged = [judged_images(pipe, judge, world, [p for _, p in side], seed, plan) for side in (target, others)]
        return erase_rates(attribute, concept, target, others, *judged)

    scores = scores_for(world, pipe, d.concept_template.format(concept=concept), "erase", "fast").scores
    plan = plan_ablation(pipe.unet, scores, d.edit_ratio, scope=d.edit_scope)
    rows = [{"edit": "before", **rates()}, {"edit": f"CAD, {d.edit_ratio:g} {d.edit_scope}", "zeroed": plan.count, **rates(plan)}]
    for beta in betas:
        repaired = repaired_plan(layers, plan, kept, own, RepairConfig(concept_weight=beta))
        rows.append({"edit": f"CAD + repair, β = {beta:g}", "zeroed": plan.count, **rates(repaired)})
    return {"concept": concept, "kept_values": peers, "gram_prompts": {"kept": len(kept_texts), "concept": len(concept_texts)},
            "gram_seconds": round(gram_seconds, 1), "prompts": prompts, "seed": seed, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concepts.toy.erase_repair", description=__doc__)
    parser.add_argument("--concept", default="red")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 4.0, 16.0])
    parser.add_argument("--scenes", type=int, default=8)
    args = parser.parse_args(argv)
    quiet_libraries()
    print(json.dumps(erase_with_repair(args.concept, tuple(args.betas), args.scenes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
