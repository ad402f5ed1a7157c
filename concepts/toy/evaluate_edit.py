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
- **UCE** (erase): the closed-form cross-attention edit (`cad.uce`) on the same prompts, fitted on
  the concept prompt alone and on UCE's default scenes, for comparison with CAD's zeroing.
- **prediction**: Pearson r between predicted and measured change of J over random ablations (the
  authors report ≈ 0.5), for small and larger ablations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..edit import AblationHooks, AttributionConfig, plan_ablation
from ..edit.ablation import SCOPES
from ..edit.checks import prediction_check, random_plan
from ..edit.service import (
    UCE_SCENES,
    EditSpec,
    contrasted,
    scores_for,
    target_scores,
    uce_edit,
)
from ..generation import SHARED_PIPELINES
from ..hooks import BlockEdit, BlockHooks
from ..quiet import quiet_libraries
from ..registry import load_registry
from ..saes import labelled_saes
from ..sampling import GenerationRequest, generate
from ..steer.steering import suppression_edits
from .captions import caption
from .prompts import attribute_of as attribute_and_value
from .prompts import labelled_prompts
from .world import ATTRIBUTES

TOY_MODEL = "toy-shapes"
TARGET = {"erase_rate_before_at_least": 0.9, "erase_rate_after_at_most": 0.2, "others_drop_at_most": 0.05}


VARIANTS = {"plain": "CAD scores", "mean": "contrasted with the other values", "max": "contrasted with the other values' max",
            "max2": "contrasted with twice the other values' max",
            "anchored": "anchored", "anchored-max": "anchored, contrasted with the other values' max",
            "scenes": "CAD scores over scenes of the concept", "scenes-mean": "over scenes, contrasted with the same scenes in the other values",
            "identity": "contrasted with the other values' max, each value's objective anchored on the rest (identity)",
            "scenes-identity": "over scenes, contrasted with the other values' max on the same scenes, each anchored on the rest (identity)"}
CONTRAST = {"mean": ("mean", 1.0), "max": ("max", 1.0), "max2": ("max", 2.0), "anchored-max": ("max", 1.0), "identity": ("max", 1.0), "scenes-identity": ("max", 1.0)}
IDENTITY = ("identity", "scenes-identity")
"""Erase only: the kept values' scores are their identity (`EditSpec.protect`), not their presence."""
SCENE_VARIANTS = ("scenes", "scenes-mean", "scenes-identity")
"""Erase only: attribution over `EditEvalConfig.scenes` fully specified scenes (`cad.scenes`)."""
ANCHORED = ("anchored", "anchored-max")
"""Erase objective anchored on neighbouring values (J = Σ‖ε(x,c) − stopgrad mean_a ε(x,a)‖²), once per anchor set."""


@dataclass
class EditEvalConfig:
    concepts: tuple[str, ...] = ("red", "striped")
    ratios: tuple[float, ...] = (0.02,)
    prompts: int = 24
    seed: int = 555
    scopes: tuple[str, ...] = ("row", "matrix")
    """Where the top weights are taken (`plan_ablation`'s scope): every scope is run at `ratios`,
    unless `scope_ratios` names its own (the matrix scope: toy-shapes' default edit)."""
    scope_ratios: dict[str, tuple[float, ...]] = field(default_factory=lambda: {"matrix": (0.012, 0.024)})
    variants: tuple[str, ...] = ("plain", "mean", "max", "scenes", "scenes-mean")
    """Scores: plain CAD ("plain"), minus the mean ("mean"), the max ("max") or twice the max ("max2") of the other values' scores;
    the erase objective anchored on other values ("anchored"), and that minus the other values' max ("anchored-max");
    minus the max of the other values' identity scores ("identity", and over scenes "scenes-identity": `EditSpec.protect`)."""
    anchor_sets: tuple[tuple[str, ...], ...] = ()
    """The anchor sets the anchored variants run with, each a tuple of values (several: their mean
    prediction); () means one set, all the other values of the concept's attribute. Erase only."""
    scenes: int = 8
    """Scenes the scene variants attribute over."""
    random_baseline: bool = True
    uce: bool = True
    """Erase also with UCE (fitted on the concept prompt alone, and on UCE_SCENES scenes)."""
    amplify: bool = True
    suppression: bool = True
    prediction: bool = True
    """The parts besides the erase grid (off for a quick sweep)."""

    def settings(self) -> list[tuple[str, float]]:
        for scope in self.scopes:
            if scope not in SCOPES:
                raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        for variant in self.variants:
            if variant not in VARIANTS:
                raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        return [(scope, ratio) for scope in self.scopes for ratio in self.scope_ratios.get(scope, self.ratios)]


