"""One erase / amplify request end to end (shared by the CLI and the app).

Validates the concept and ratio, gets the attribution scores (from the disk cache or computed),
plans the ablation and generates before/after images for the concept's prompts and for prompts of
other concepts (what should be kept), all from the same seeds. Nothing in the model changes: the
ablation lives in this call's hooks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from PIL import Image

from ..errors import InvalidInputError
from ..generation import SHARED_PIPELINES
from ..pipeline import PipelineCache
from ..progress import ProgressFn, counting_steps, report
from ..prompts import check_prompt, known_words_message, unknown_words
from ..registry import EDIT_METHODS, EDIT_MODES, EDIT_PROTECTS, ModelWorld, Registry, load_registry
from ..batching import batched_generate_many
from ..sampling import MAX_SEED, GenerationRequest, check_int
from .ablation import (
    AblationHooks,
    AblationPlan,
    check_ratio,
    check_scope,
    plan_ablation,
)
from .attribution import AttributionConfig, attribute
from .cache import load_scores, load_shipped, lock_for, save_scores, score_key, score_path
from .components import block_of
from .scenes import check_scenes, kept_scene_prompts, scene_prompts, scenes_label

ACTIONS = ("erase", "amplify")
METHODS = EDIT_METHODS
"""How the edit is made: "cad" zeroes attributed feed-forward weights (erase or amplify); "uce"
edits the cross-attention keys and values in closed form (erase only; `uce.py`)."""
MAX_PROMPTS = 8


@dataclass(frozen=True)
class EditSpec:
    concept: str
    action: str = "erase"
    ratio: float | None = None
    """Share of the feed-forward weights zeroed, per row, matrix or model as `scope` says (None: the model's default)."""
    mode: str | None = None
    """Attribution mode, "fast" or "faithful" (None: the model's default, `defaults.edit_mode`)."""
    concept_prompt: str | None = None
    """The prompt attribution runs on (None: the model's template filled with the concept)."""
    keep: tuple[str, ...] = ()
    """Concepts to protect: their mean (or max: `contrast`) scores are subtracted, so weights they also need are spared."""
    min_per_row: int | None = None
    """Weights zeroed per row at least (None: the model's default; the per-row scope only)."""
    scope: str | None = None
    """Where the top weights are taken: per "row", per "matrix" or over the whole "model" (None: the model's default)."""
    contrast: str = "mean"
    """How the kept concepts' scores are subtracted: their "mean", or their "max" (spares more)."""
    protect: str = "presence"
    """What of each kept concept is spared. "presence": CAD's objective for it, the weights it needs
    to be drawn at all. "identity" (erase only, two or more kept concepts): its objective anchored on
    the other kept concepts, the weights that tell it from them. Why: on the toy, erasing red moves
    red towards orange and orange towards yellow; orange is still drawn strongly (its presence scores
    do not object) but as the wrong colour, which only the identity scores see."""
    anchor: tuple[str, ...] = ()
    """Erase only: concepts whose prompts anchor the objective (the concept's prediction is compared
    with their mean prediction instead of the unconditional one); () is CAD's objective."""
    scenes: int | None = None
    """Toy worlds: attribute over this many fully specified scenes that show the concept (their mean
    scores; kept concepts on the same scenes with their value swapped in); 0: the concept prompt;
    None: the model's default. With UCE: the scenes the edit is fitted on besides the concept prompt."""
    method: str = "cad"
    """"cad" (zero attributed weights) or "uce" (closed-form cross-attention edit, erase only: it uses
    `keep` and `anchor`, not the ratio, scope, contrast or protect)."""


class Scores(NamedTuple):
    scores: dict[str, torch.Tensor]
    prompt: str
    cached: bool
    seconds: float


class EditOutcome(NamedTuple):
    world: ModelWorld
    spec: EditSpec
    ratio: float
    attribution: Scores
    plan: AblationPlan
    concept_prompts: list[str]
    concept_before: list[Image.Image]
    concept_after: list[Image.Image]
    kept_prompts: list[str]
    kept_before: list[Image.Image]
    kept_after: list[Image.Image]
    seconds: float


def concept_prompt(world: ModelWorld, spec: EditSpec) -> str:
    concept = (spec.concept or "").strip()
    if not concept:
        raise InvalidInputError("concept", "is empty: name the concept to erase or amplify")
    text = spec.concept_prompt.strip() if spec.concept_prompt and spec.concept_prompt.strip() else world.defaults.concept_template.format(concept=concept)
    return check_prompt(text, field="concept").text


def concept_image_prompts(world: ModelWorld, spec: EditSpec, prompt: str, count: int, seed: int) -> list[str]:
    """The prompts of the concept's before/after images: the user's concept prompt when given;
    else, on a toy world, fully specified captions with the concept (the template prompt, "a red
    shape", is what attribution runs on, and how an erase fares on it differs from full prompts, in
    either direction from one retraining to the next: the full captions are what the judge's
    tables measure); for amplify, the same captions with the concept's attribute left open (a
    prompt that already asks for the concept cannot show it amplified); else the template prompt.
    One prompt per image."""
    if not (isinstance(count, int) and 1 <= count <= MAX_PROMPTS):
        raise InvalidInputError("images", f"must be in 1..{MAX_PROMPTS}, got {count!r}")
    if world.defaults.toy_scenes and not (spec.concept_prompt and spec.concept_prompt.strip()):
        check_int("seed", seed, 0, MAX_SEED)  # it seeds the scenes too: named here, before numpy sees it
        knowledge = world.knowledge
        shown = (knowledge.prompts_leaving_open if spec.action == "amplify" else knowledge.prompts_showing)(spec.concept, count, seed)
        if shown is not None:
            return shown
    return [prompt] * count


def anchor_prompts(world: ModelWorld, spec: EditSpec) -> tuple[str, ...]:
    """The spec's anchor concepts as prompts (the model's concept template), checked."""
    anchor = [a.strip() for a in spec.anchor if a and a.strip()]
    if not anchor:
        return ()
    if spec.action != "erase":
        raise InvalidInputError("anchor", "applies to erase only")
    if len(anchor) > MAX_PROMPTS:
        raise InvalidInputError("anchor", f"at most {MAX_PROMPTS} anchor concepts, got {len(anchor)}")
    if spec.concept and spec.concept.strip().lower() in (a.lower() for a in anchor):
        raise InvalidInputError("anchor", f"{spec.concept.strip()!r} cannot anchor itself: every score would be zero")
    return tuple(dict.fromkeys(check_prompt(world.defaults.concept_template.format(concept=a), field="anchor").text for a in anchor))


def scores_for(world: ModelWorld, pipe, prompt: str, objective: str, mode: str | None, anchor: tuple[str, ...] = ()) -> Scores:
    """Attribution scores for the concept prompt, from the disk cache when there (`anchor`: the
    anchor prompts of the erase objective, () for CAD's unconditional one; `mode` None: the model's)."""
    d = world.defaults
    mode = settled_mode(world, mode)
    cfg = AttributionConfig(objective=objective, mode=mode, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width,  # type: ignore[arg-type]
                            images=d.attribution_images[mode], anchor=tuple(anchor))
    key = score_key(world, pipe.unet, prompt, cfg)
    path = score_path(key)
    with lock_for(path):
        cached = load_scores(path)
        if cached is None:
            cached = load_shipped(world, key)
        if cached is not None:
            return Scores(cached, prompt, True, 0.0)
        started = time.perf_counter()
        scores = attribute(pipe, prompt, cfg)
        save_scores(path, scores, key)
        return Scores(scores, prompt, False, time.perf_counter() - started)


def mean_scores(parts: list[Scores], prompt: str) -> Scores:
    """The mean of several prompts' scores (one prompt: its own)."""
    if len(parts) == 1:
        return parts[0]
    scores = {name: torch.stack([p.scores[name] for p in parts]).mean(0) for name in parts[0].scores}
    return Scores(scores, prompt, all(p.cached for p in parts), sum(p.seconds for p in parts))


def target_scores(world: ModelWorld, pipe, spec: EditSpec, prompt: str) -> Scores:
    """The concept's scores: on its prompt, or the mean over `spec.scenes` scenes that show it."""
    spec = with_scenes(world, spec)
    anchor = anchor_prompts(world, spec)
    if not spec.scenes:
        return scores_for(world, pipe, prompt, spec.action, spec.mode, anchor)
    prompts = scene_prompts(world, spec.concept, spec.scenes)
    return mean_scores([scores_for(world, pipe, p, spec.action, spec.mode, anchor) for p in prompts], scenes_label(spec.concept, spec.scenes))


def kept_scores(world: ModelWorld, pipe, spec: EditSpec, kept: str, keep: list[str] | None = None) -> Scores:
    """What a kept concept needs: its template prompt's scores, or with scenes, the mean over the
    concept's scenes with the kept value in. With `spec.protect` "presence" that is CAD's unanchored
    objective; with "identity" the objective is anchored on the other kept concepts (`keep`) on the
    same prompt (scene by scene), so the scores are what tells this one from them."""
    others = [k for k in (keep or []) if k.lower() != kept.lower()] if spec.protect == "identity" else []
    if not spec.scenes:
        def template(name: str) -> str:
            return check_prompt(world.defaults.concept_template.format(concept=name), field="keep").text
        return scores_for(world, pipe, template(kept), spec.action, spec.mode, tuple(template(o) for o in others))
    prompts = kept_scene_prompts(world, spec.concept, kept, spec.scenes)
    anchors = list(zip(*[kept_scene_prompts(world, spec.concept, o, spec.scenes) for o in others])) if others else [()] * len(prompts)
    return mean_scores([scores_for(world, pipe, p, spec.action, spec.mode, tuple(a)) for p, a in zip(prompts, anchors)], scenes_label(kept, spec.scenes))


def check_protect(spec: EditSpec) -> None:
    """`spec.protect` is known, and "identity" has an erase and other kept concepts to anchor on."""
    if spec.protect not in EDIT_PROTECTS:
        raise InvalidInputError("protect", f"{spec.protect!r} is not one of {', '.join(EDIT_PROTECTS)}")
    if spec.protect == "identity":
        keep = distinct_concepts(spec.keep)
        if spec.action != "erase":
            raise InvalidInputError("protect", "identity applies to erase only (it anchors the erase objective); use presence for amplify")
        if len(keep) < 2:
            raise InvalidInputError("protect", f"identity tells each kept concept from the other kept ones: name two or more concepts to keep, got {len(keep)}")


CONTRASTS = ("mean", "max")


def distinct_concepts(names) -> list[str]:
    """The kept concepts once each, in order, blanks dropped and case ignored ("Orange" is "orange"),
    so no concept is scored twice."""
    seen: dict[str, str] = {}
    for name in names:
        if name and name.strip():
            seen.setdefault(name.strip().lower(), name.strip())
    return list(seen.values())


def contrasted(world: ModelWorld, pipe, spec: EditSpec, target: Scores, how: str = "mean", weight: float = 1.0) -> Scores:
    """Target scores minus `weight` × the mean (or, stronger, the max) scores of the concepts to keep
    (our addition to CAD: it spares weights that every concept of the kind needs, which plain scores zero too).
    The kept concepts' scores follow `spec.protect` (presence or identity), whatever the target's anchor."""
    if how not in CONTRASTS:
        raise InvalidInputError("contrast", f"{how!r} is not one of {', '.join(CONTRASTS)}")
    if not (isinstance(weight, (int, float)) and 0 <= weight <= 100):
        raise InvalidInputError("contrast", f"weight must be in [0, 100], got {weight!r}")
    spec = with_scenes(world, spec)
    keep = distinct_concepts(spec.keep)
    if not keep:
        return target
    if len(keep) > MAX_PROMPTS:
        raise InvalidInputError("keep", f"at most {MAX_PROMPTS} concepts to keep, got {len(keep)}")
    check_protect(spec)
    others = [kept_scores(world, pipe, spec, k, keep) for k in keep]
    reduce = (lambda t: t.mean(0)) if how == "mean" else (lambda t: t.amax(0))
    scores = {name: s - weight * reduce(torch.stack([o.scores[name] for o in others])) for name, s in target.scores.items()}
    return Scores(scores, target.prompt, target.cached and all(o.cached for o in others), target.seconds + sum(o.seconds for o in others))


def attributed_on(spec: EditSpec, prompt: str) -> str:
    """What a settled spec's scores are attributed on, for messages: "'a red shape'" or "8 scenes of red"."""
    return scenes_label(spec.concept, spec.scenes) if spec.scenes else f"'{prompt}'"


UCE_SCENES = 8
"""Scenes a UCE edit is fitted on by default on a toy world: with the concept prompt alone it leaves
red on 0.25 of the red prompts and costs the other colours 0.17; with 8 scenes, 0.00 and nothing
(`checkpoints/toy-shapes/edit-metrics.json`)."""


def default_scenes(world: ModelWorld, method: str) -> int:
    """The scenes used when the request names none: the model's default for CAD, UCE_SCENES for UCE on a toy world."""
    return UCE_SCENES if method == "uce" and world.defaults.toy_scenes else world.defaults.edit_scenes


def with_scenes(world: ModelWorld, spec: EditSpec) -> EditSpec:
    """The spec with its number of scenes settled and checked: the model's default when None, but
    none when the user gave a concept prompt of their own (attribution runs on what they typed)."""
    own_prompt = bool(spec.concept_prompt and spec.concept_prompt.strip())
    scenes = (0 if own_prompt else default_scenes(world, spec.method)) if spec.scenes is None else spec.scenes
    check_scenes(world, scenes)
    if scenes and own_prompt:
        raise InvalidInputError("scenes", "attribution runs over your concept prompt or over scenes, not both: set scenes to 0 or clear the concept prompt")
    return replace(spec, scenes=scenes)


def check_method(spec: EditSpec) -> None:
    """The method is known, and UCE is asked to erase (it has no amplify objective)."""
    if spec.method not in METHODS:
        raise InvalidInputError("method", f"{repr(spec.method)[:40]} is not one of {', '.join(METHODS)}")
    if spec.method == "uce" and spec.action != "erase":
        raise InvalidInputError("method", "UCE erases only; amplify with CAD")


def uce_edit(world: ModelWorld, pipe, spec: EditSpec, prompt: str) -> tuple[Scores, AblationPlan]:
    """UCE's plan: no attribution scores (an empty `Scores` named after what the edit was fitted on)."""
    from .uce import text_map, uce_plan
    from .uce_prompts import uce_prompts

    spec = with_scenes(world, spec)
    anchor_prompts(world, spec)  # checked as for CAD: erase only, not the concept itself, at most MAX_PROMPTS
    started = time.perf_counter()
    fitted = uce_prompts(world, spec.concept, prompt, distinct_concepts(spec.anchor), distinct_concepts(spec.keep), spec.scenes or 0)
    plan = uce_plan(pipe.unet, text_map(pipe, fitted))
    return Scores({}, attributed_on(spec, prompt), False, time.perf_counter() - started), plan


def edit_plan(world: ModelWorld, pipe, spec: EditSpec, prompt: str, ratio: float) -> tuple[Scores, AblationPlan]:
    """The scores (contrasted with the concepts to keep) and the weights they say to zero; with UCE,
    no scores and the closed-form cross-attention edit."""
    check_method(spec)
    if spec.method == "uce":
        return uce_edit(world, pipe, spec, prompt)
    spec = with_mode(world, with_scenes(world, spec))
    check_protect(spec)
    scope = edit_scope(world, spec)
    # The model's default applies to the per-row scope; an explicit value elsewhere is refused by
    # plan_ablation. Checked before attribution, so a bad value costs no scoring.
    default = world.defaults.edit_min_per_row if scope == "row" else 0
    min_per_row = default if spec.min_per_row is None else spec.min_per_row
    if isinstance(min_per_row, bool) or not isinstance(min_per_row, int) or not 0 <= min_per_row <= 64:
        raise InvalidInputError("min_per_row", f"must be a whole number in 0..64, got {min_per_row!r}")
    if scope != "row" and min_per_row:
        raise InvalidInputError("min_per_row", f"applies to the per-row scope only, not {scope!r}")
    scores = contrasted(world, pipe, spec, target_scores(world, pipe, spec, prompt), how=spec.contrast)
    return scores, plan_ablation(pipe.unet, scores.scores, ratio, min_per_row=min_per_row, scope=scope)


def settled_mode(world: ModelWorld, mode: str | None) -> str:
    """An attribution mode, checked; the model's default (`defaults.edit_mode`) when None."""
    mode = world.defaults.edit_mode if mode is None else mode
    if mode not in EDIT_MODES:
        raise InvalidInputError("mode", f"{mode!r} is not fast or faithful")
    return mode


def with_mode(world: ModelWorld, spec: EditSpec) -> EditSpec:
    """The spec with its attribution mode settled and checked."""
    return replace(spec, mode=settled_mode(world, spec.mode))


def edit_scope(world: ModelWorld, spec: EditSpec) -> str:
    """The spec's scope, or the model's default."""
    return check_scope(world.defaults.edit_scope if spec.scope is None else spec.scope)


def check_known_concepts(world: ModelWorld, pipe, spec: EditSpec) -> None:
    """On a closed-vocabulary world, a concept (or kept concept) must be made of words it knows:
    attributing an unknown word would score noise and zero weights for nothing."""
    if not world.defaults.closed_vocabulary:
        return
    for field, names in (("concept", [spec.concept]), ("keep", list(spec.keep)), ("anchor", list(spec.anchor))):
        unknown = [w for name in names for w in unknown_words(name or "", pipe.tokenizer)]
        if unknown:
            known = [w for w in dict.fromkeys(" ".join(world.examples).split()) if len(w) > 2 and w not in ("the", "background")]
            raise InvalidInputError(field, known_words_message(world.name, unknown) + (f"; try words of its examples: {', '.join(known[:10])}" if known else ""))


def block_mass(scores: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Per transformer block: (sum of positive scores, sum of negative scores)."""
    out: dict[str, list[float]] = {}
    for layer, s in scores.items():
        row = out.setdefault(block_of(layer), [0.0, 0.0])
        row[0] += float(s.clamp_min(0).sum())
        row[1] += float(s.clamp_max(0).sum())
    return {block: (pos, neg) for block, (pos, neg) in out.items()}


def top_components(scores: dict[str, torch.Tensor], count: int = 10) -> list[tuple[str, int, int, float]]:
    """The highest-scored single weights: (layer, row, column, score)."""
    best: list[tuple[str, int, int, float]] = []
    for layer, s in scores.items():
        values, index = s.flatten().topk(min(count, s.numel()))
        best += [(layer, int(i) // s.shape[1], int(i) % s.shape[1], float(v)) for v, i in zip(values, index)]
    return sorted(best, key=lambda row: -row[3])[:count]


def _before_and_after(pipe, groups: list[list[str]], seed: int, world: ModelWorld, steps: int | None, guidance: float | None,
                      plan: AblationPlan, progress: ProgressFn | None = None) -> list[tuple[list[Image.Image], list[Image.Image]]]:
    """Each group of prompts before and with the edit, all queued at once so they share a UNet batch
    (`concepts.batching`); a group's before and after images come from the same seed. Their steps
    fill the second half of `progress`'s bar."""
    d = world.defaults
    requests = [GenerationRequest(prompts, seed=seed, steps=steps or d.steps, guidance=d.guidance if guidance is None else guidance,
                                  height=d.height, width=d.width) for prompts in groups if prompts]
    edited = lambda: [AblationHooks(pipe.unet, plan)]  # noqa: E731
    with counting_steps(progress, sum(2 * r.steps for r in requests), "the images before and after", start=0.5, span=0.5):
        results = iter(batched_generate_many(pipe, [(r, hooks) for r in requests for hooks in (None, edited)]))
    return [(next(results).images, next(results).images) if prompts else ([], []) for prompts in groups]


def check_prompts(prompts: list[str], field: str) -> list[str]:
    cleaned = [check_prompt(p, field=field).text for p in prompts if p and p.strip()]
    if len(cleaned) > MAX_PROMPTS:
        raise InvalidInputError(field, f"at most {MAX_PROMPTS} prompts per request, got {len(cleaned)}")
    return cleaned


def run_edit(
    model: str | None,
    spec: EditSpec,
    *,
    prompts: list[str] | None = None,
    kept_prompts: list[str] | None = None,
    images: int = 1,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
) -> EditOutcome:
    world = (registry or load_registry()).get(model)
    if spec.action not in ACTIONS:
        raise InvalidInputError("action", f"{spec.action!r} is not erase or amplify")
    spec = with_mode(world, spec)
    check_method(spec)
    ratio = check_ratio(world.defaults.ratio_for(spec.action) if spec.ratio is None else spec.ratio)
    if spec.method == "cad":  # what only CAD's scores use
        edit_scope(world, spec)
        if spec.contrast not in CONTRASTS:
            raise InvalidInputError("contrast", f"{spec.contrast!r} is not one of {', '.join(CONTRASTS)}")
        check_protect(spec)
    prompt = concept_prompt(world, spec)
    anchor_prompts(world, spec)
    spec = with_scenes(world, spec)
    if spec.scenes:  # a concept (or kept concept) no scene can show is named before the model loads
        scene_prompts(world, spec.concept, spec.scenes)
        for kept in distinct_concepts(spec.keep):
            kept_scene_prompts(world, spec.concept, kept, spec.scenes)
    shown = check_prompts(prompts if prompts is not None else concept_image_prompts(world, spec, prompt, images, seed), "prompts")
    others = [e for e in world.examples if spec.concept.strip().lower() not in e.lower()]  # examples without the concept
    kept = check_prompts(kept_prompts if kept_prompts is not None else others[:2], "kept_prompts")
    pipe = (cache or SHARED_PIPELINES).get(world, device)
    check_known_concepts(world, pipe, spec)
    started = time.perf_counter()
    report(progress, 0.0, f"fitting the UCE edit on {attributed_on(spec, prompt)}" if spec.method == "uce"
           else f"attribution scores for {attributed_on(spec, prompt)} (cached after the first time)")
    scores, plan = edit_plan(world, pipe, spec, prompt, ratio)
    report(progress, 0.5, "the concept's and the other prompts' images, before and after")
    (before, after), (kept_before, kept_after) = _before_and_after(pipe, [shown, kept], seed, world, steps, guidance, plan, progress)
    report(progress, 1.0, "done")
    return EditOutcome(world, spec, ratio, scores, plan, shown, before, after, kept, kept_before, kept_after, time.perf_counter() - started)
