"""`python -m concepts.toy.evaluate edit`: does CAD erase (or amplify) a toy concept, and keep the rest?

For each concept (default: the colour red and the texture striped):
- **erase**: the judge's rate of the concept on fully specified prompts that ask for it, before and
  after the ablation; the judge's accuracy on prompts of *other* values of the same attribute (what
  must be kept) and on all six attributes, before and after; and the same for a random ablation of
  as many weights (the baseline attribution must beat).
- **amplify**: the rate of the concept on prompts that leave its attribute unspecified, before and
  after (the concept should appear more often).
- **SAE suppression**: for comparison, the concept's dictionary features switched off (z := 0) at
  every block and stage whose SAE dictionary labels it, on both CFG branches, all steps.
- **prediction**: Pearson r between predicted and measured change of J over random ablations (the
  authors report ≈ 0.5), for small and larger ablations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..cad import AblationHooks, AttributionConfig, plan_ablation
from ..cad.checks import prediction_check, random_plan
from ..cad.service import EditSpec, contrasted, scores_for
from ..dictionary import concept_features
from ..errors import UnknownNameError
from ..hooks import BlockEdit, BlockHooks
from ..steer_service import SAES
from ..steering import suppress_edit
from ..steps import StepWindow
from ..readers import world_reader
from ..registry import load_registry
from ..sampling import GenerationRequest, generate
from ..service import SHARED_PIPELINES
from .captions import caption
from .prompts import labelled_prompts
from .world import ATTRIBUTES

TOY_MODEL = "toy-shapes"
TARGET = {"erase_rate_before_at_least": 0.9, "erase_rate_after_at_most": 0.2, "others_drop_at_most": 0.05}


@dataclass
class EditEvalConfig:
    concepts: tuple[str, ...] = ("red", "striped")
    ratios: tuple[float, ...] = (0.01, 0.02, 0.04)
    prompts: int = 24
    seed: int = 555


def attribute_of(value: str) -> str:
    for name, values in ATTRIBUTES.items():
        if value in values:
            return name
    raise ValueError(f"{value!r} is not a toy attribute value")


def evaluate_edit(cfg: EditEvalConfig = EditEvalConfig(), model: str = TOY_MODEL) -> dict:
    started = time.time()
    world = load_registry().get(model)
    pipe = SHARED_PIPELINES.get(world, "cpu")
    judge = world_reader(world)
    d = world.defaults

    def judged(prompts: list[str], plan=None) -> list[dict[str, str]]:
        request = GenerationRequest(prompts, seed=cfg.seed, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width)
        if plan is None:
            return judge(generate(pipe, request).pixels)
        hooks = BlockHooks(pipe.unet, edits=plan) if isinstance(plan, list) else AblationHooks(pipe.unet, plan)
        with hooks as active:
            return judge(generate(pipe, request, active if isinstance(plan, list) else ()).pixels)

    def suppression(concept: str) -> list[BlockEdit]:
        """Edits that switch the concept's labelled features off wherever a cond SAE labels it."""
        edits = []
        for entry in world.saes:
            if entry.branch != "cond":
                continue
            loaded = SAES.get(world, entry.block, entry.window, "cond", pipe.unet)
            try:
                features = concept_features(loaded.concepts or {}, concept)
            except UnknownNameError:
                continue
            edits.append(BlockEdit(entry.block, suppress_edit(loaded.sae, features), StepWindow.parse(entry.window, d.steps), "both"))
        return edits

    pool = labelled_prompts(cfg.prompts * 12, cfg.seed)
    report = {"what": "edit", "model": world.name, "prompts": cfg.prompts, "targets": TARGET, "concepts": {}}
    for concept in cfg.concepts:
        attribute = attribute_of(concept)
        target = [(s, p) for s, p in pool if getattr(s, attribute) == concept][: cfg.prompts]
        others = [(s, p) for s, p in pool if getattr(s, attribute) != concept][: cfg.prompts]
        unspecified = [caption(s, keep=set(ATTRIBUTES) - {attribute}) for s, _ in target]
        concept_prompt = d.concept_template.format(concept=concept)

        def rates(plan=None) -> dict:
            t = judged([p for _, p in target], plan)
            o = judged([p for _, p in others], plan)
            return {
                "concept_rate_on_its_prompts": round(float(np.mean([r[attribute] == concept for r in t])), 3),
                "others_attribute_accuracy": round(float(np.mean([r[attribute] == getattr(s, attribute) for r, (s, _) in zip(o, others)])), 3),
                "others_all_attributes_accuracy": round(float(np.mean([np.mean([r[a] == getattr(s, a) for a in ATTRIBUTES]) for r, (s, _) in zip(o, others)])), 3),
            }

        keep = tuple(v for v in ATTRIBUTES[attribute] if v != concept)
        erase_scores = scores_for(world, pipe, concept_prompt, "erase", "fast")
        kept_scores = contrasted(world, pipe, EditSpec(concept, "erase", keep=keep), erase_scores)
        amplify_scores = scores_for(world, pipe, concept_prompt, "amplify", "fast")
        amplify_kept = contrasted(world, pipe, EditSpec(concept, "amplify", keep=keep), amplify_scores)
        before = rates()
        rows = []
        for ratio in cfg.ratios:
            for variant, scores in (("CAD scores", erase_scores), ("contrasted with the other values", kept_scores)):
                plan = plan_ablation(pipe.unet, scores.scores, ratio)
                rows.append({"ratio": ratio, "scores": variant, "zeroed": plan.count, "of": plan.total_weights, "after": rates(plan),
                             "random_same_count": rates(random_plan(pipe.unet, plan.count, seed=cfg.seed, like=plan))})
        edits = suppression(concept)
        suppressed = {"blocks_and_stages": len(edits), "after": rates(edits) if edits else None}
        amplify = []
        base_unspecified = float(np.mean([r[attribute] == concept for r in judged(unspecified)]))
        for ratio in cfg.ratios:
            for variant, scores in (("CAD scores", amplify_scores), ("contrasted with the other values", amplify_kept)):
                plan = plan_ablation(pipe.unet, scores.scores, ratio)
                amplify.append({"ratio": ratio, "scores": variant, "zeroed": plan.count,
                                "concept_rate_unspecified_after": round(float(np.mean([r[attribute] == concept for r in judged(unspecified, plan)])), 3)})
        check_cfg = AttributionConfig(steps=d.steps, guidance=d.guidance, height=d.height, width=d.width, images=1)
        prediction = {}
        for n in (30, 300):
            check = prediction_check(pipe, concept_prompt, check_cfg, erase_scores.scores, trials=10, weights_per_trial=n, seed=cfg.seed)
            prediction[f"{n}_weights"] = round(check.pearson, 3)
        report["concepts"][concept] = {
            "attribute": attribute, "concept_prompt": concept_prompt,
            "attribution_seconds": {"erase": round(erase_scores.seconds, 2), "amplify": round(amplify_scores.seconds, 2)},
            "kept_values": list(keep),
            "erase": {"before": before, "by_ratio": rows},
            "sae_suppression": suppressed,
            "amplify": {"prompts": "its attribute left out of the caption", "concept_rate_before": round(base_unspecified, 3), "by_ratio": amplify},
            "prediction_pearson_over_10_random_ablations": prediction,
        }
    report["seconds"] = round(time.time() - started, 1)
    return report