def attribute_of(value: str) -> str:
    found = attribute_and_value(value)
    if found is None:
        raise ValueError(f"{value!r} is not a toy attribute value")
    return found[0]


def judged_images(pipe, judge, world, prompts: list[str], seed: int, plan=None) -> list[dict[str, str]]:
    """The judge's reading of each prompt's image at the world's defaults, unedited (`plan` None),
    with an `AblationPlan` or with a list of `BlockEdit`s (SAE suppression) applied."""
    d = world.defaults
    request = GenerationRequest(prompts, seed=seed, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width)
    if plan is None:
        return judge(generate(pipe, request).pixels)
    hooks = BlockHooks(pipe.unet, edits=plan) if isinstance(plan, list) else AblationHooks(pipe.unet, plan)
    with hooks as active:
        return judge(generate(pipe, request, active if isinstance(plan, list) else ()).pixels)


def split_prompts(pool: list, attribute: str, concept: str, count: int) -> tuple[list, list]:
    """From labelled (scene, prompt) pairs, the first `count` that ask for the concept and the first
    `count` that ask for another value of its attribute (what an erase must keep)."""
    target = [(s, p) for s, p in pool if getattr(s, attribute) == concept][:count]
    others = [(s, p) for s, p in pool if getattr(s, attribute) != concept][:count]
    return target, others


def erase_rates(attribute: str, concept: str, target: list, others: list, judged_target: list[dict[str, str]], judged_others: list[dict[str, str]]) -> dict:
    """The judge's rate of the concept on its prompts, and how right the other prompts stay (their
    attribute, all six attributes, and per kept value "right/asked": red's loss may be all orange)."""
    asked, right = Counter(getattr(s, attribute) for s, _ in others), Counter()
    for r, (s, _) in zip(judged_others, others):
        right[getattr(s, attribute)] += r[attribute] == getattr(s, attribute)
    return {
        "concept_rate_on_its_prompts": round(float(np.mean([r[attribute] == concept for r in judged_target])), 3),
        "others_attribute_accuracy": round(float(np.mean([r[attribute] == getattr(s, attribute) for r, (s, _) in zip(judged_others, others)])), 3),
        "others_all_attributes_accuracy": round(float(np.mean([np.mean([r[a] == getattr(s, a) for a in ATTRIBUTES]) for r, (s, _) in zip(judged_others, others)])), 3),
        "concept_prompts_read_as": dict(Counter(r[attribute] for r in judged_target).most_common()),
        "others_right_by_value": {value: f"{right[value]}/{n}" for value, n in sorted(asked.items())},
    }


