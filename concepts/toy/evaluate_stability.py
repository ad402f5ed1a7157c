"""`python -m concepts.toy.evaluate stability`: how much of an attribution is the concept and how much
is the seed.

For each attribution setting (mode × images), the concept prompt is scored with several attribution
seeds. Reported per setting: the time of one attribution; Pearson and Spearman between every two
seeds' scores (all feed-forward weights); the Jaccard overlap of the weights each seed's edit zeroes
at the world's default ratio and scope; and what each seed's erase does, read by the judge on the
same prompts (mean and spread over the seeds, at one or several ratios): the concept's rate on its own prompts, how much of
the rest of those images stays right (shape, size, position, background, texture), and the other
values' rate on theirs. A setting whose seeds disagree edits different weights for the same request.

With `objective="amplify"` the concept's prompts leave its attribute out ("a large striped circle"
becomes "a large shape ... circle" without the texture): an amplification can only show where the
prompt does not already ask for the concept. "rest" is then the share of the attributes those prompts
name that the judge still reads right.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..edit import AttributionConfig, attribute, plan_ablation
from ..errors import InvalidInputError
from ..generation import SHARED_PIPELINES
from ..registry import load_registry
from .evaluate_edit import judged_images, split_prompts
from .captions import caption
from .prompts import attribute_of, labelled_prompts
from .world import ATTRIBUTES

TOY_MODEL = "toy-shapes"
SEED_STRIDE = 100_000
"""Attribution seed s draws its trajectories from seeds s·SEED_STRIDE + …: no two seeds share one."""


@dataclass
class StabilityEvalConfig:
    concept: str = "red"
    objective: str = "erase"
    """"erase" or "amplify" (CAD's two objectives)."""
    settings: tuple[tuple[str, int], ...] = (("fast", 2), ("fast", 8), ("faithful", 1), ("faithful", 2))
    """(mode, images) pairs to compare."""
    score_seeds: tuple[int, ...] = (0, 1, 2)
    prompts: int = 12
    """Judged prompts of the concept and of the other values, per side."""
    seed: int = 555
    """The judged prompts and their noise (the edit tables' seed)."""
    ratios: tuple[float, ...] = ()
    """Ratios (in the world's default scope) whose erases are judged; () is the world's default ratio.
    The Jaccard overlap is always taken at the default ratio."""


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks of a flat tensor (ties broken by position; scores are continuous)."""
    out = torch.empty_like(x, dtype=torch.float64)
    out[torch.argsort(x)] = torch.arange(x.numel(), dtype=torch.float64)
    return out


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def flat(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([scores[name].flatten() for name in sorted(scores)])


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def selection(plan) -> set[tuple[str, int]]:
    """The zeroed weights of a plan as (layer, flat index) pairs (`removed` is W ⊙ M)."""
    return {(name, int(i)) for name, part in plan.removed.items() for i in torch.nonzero(part.flatten()).flatten()}


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 3), "sd": round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 3),
            "min": round(float(np.min(values)), 3), "max": round(float(np.max(values)), 3)}


def evaluate_stability(cfg: StabilityEvalConfig = StabilityEvalConfig(), model: str = TOY_MODEL, log=lambda line: None) -> dict:
    world = load_registry().get(model)
    pipe = SHARED_PIPELINES.get(world, "cpu")
    judge = world.knowledge.reader()
    d = world.defaults
    found = attribute_of(cfg.concept)
    if found is None:
        raise InvalidInputError("concepts", f"{cfg.concept!r} is not one toy attribute value")
    attribute_name, concept = found
    prompt = d.concept_template.format(concept=concept)
    if cfg.objective not in ("erase", "amplify"):
        raise InvalidInputError("objective", f"{cfg.objective!r} is not erase or amplify")
    target, others = split_prompts(labelled_prompts(cfg.prompts * 12, cfg.seed), attribute_name, concept, cfg.prompts)
    rest = [a for a in ATTRIBUTES if a != attribute_name]
    if cfg.objective == "amplify":  # the concept's scenes with its attribute left open
        target = [(s, caption(s, keep=set(rest))) for s, _ in target]

    def rates(plan) -> dict[str, float]:
        on_target = judged_images(pipe, judge, world, [p for _, p in target], cfg.seed, plan)
        on_others = judged_images(pipe, judge, world, [p for _, p in others], cfg.seed, plan)
        return {
            "concept_rate": float(np.mean([r[attribute_name] == concept for r in on_target])),
            "rest_of_concept_images_kept": float(np.mean([np.mean([r[a] == getattr(s, a) for a in rest]) for r, (s, _) in zip(on_target, target)])),
            "others_right": float(np.mean([r[attribute_name] == getattr(s, attribute_name) for r, (s, _) in zip(on_others, others)])),
        }

    before = rates(None)
    report = {"what": "stability", "model": world.name, "concept": concept, "objective": cfg.objective, "concept_prompt": prompt,
              "concept_images": "its attribute left open" if cfg.objective == "amplify" else "fully specified", "score_seeds": list(cfg.score_seeds),
              "edit": {"ratio": d.edit_ratio, "scope": d.edit_scope, "min_per_row": d.edit_min_per_row},
              "judged_prompts": cfg.prompts, "before": {k: round(v, 3) for k, v in before.items()}, "settings": []}
    for mode, images in cfg.settings:
        ratios = cfg.ratios or (d.edit_ratio,)
        scores, seconds, plans, after = [], [], [], {r: [] for r in ratios}
        for s in cfg.score_seeds:
            acfg = AttributionConfig(objective=cfg.objective, mode=mode, images=images, seed=s * SEED_STRIDE, steps=d.steps,  # type: ignore[arg-type]
                                     guidance=d.guidance, height=d.height, width=d.width)
            started = time.perf_counter()
            scores.append(attribute(pipe, prompt, acfg))
            seconds.append(time.perf_counter() - started)
            plans.append(plan_ablation(pipe.unet, scores[-1], d.edit_ratio, d.edit_min_per_row, d.edit_scope))
            for ratio in ratios:
                plan = plans[-1] if ratio == d.edit_ratio else plan_ablation(pipe.unet, scores[-1], ratio, d.edit_min_per_row, d.edit_scope)
                after[ratio].append(rates(plan))
                log(f"{mode} × {images}, seed {s}, ratio {ratio:g}: {seconds[-1]:.1f} s, {after[ratio][-1]}")
        flats = [flat(x) for x in scores]
        rank_list = [ranks(x) for x in flats]
        selections = [selection(p) for p in plans]
        pairs = list(itertools.combinations(range(len(flats)), 2))
        report["settings"].append({
            "mode": mode, "images": images,
            "seconds": spread(seconds),
            "pearson": spread([pearson(flats[i], flats[j]) for i, j in pairs]),
            "spearman": spread([pearson(rank_list[i], rank_list[j]) for i, j in pairs]),
            "selection_jaccard": spread([jaccard(selections[i], selections[j]) for i, j in pairs]),
            "zeroed_weights": plans[0].count,
            "after_erase": [{"ratio": r, **{k: spread([a[k] for a in after[r]]) for k in after[r][0]}} for r in ratios],
        })
    return report