def evaluate_edit(cfg: EditEvalConfig = EditEvalConfig(), model: str = TOY_MODEL, log=lambda line: None) -> dict:
    started = time.time()
    settings = cfg.settings()
    world = load_registry().get(model)
    pipe = SHARED_PIPELINES.get(world, "cpu")
    judge = world.knowledge.reader()
    d = world.defaults

    def judged(prompts: list[str], plan=None) -> list[dict[str, str]]:
        return judged_images(pipe, judge, world, prompts, cfg.seed, plan)

    def suppression(concept: str) -> list[BlockEdit]:
        """Edits that switch the concept's labelled features off wherever a cond SAE labels it."""
        return suppression_edits(labelled_saes(world, concept, pipe.unet), d.steps)

    pool = labelled_prompts(cfg.prompts * 12, cfg.seed)
    report = {"what": "edit", "model": world.name, "prompts": cfg.prompts, "targets": TARGET, "concepts": {}}
    for concept in cfg.concepts:
        attribute = attribute_of(concept)
        target, others = split_prompts(pool, attribute, concept, cfg.prompts)
        unspecified = [caption(s, keep=set(ATTRIBUTES) - {attribute}) for s, _ in target]
        concept_prompt = d.concept_template.format(concept=concept)

        def rates(plan=None) -> dict:
            return erase_rates(attribute, concept, target, others, judged([p for _, p in target], plan), judged([p for _, p in others], plan))

        keep = tuple(v for v in ATTRIBUTES[attribute] if v != concept)

        def variants(action: str):
            plain = scores_for(world, pipe, concept_prompt, action, "fast")
            spec = EditSpec(concept, action, mode="fast", keep=keep, scenes=0)
            def protected(spec: EditSpec, variant: str) -> EditSpec:
                return replace(spec, protect="identity") if variant in IDENTITY else spec

            out = [(VARIANTS[v], plain if v == "plain" else contrasted(world, pipe, protected(spec, v), plain, *CONTRAST[v]))
                   for v in cfg.variants if v not in ANCHORED + SCENE_VARIANTS and (action == "erase" or v not in IDENTITY)]
            if action == "erase" and any(v in SCENE_VARIANTS for v in cfg.variants):
                scened_spec = EditSpec(concept, action, mode="fast", keep=keep, scenes=cfg.scenes)
                scened = target_scores(world, pipe, scened_spec, concept_prompt)
                out += [(f"{VARIANTS[v]} ({cfg.scenes})", scened if v == "scenes" else contrasted(world, pipe, protected(scened_spec, v), scened, *CONTRAST.get(v, ("mean", 1.0))))
                        for v in cfg.variants if v in SCENE_VARIANTS]
            if action == "erase":
                for anchors in cfg.anchor_sets or (keep,):
                    prompts = tuple(d.concept_template.format(concept=a) for a in anchors)
                    anchored = scores_for(world, pipe, concept_prompt, action, "fast", prompts)
                    for v in (v for v in cfg.variants if v in ANCHORED):
                        label = f"{VARIANTS[v]} on {'+'.join(anchors)}"
                        out.append((label, anchored if v == "anchored" else contrasted(world, pipe, spec, anchored, *CONTRAST[v])))
            return plain, out

        erase_scores, erase_variants = variants("erase")
        before = rates()
        rows = []
        for scope, ratio in settings:
            for variant, scores in erase_variants:
                plan = plan_ablation(pipe.unet, scores.scores, ratio, scope=scope)
                row = {"ratio": ratio, "scope": scope, "scores": variant, "zeroed": plan.count, "of": plan.total_weights, "after": rates(plan)}
                if cfg.random_baseline:
                    row["random_same_count"] = rates(random_plan(pipe.unet, plan.count, seed=cfg.seed, like=plan))
                rows.append(row)
                log(f"{concept} erase {scope} {ratio:g} {variant}: {row}")
        entry = {"attribute": attribute, "concept_prompt": concept_prompt, "attribution_seconds": {"erase": round(erase_scores.seconds, 2)},
                 "attribution_read_from_cache": {"erase": erase_scores.cached},
                 "kept_values": list(keep), "erase": {"before": before, "by_ratio": rows}}
        if cfg.uce:
            entry["erase"]["uce"] = []
            for scenes in (0, UCE_SCENES):
                fitted, plan = uce_edit(world, pipe, EditSpec(concept, "erase", method="uce", scenes=scenes), concept_prompt)
                row = {"fitted_on": fitted.prompt, "scenes": scenes, "kept": "the other values (default)", "edited": plan.count, "of": plan.total_weights,
                       "fit_seconds": round(fitted.seconds, 2), "after": rates(plan)}
                entry["erase"]["uce"].append(row)
                log(f"{concept} erase UCE {scenes} scenes: {row}")
        if cfg.suppression:
            edits = suppression(concept)
            entry["sae_suppression"] = {"blocks_and_stages": len(edits), "after": rates(edits) if edits else None}
        if cfg.amplify:
            amplify_scores, amplify_variants = variants("amplify")
            entry["attribution_seconds"]["amplify"] = round(amplify_scores.seconds, 2)
            entry["attribution_read_from_cache"]["amplify"] = amplify_scores.cached
            amplify = []
            base_unspecified = float(np.mean([r[attribute] == concept for r in judged(unspecified)]))
            for scope, ratio in settings:
                for variant, scores in amplify_variants:
                    plan = plan_ablation(pipe.unet, scores.scores, ratio, scope=scope)
                    amplify.append({"ratio": ratio, "scope": scope, "scores": variant, "zeroed": plan.count,
                                    "concept_rate_unspecified_after": round(float(np.mean([r[attribute] == concept for r in judged(unspecified, plan)])), 3)})
            entry["amplify"] = {"prompts": "its attribute left out of the caption", "concept_rate_before": round(base_unspecified, 3), "by_ratio": amplify}
        if cfg.prediction:
            check_cfg = AttributionConfig(steps=d.steps, guidance=d.guidance, height=d.height, width=d.width, images=1)
            prediction = {}
            for n in (30, 300):
                check = prediction_check(pipe, concept_prompt, check_cfg, erase_scores.scores, trials=10, weights_per_trial=n, seed=cfg.seed)
                prediction[f"{n}_weights"] = round(check.pearson, 3)
            entry["prediction_pearson_over_10_random_ablations"] = prediction
        report["concepts"][concept] = entry
    report["seconds"] = round(time.time() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m concepts.toy.evaluate_edit`: the erase grid alone, over scopes, ratios and score
    variants (a sweep); `python -m concepts.toy.evaluate edit` runs the full evaluation."""
    parser = argparse.ArgumentParser(prog="python -m concepts.toy.evaluate_edit", description=main.__doc__)
    parser.add_argument("--concepts", nargs="+", default=["red"])
    parser.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    parser.add_argument("--ratios", type=float, nargs="+", default=list(EditEvalConfig.ratios))
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v not in ANCHORED], choices=list(VARIANTS))
    parser.add_argument("--anchor-set", action="append", default=None, metavar="A[,B,...]",
                        help="values the anchored variants anchor on, comma-separated (repeatable: one run per set; default: all other values)")
    parser.add_argument("--matrix-ratios", type=float, nargs="+", default=list(EditEvalConfig().scope_ratios["matrix"]),
                        help="ratios of the matrix scope (--ratios applies to the other scopes)")
    parser.add_argument("--prompts", type=int, default=EditEvalConfig.prompts)
    parser.add_argument("--scenes", type=int, default=EditEvalConfig.scenes, help="scenes the scene variants attribute over")
    parser.add_argument("--seed", type=int, default=EditEvalConfig.seed)
    parser.add_argument("--random", action="store_true", help="also a random ablation of as many weights per setting")
    parser.add_argument("--uce", action="store_true", help="also erase with UCE (closed-form cross-attention edit)")
    parser.add_argument("--full", action="store_true", help="also amplify, SAE suppression and the prediction check")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    quiet_libraries()
    cfg = EditEvalConfig(concepts=tuple(args.concepts), ratios=tuple(args.ratios), prompts=args.prompts, seed=args.seed, scopes=tuple(args.scopes), scenes=args.scenes,
                         variants=tuple(args.variants), anchor_sets=tuple(tuple(a.strip() for a in group.split(",") if a.strip()) for group in args.anchor_set or ()),
                         scope_ratios={"matrix": tuple(args.matrix_ratios)}, random_baseline=args.random, uce=args.uce, amplify=args.full, suppression=args.full, prediction=args.full)
    report = evaluate_edit(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
