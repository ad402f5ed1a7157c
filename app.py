"""Concept Lab — the Gradio app (also the Hugging Face Space). All UI code lives here.

Tabs: Generate (prompt → image) and Steer (explore which SAE features fire where, steer them by
region and denoising window, browse feature icons and top images). The timestep-evolution and
erase/amplify panels are added as tabs by later work. Every error a user can cause is shown as a
message (`gr.Error`), never a traceback; models are shared read-only across users and per-user data
(the last exploration) lives in `gr.State`, never in module globals.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported: no import-time advice

import gradio as gr  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from concepts.cad.ablation import SCOPE_LABELS  # noqa: E402
from concepts.cad.figures import block_mass_figure, edit_size_figure  # noqa: E402
from concepts.cad.service import EditSpec, attributed_on, block_mass, concept_prompt, default_scenes, run_edit, top_components  # noqa: E402
from concepts.cad.uce import change_by_block  # noqa: E402
from concepts.cad.uce_prompts import attribute_peers  # noqa: E402
from concepts.errors import ConceptLabError, InvalidInputError, UnknownNameError, one_line  # noqa: E402
from concepts.evolution import run_evolution  # noqa: E402
from concepts.evolution_figures import (  # noqa: E402
    composition_image, composition_legend, composition_strip, decided_figure, decisions, default_concepts,
    emergence_figure, evolution_record, heatmap_grid, save_gif, save_json, save_strip,
)
from concepts.explore import heatmap_overlay, run_explore, search_concepts  # noqa: E402
from concepts.readers import edit_rates, world_reader  # noqa: E402
from concepts.icons import MAX_ICONS, run_icons  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402
from concepts.service import SHARED_PIPELINES, run_generation  # noqa: E402
from concepts.steer_service import SAES, SteerSpec, run_steering, sae_stage  # noqa: E402
from concepts.steering import CELLS, QUADRANTS, default_strength  # noqa: E402
from concepts.steps import StepWindow  # noqa: E402
from concepts.top_images import world_top_images  # noqa: E402

try:  # ZeroGPU Spaces: GPU work must run inside functions decorated with spaces.GPU
    import spaces

    gpu = spaces.GPU
except ImportError:  # everywhere else the decorator is a no-op

    def gpu(fn):
        return fn


quiet_libraries()
REGISTRY = load_registry()
DEVICE = os.environ.get("CONCEPT_LAB_DEVICE", "auto")
# Small toy images are shown enlarged with crisp pixels; the file itself keeps its true size.
CSS = ".pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"
WINDOWS = ["early", "middle", "final", "all"]
PAINTED = "painted mask"
WHERE_CHOICES = ["global", *CELLS, *QUADRANTS, PAINTED]


def as_number(value: object, field: str) -> float:
    """A float from whatever a widget or an API client sends (None, text, a list ...), or a message."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise InvalidInputError(field, "is empty")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(field, f"must be a number, got {repr(value)[:40]}") from None


def as_int(value: object, field: str) -> int:
    """A whole number from a UI widget (which may hand over a float, None or NaN)."""
    number = as_number(value, field)
    if not math.isfinite(number) or number != int(number):
        raise InvalidInputError(field, f"must be a whole number, got {repr(value)[:40]}")
    return int(number)


def as_float(value: object, field: str) -> float:
    number = as_number(value, field)
    if not math.isfinite(number):
        raise InvalidInputError(field, f"must be a finite number, got {repr(value)[:40]}")
    return number


@gpu
def generate_image(model: str, prompt: str, seed: float, steps: float, guidance: float):
    """Generate one image; returns (image, a line describing what was run)."""
    try:
        outcome = run_generation(
            model,
            prompt,
            seed=as_int(seed, "seed"),
            steps=as_int(steps, "steps"),
            guidance=as_float(guidance, "guidance"),
            device=DEVICE,
            registry=REGISTRY,
        )
    except ConceptLabError as exc:
        raise gr.Error(one_line(exc)) from None
    for warning in outcome.warnings:
        gr.Warning(warning)
    r = outcome.request
    info = f"**{outcome.world.title}** · seed {r.seed} · {r.steps} DDIM steps · guidance {r.guidance:g} · {r.width}×{r.height} px · {outcome.seconds:.2f} s"
    return outcome.result.images[0], info


def model_defaults(model: str):
    """When the model changes, show its own default steps and guidance."""
    try:
        world = REGISTRY.get(model)
    except ConceptLabError as exc:
        raise gr.Error(one_line(exc)) from None
    return gr.update(value=world.defaults.steps), gr.update(value=world.defaults.guidance)


def progress_callback(progress: gr.Progress | None) -> Callable[[float, str], None] | None:
    """The core's progress callback, shown as Gradio's progress bar."""
    if progress is None:
        return None
    return lambda fraction, what: progress(fraction, desc=what)


def user_errors(fn: Callable) -> Callable:
    """Turn the core's errors into messages the user sees (gr.Error), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConceptLabError as exc:
            raise gr.Error(one_line(exc)) from None

    return wrapper


# -- Steer tab -------------------------------------------------------------------------------------
def parse_features(text: str | None) -> tuple[int, ...]:
    """"12, 40 7" → (12, 40, 7); a word that is not a whole number is named in the message."""
    ids = []
    for word in (text or "").replace(",", " ").split():
        if not word.lstrip("-").isdigit():
            raise InvalidInputError("features", f"{word!r} is not a feature id (whole numbers, separated by commas)")
        ids.append(int(word))
    return tuple(ids)


def painted_mask(painting: dict | None) -> torch.Tensor:
    """The painted pixels of an ImageEditor value (any layer's alpha) as an [H, W] mask."""
    layers = (painting or {}).get("layers") or []
    arrays = [np.asarray(layer) for layer in layers if layer is not None]
    if not arrays:
        raise InvalidInputError("mask", "is empty: paint where to steer on the image, or choose a preset region")
    alphas = [a[..., 3] if a.ndim == 3 and a.shape[-1] == 4 else (a.max(axis=-1) if a.ndim == 3 else a) for a in arrays]
    return torch.from_numpy(np.maximum.reduce([x.astype(np.float32) for x in alphas]))


def sae_dictionary(model: str, block: str, window: str, steps: int):
    """The concept dictionary of the SAE that serves (block, window) at `steps` steps."""
    world = REGISTRY.get(model)
    stage = sae_stage(StepWindow.parse(window, steps), steps)
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    return SAES.get(world, block, stage, "cond", pipe.unet), stage


@user_errors
def model_blocks(model: str):
    """When the model changes: its SAE blocks (mid block first, as in the paper)."""
    blocks = REGISTRY.get(model).blocks
    value = next((b for b in blocks if b.startswith("mid_block")), blocks[0] if blocks else None)
    return gr.update(choices=blocks, value=value)


def model_window(model: str):
    """When the model changes: "all" for models whose SAEs serve every step (SAeUron, one-step
    SDXL-Turbo, where no middle stage exists), else the paper's middle window."""
    world = REGISTRY.get(model)
    every_step = world.defaults.steps < 3 or (world.saes and all(e.window == "all" for e in world.saes))
    return gr.update(value="all" if every_step else "middle")


@user_errors
def concept_choices(model: str, block: str, window: str, steps: float):
    """The concept labels of the SAE the chosen block and window use (the concept picker)."""
    if not block:
        return gr.update(choices=[], value=None)
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    labels = sorted((loaded.concepts or {}).get("concepts", {}))
    return gr.update(choices=labels, value=None)


@user_errors
def steer_strength(model: str, window: str, where: str):
    """The model's default β for the window and the mode (spatial when a region is chosen)."""
    return default_strength(str(window), where != "global", REGISTRY.get(model).defaults.strengths)


@gpu
@user_errors
def explore_image(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, window: str):
    """Generate and read the block: image, top features table, heatmap of the top one, state, info."""
    outcome = run_explore(
        model, prompt, block, str(window), seed=as_int(seed, "seed"), steps=as_int(steps, "steps"),
        guidance=as_float(guidance, "guidance"), device=DEVICE, registry=REGISTRY,
    )
    for warning in outcome.warnings:
        gr.Warning(warning)
    rows = [[f.id, f.label or "", round(f.mean, 4), round(f.peak, 4)] for f in outcome.top]
    state = {"model": outcome.world.name, "block": outcome.block, "stage": outcome.stage, "image": outcome.image, "maps": outcome.maps}
    first = outcome.top[0].id if outcome.top else 0
    heat = heatmap_overlay(outcome.image, outcome.maps[..., first])
    names = sorted({f.label for f in outcome.top if f.label})
    info = (f"{outcome.block} · SAE of the **{outcome.stage}** stage · window {outcome.window} · "
            f"{outcome.maps.shape[0]}×{outcome.maps.shape[1]} grid · {outcome.seconds:.2f} s · "
            + (f"named here: {', '.join(names)}" if names else "no named feature fires clearly here; search the concepts below"))
    editor = {"background": outcome.image, "layers": [], "composite": outcome.image}
    return outcome.image, rows, heat, first, state, info, editor


@user_errors
def feature_heatmap(state: dict | None, feature: float):
    """The chosen feature's map over the last explored image."""
    if not state:
        raise InvalidInputError("feature", "generate and explore an image first")
    index = as_int(feature, "feature")
    count = state["maps"].shape[-1]
    if not 0 <= index < count:
        raise InvalidInputError("feature", f"{index} is outside this SAE's 0..{count - 1}")
    return heatmap_overlay(state["image"], state["maps"][..., index])


def pick_table_row(evt: gr.SelectData):
    """Clicking a row of the top-features table shows that feature's heatmap."""
    row = evt.row_value or []
    return int(row[0]) if row else gr.update()


@user_errors
def find_concepts(model: str, block: str, window: str, steps: float, query: str):
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    found = search_concepts(loaded.concepts, query or "")
    if not found:
        raise InvalidInputError("concept", f"no label contains {query!r}")
    return [[label, ", ".join(map(str, ids))] for label, ids in found]


@gpu
@user_errors
def steer_image(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, window: str,
                concept: str | None, feature_text: str, where: str, painting: dict | None, strength: float, branch: str):
    """Baseline and steered images from one seed, the difference heatmap and what was applied."""
    features = parse_features(feature_text)
    concept = (concept or "").strip() or None
    if where not in WHERE_CHOICES:
        raise InvalidInputError("region", f"{where!r} is not one of {', '.join(WHERE_CHOICES)}")
    mask = painted_mask(painting) if where == PAINTED else None
    spec = SteerSpec(block=block, window=str(window), strength=as_float(strength, "strength"), concept=concept,
                     features=features, region=None if mask is not None else where, mask=mask, branch=branch)
    outcome = run_steering(model, prompt, spec, seed=as_int(seed, "seed"), steps=as_int(steps, "steps"),
                           guidance=as_float(guidance, "guidance"), device=DEVICE, registry=REGISTRY)
    for warning in outcome.warnings:
        gr.Warning(warning)
    change = outcome.change[0].numpy()
    diff = heatmap_overlay(outcome.baseline.images[0], change, opacity=0.75)
    plan = outcome.plan
    what = f"concept **{concept}**" if concept else "features"
    info = (f"Steered {what} {list(plan.features)} at {plan.block} · {plan.mode} ({where}) · steps {plan.window} "
            f"(SAE of the {outcome.stage} stage) · β {plan.strength:g} · branch {plan.branch} · "
            f"mean pixel change {float(change.mean()):.4f} · {outcome.seconds:.2f} s")
    return outcome.baseline.images[0], outcome.steered.images[0], diff, info


@gpu
@user_errors
def icon_gallery(model: str, block: str, window: str, steps: float, count: float):
    """Icons of the SAE's labelled features (then the most frequent ones), captioned id · label."""
    loaded, stage = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    wanted = as_int(count, "icons")
    if not 1 <= wanted <= MAX_ICONS:
        raise InvalidInputError("icons", f"must be in 1..{MAX_ICONS}, got {wanted}")
    rows = (loaded.concepts or {}).get("features", [])
    rows = sorted(rows, key=lambda f: (not f.get("labelled"), -f.get("frequency", 0.0)))
    chosen = [(int(f["id"]), f.get("label") if f.get("labelled") else None) for f in rows[:wanted]]
    if not chosen:
        chosen = [(i, None) for i in range(min(wanted, loaded.sae.num_latents))]
    images = run_icons(model, block, stage, [f for f, _ in chosen], device=DEVICE, registry=REGISTRY)
    return [(image, f"#{f} · {label}" if label else f"#{f}") for image, (f, label) in zip(images, chosen)]


@user_errors
def top_image_gallery(model: str, block: str, window: str, steps: float, feature: float):
    """The cached images where the feature fired most, captioned with prompt and activation."""
    world = REGISTRY.get(model)
    stage = sae_stage(StepWindow.parse(str(window), as_int(steps, "steps")), as_int(steps, "steps"))
    tops = world_top_images(world).for_feature((block, stage, "cond"), as_int(feature, "feature"))
    if not tops:
        raise InvalidInputError("feature", "never fired on the cached images")
    return [(t.image, f"{t.value:.3f} · {t.prompt}") for t in tops]


# -- Evolution tab ---------------------------------------------------------------------------------
def step_view(state: dict, step: int):
    """What the scrubber shows at one step: preview, composition map, its legend, the top concepts."""
    evo, block = state["evolution"], state["block"]
    index = max(0, min(int(step), len(evo.previews) - 1))
    legend = " ".join(f"<span style='color:{colour}'>■</span> {label}" for label, colour in composition_legend(evo.traces[block], index))
    rows = [[c.label, round(c.score, 4), c.block] for c in evo.top_concepts(index, 8)]
    preview = evo.previews[index].resize((256, 256), Image.NEAREST)
    return preview, composition_image(evo, block, index), f"Step {index} · dominant concept per position at {block}: {legend}", rows


def world_concepts(world) -> list[str]:
    """The concept labels of every cond-branch SAE of a model world."""
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    labels = set()
    for entry in world.saes:
        if entry.branch == "cond":
            labels.update(((SAES.get(world, entry.block, entry.window, "cond", pipe.unet).concepts or {}).get("concepts", {})))
    return sorted(labels)


@user_errors
def evolution_concepts(model: str):
    """The concept labels of every SAE of the model (the curve picker)."""
    return gr.update(choices=world_concepts(REGISTRY.get(model)), value=[])


@gpu
@user_errors
def follow_evolution(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, concepts: list[str] | None,
                     progress: gr.Progress = gr.Progress()):
    """One generation followed step by step: everything the Evolution tab shows, and the files to download."""
    world = REGISTRY.get(model)
    chosen = [str(c) for c in (concepts or [])] or None
    if chosen:
        known = world_concepts(world)
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise UnknownNameError("concept", ", ".join(unknown), known)
    if block not in world.blocks:
        raise UnknownNameError("block", str(block), world.blocks)
    evo = run_evolution(model, prompt, seed=as_int(seed, "seed"), steps=as_int(steps, "steps"), guidance=as_float(guidance, "guidance"),
                        reader=world_reader(world), device=DEVICE, registry=REGISTRY, progress=progress_callback(progress))
    for warning in evo.warnings:
        gr.Warning(warning)
    if block not in evo.traces:
        raise InvalidInputError("block", f"{block!r} is not one of {', '.join(evo.traces)}")
    shown = chosen or default_concepts(evo, block)
    decided = decisions(evo, block)
    emergence, decided_plot = emergence_figure(evo, chosen), decided_figure(decided, len(evo.previews))
    folder = Path(tempfile.mkdtemp(prefix="concept-lab-evolution-"))
    record = evolution_record(evo, [f"step_{i:03d}.png" for i in range(len(evo.previews))])
    record["decided_at_by_source"] = decided
    files = [str(save_gif(evo.previews, folder / "evolution.gif")), str(save_strip(evo.previews, folder / "previews.png")),
             str(save_json(record, folder / "evolution.json"))]
    state = {"evolution": evo, "block": block}
    last = len(evo.previews) - 1
    preview, composition, legend, rows = step_view(state, last)
    first = {source: {k: v for k, v in d.items() if v is not None} for source, d in decided.items()}
    summary = "; ".join(f"{source}: " + (", ".join(f"{k} at step {v}" for k, v in sorted(d.items(), key=lambda kv: kv[1])) or "nothing readable") for source, d in first.items())
    info = f"{len(evo.previews)} steps in {evo.seconds:.2f} s. Decided (the step from which the reading stays final) — {summary}"
    gallery = [(p, f"step {i}") for i, p in enumerate(evo.previews)]
    return (state, gr.update(maximum=last, value=last), preview, composition, legend, rows, gallery, emergence, decided_plot,
            heatmap_grid(evo, block, shown), composition_strip(evo, block), files, info)


@user_errors
def scrub_evolution(state: dict | None, step: float):
    if not state:
        raise InvalidInputError("step", "follow a generation first")
    return step_view(state, as_int(step, "step"))


# -- Erase / amplify tab ---------------------------------------------------------------------------
def prompt_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def judged_summary(world, concept: str, outcome) -> str:
    """On a world with a judge (toy): how often the concept is seen before and after."""
    reader = world_reader(world)
    if reader is None or not outcome.concept_before:
        return ""
    rates = edit_rates(reader, concept, outcome)
    before, after, kept = rates["concept_rate_before"], rates["concept_rate_after"], rates["kept_attributes_unchanged"]
    text = f" The judge sees **{concept}** in {before:.0%} of the images before and {after:.0%} after."
    return text + (f" The other prompts' images keep {kept:.0%} of their attributes." if kept is not None else "")


@gpu
@user_errors
def edit_concept(model: str, concept: str, action: str, ratio: float, mode: str, concept_prompt_text: str, kept_text: str, seed: float, images: float, keep_text: str = "",
                 scope: str | None = None, scenes: float | None = None, contrast: str = "mean", protect: str = "presence", method: str = "cad",
                 progress: gr.Progress = gr.Progress()):
    """Erase or amplify: before/after galleries for the concept and for other prompts, where, and how much."""
    world = REGISTRY.get(model)
    count = as_int(images, "images")
    if not 1 <= count <= 8:
        raise InvalidInputError("images", f"must be in 1..8, got {count}")
    keep = tuple(k.strip() for k in (keep_text or "").split(",") if k.strip())
    spec = EditSpec(concept=concept or "", action=action, ratio=as_float(ratio, "ratio"), mode=mode, concept_prompt=concept_prompt_text or None, keep=keep, scope=scope or None,
                    scenes=None if scenes is None else as_int(scenes, "scenes"), contrast=contrast or "mean", protect=protect or "presence",
                    method=method or "cad")
    prompt = concept_prompt(world, spec)
    outcome = run_edit(model, spec, images=count, kept_prompts=prompt_lines(kept_text) or None,
                       seed=as_int(seed, "seed"), device=DEVICE, registry=REGISTRY, progress=progress_callback(progress))
    shown = outcome.concept_prompts
    concept_gallery = ([(i, f"before · {p}") for i, p in zip(outcome.concept_before, shown)]
                       + [(i, f"after · {p}") for i, p in zip(outcome.concept_after, shown)])
    kept_gallery = [x for b, a, p in zip(outcome.kept_before, outcome.kept_after, outcome.kept_prompts) for x in ((b, f"before · {p}"), (a, f"after · {p}"))]
    plan = outcome.plan
    if plan.method == "uce":
        return concept_gallery, kept_gallery, *uce_summary(world, concept, keep, outcome)
    figure = block_mass_figure(block_mass(outcome.attribution.scores), plan.by_block(), f"Attribution of {attributed_on(outcome.spec, prompt)} ({action} objective, {mode})")
    rows = [[layer, r, c, round(v, 6)] for layer, r, c, v in top_components(outcome.attribution.scores, 10)]
    source = "cached scores" if outcome.attribution.cached else f"scores computed in {outcome.attribution.seconds:.1f} s"
    info = (f"{action.capitalize()}d **{concept}**: zeroed {plan.count:,} of {plan.total_weights:,} feed-forward weights "
            f"({plan.count / plan.total_weights:.2%}; ratio {outcome.ratio:g} {SCOPE_LABELS[plan.scope]})"
            + (kept_clause(keep, outcome.spec) if keep else "") + f", {source}, {outcome.seconds:.1f} s in all."
            + judged_summary(world, concept, outcome))
    return concept_gallery, kept_gallery, figure, rows, info


def uce_summary(world, concept: str, keep: tuple[str, ...], outcome) -> tuple:
    """UCE's chart (how far each block's K/V moved), its largest weight changes and the info line."""
    plan = outcome.plan
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    figure = edit_size_figure(change_by_block(pipe.unet, plan), f"UCE edit fitted on {outcome.attribution.prompt}")
    rows = [[layer, r, c, round(v, 6)] for layer, r, c, v in top_components({n: d.float().abs() for n, d in plan.removed.items()}, 10)]
    kept = ", ".join(keep or attribute_peers(world, concept)) or "the unconditional prompt only"
    info = (f"Erased **{concept}** with UCE: edited the {len(plan.removed)} cross-attention key/value matrices in closed form "
            f"({plan.count:,} weights; the table lists the largest changes), fitted on {outcome.attribution.prompt}, keeping {kept}; "
            f"fitted in {outcome.attribution.seconds:.1f} s, {outcome.seconds:.1f} s in all."
            + judged_summary(world, concept, outcome))
    return figure, rows, info


EDIT_LABELS = {
    "cad": {"plot": "Attribution mass per block", "top": "Top components", "score": "score",
            "scenes": "Scenes to attribute over (0: the concept prompt alone)",
            "scenes_info": "Toy worlds: the mean scores over fully specified scenes of the concept, kept concepts on the same scenes", "keep": "Concepts to keep, comma-separated (their weights are spared)"},
    "uce": {"plot": "Edit size per block (‖W′ − W‖ / ‖W‖ of its cross-attention K/V)", "top": "Largest weight changes", "score": "|change|",
            "scenes": "Scenes to fit over (0: the concept prompt alone)",
            "scenes_info": "Toy worlds: fully specified scenes of the concept sent to the same scenes in its neighbours, which are held", "keep": "Concepts to keep, comma-separated (held as they were)"},
}
"""What the Erase tab's widgets are called under each method: UCE fits an edit, CAD scores weights."""


@user_errors
def method_defaults(model: str, method: str):
    """The tab follows the method: UCE only erases and has no ratio, scope or attribution settings, so
    those are hidden and the action fixed; the scenes slider takes the method's default (UCE fits on
    more scenes than CAD attributes over), and the chart and table say what they show."""
    uce = method == "uce"
    labels = EDIT_LABELS["uce" if uce else "cad"]
    return (gr.update(value=default_scenes(REGISTRY.get(model), method), label=labels["scenes"], info=labels["scenes_info"]),
            gr.update(value="erase", interactive=False) if uce else gr.update(interactive=True),
            gr.update(visible=not uce),
            gr.update(label=labels["plot"]),
            gr.update(label=labels["top"], headers=["layer", "row", "column", labels["score"]]),
            gr.update(label=labels["keep"]))


def kept_clause(keep: tuple[str, ...], spec: EditSpec) -> str:
    """How the info line says what the kept concepts' scores spared."""
    names, how = ", ".join(keep), "the max of their" if spec.contrast == "max" else "their mean"
    if spec.protect == "identity":
        return f", sparing what tells {names} apart ({how} identity scores)"
    return f", sparing what {names} need ({how} scores)"


@user_errors
def model_edit_defaults(model: str, method: str = "cad"):
    world = REGISTRY.get(model)
    return (gr.update(value=world.defaults.edit_ratio), gr.update(value="\n".join(world.examples[1:3])), gr.update(value=world.defaults.edit_scope),
            gr.update(value=", ".join(world.defaults.edit_keep)),
            gr.update(value=default_scenes(world, method), visible=world.defaults.toy_scenes))


def sampling_inputs(world, example: str, prefix: str = ""):
    """Prompt, seed, steps and guidance widgets (each tab has its own; ids start with `prefix`)."""
    prompt = gr.Textbox(label="Prompt", value=example, elem_id=f"{prefix}prompt")
    with gr.Row():
        seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id=f"{prefix}seed")
        steps = gr.Slider(1, 100, value=world.defaults.steps, step=1, label="Denoising steps", elem_id=f"{prefix}steps")
        guidance = gr.Slider(0, 20, value=world.defaults.guidance, step=0.5, label="Guidance", elem_id=f"{prefix}guidance")
    return prompt, seed, steps, guidance


def build_app() -> gr.Blocks:
    default = REGISTRY.get()
    blocks = default.blocks
    default_block = next((b for b in blocks if b.startswith("mid_block")), blocks[0] if blocks else None)
    example = default.examples[0] if default.examples else ""
    with gr.Blocks(title="Concept Lab") as demo:
        gr.Markdown(
            "# Concept Lab\nSee, steer and erase the concepts inside a text-to-image diffusion model. "
            "The default model is tiny and runs on a CPU in seconds."
        )
        model = gr.Dropdown(
            choices=[(REGISTRY.get(n).title, n) for n in REGISTRY.names], value=default.name, label="Model", elem_id="model",
        )
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt, seed, steps, guidance = sampling_inputs(default, example, "")
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column():
                    image = gr.Image(label="Image", type="pil", format="png", elem_id="image", elem_classes="pixelated", height=320)
                    info = gr.Markdown(elem_id="info")
            if default.examples:
                gr.Examples(examples=[[e] for e in default.examples], inputs=[prompt])

        with gr.Tab("Steer", elem_id="steer-tab"):
            gr.Markdown(
                "Sparse autoencoders (SAEs) split what a UNet block adds to the image into features. "
                "**Explore** which features fire where, then **steer**: push a concept's features into a region "
                "(layout, early steps) or over the whole image (style, middle and final steps)."
            )
            explored = gr.State(None)
            with gr.Row():
                with gr.Column():
                    s_prompt, s_seed, s_steps, s_guidance = sampling_inputs(default, example, "steer-")
                    with gr.Row():
                        block = gr.Dropdown(choices=blocks, value=default_block, label="Block", elem_id="steer-block")
                        window = gr.Dropdown(
                            choices=WINDOWS, value="middle", allow_custom_value=True, elem_id="steer-window",
                            label="Denoising window (early, middle, final, all, or steps A:B)",
                        )
                    explore = gr.Button("Generate and explore", variant="primary", elem_id="explore")
                    explore_info = gr.Markdown(elem_id="explore-info")
                with gr.Column():
                    with gr.Row():
                        explored_image = gr.Image(label="Image", type="pil", format="png", elem_id="explored", elem_classes="pixelated", height=256)
                        heatmap = gr.Image(label="Feature heatmap", type="pil", format="png", elem_id="heatmap", height=256)
                    with gr.Row():
                        heat_feature = gr.Number(label="Feature", value=0, precision=0, minimum=0, elem_id="heat-feature")
                        show_heat = gr.Button("Show heatmap", elem_id="show-heatmap")
            top_table = gr.Dataframe(
                headers=["feature", "label", "mean", "peak"],
                label="Top features: the strongest, plus up to half named ones that clearly fire (click a row for its heatmap)",
                interactive=False, elem_id="top-features",
            )
            with gr.Row():
                query = gr.Textbox(label="Search concepts by label", placeholder="red, striped, top left ...", elem_id="concept-query")
                search = gr.Button("Search", elem_id="concept-search")
            found = gr.Dataframe(headers=["concept", "features"], label="Concepts found", interactive=False, elem_id="concepts-found")

            gr.Markdown("### Steer")
            with gr.Row():
                with gr.Column():
                    concept = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label="Concept", elem_id="steer-concept")
                    feature_text = gr.Textbox(label="...or feature ids", placeholder="12, 40", elem_id="steer-features")
                    where = gr.Dropdown(choices=WHERE_CHOICES, value="global", label="Where", elem_id="steer-where")
                    painter = gr.ImageEditor(
                        label="Paint where to steer (choose 'painted mask' above)", type="numpy", elem_id="painter",
                        brush=gr.Brush(colors=["#ff3030"], default_size=8), height=256,
                    )
                    with gr.Row():
                        strength = gr.Number(label="Strength β", value=default_strength("middle", False, default.defaults.strengths), elem_id="steer-strength")
                        branch = gr.Radio(["cond", "both"], value="cond", label="CFG branch", elem_id="steer-branch")
                    steer = gr.Button("Steer", variant="primary", elem_id="steer")
                with gr.Column():
                    with gr.Row():
                        baseline = gr.Image(label="Baseline", type="pil", format="png", elem_id="baseline", elem_classes="pixelated", height=200)
                        steered = gr.Image(label="Steered", type="pil", format="png", elem_id="steered", elem_classes="pixelated", height=200)
                        difference = gr.Image(label="Difference", type="pil", format="png", elem_id="difference", height=200)
                    steer_info = gr.Markdown(elem_id="steer-info")
            with gr.Accordion("Feature icons: what each feature draws on its own", open=False):
                with gr.Row():
                    icon_count = gr.Number(label="Icons", value=16, precision=0, minimum=1, maximum=MAX_ICONS, elem_id="icon-count")
                    show_icons = gr.Button("Show icons", elem_id="show-icons")
                icons = gr.Gallery(label="Feature icons (labelled features first)", columns=8, height="auto", elem_id="icons")
            with gr.Accordion("Top images: where a feature fires most", open=False):
                with gr.Row():
                    top_feature = gr.Number(label="Feature", value=0, precision=0, minimum=0, elem_id="top-feature")
                    show_top = gr.Button("Show top images", elem_id="show-top")
                top_images = gr.Gallery(label="Top images (activation · prompt)", columns=8, height="auto", elem_id="top-images")


        with gr.Tab("Evolution", elem_id="evolution-tab"):
            gr.Markdown(
                "Follow one generation through its denoising steps: the model's guess of the final image at every "
                "step (the predicted x0), which concepts its SAE features see, and from which step each attribute "
                "is settled. In Stable Diffusion the layout is decided first, style in the middle, texture last."
            )
            evolution = gr.State(None)
            with gr.Row():
                with gr.Column():
                    e_prompt, e_seed, e_steps, e_guidance = sampling_inputs(default, example, "evolve-")
                    with gr.Row():
                        e_block = gr.Dropdown(choices=blocks, value=default_block, label="Block for heatmaps and composition", elem_id="evolve-block")
                        e_concepts = gr.Dropdown(choices=[], value=[], multiselect=True, label="Concepts to plot (empty: the strongest)", elem_id="evolve-concepts")
                    follow = gr.Button("Follow the denoising", variant="primary", elem_id="follow")
                    evolve_info = gr.Markdown(elem_id="evolve-info")
                with gr.Column():
                    step = gr.Slider(0, default.defaults.steps - 1, value=0, step=1, label="Step", elem_id="evolve-step")
                    with gr.Row():
                        step_preview = gr.Image(label="Predicted x0 at this step", type="pil", format="png", elem_id="step-preview", elem_classes="pixelated", height=256)
                        step_composition = gr.Image(label="Dominant concept per position", type="pil", format="png", elem_id="step-composition", height=256)
                    step_legend = gr.Markdown(elem_id="step-legend")
                    step_top = gr.Dataframe(headers=["concept", "score", "block"], label="Top concepts at this step", interactive=False, elem_id="step-top")
            previews = gr.Gallery(label="Every step's preview", columns=13, height=200, elem_id="previews")
            curves = gr.Plot(label="Concept emergence", elem_id="curves")
            with gr.Row():
                decided_plot = gr.Plot(label="When is it decided?", elem_id="decided")
                grid = gr.Image(label="Concept heatmaps: steps × concepts", type="pil", format="png", elem_id="heatmap-grid")
            composition = gr.Image(label="Composition maps through the steps", type="pil", format="png", elem_id="composition-strip")
            downloads = gr.File(label="Downloads: animated GIF, preview strip, per-step JSON", file_count="multiple", elem_id="evolve-files")


        with gr.Tab("Erase / amplify", elem_id="edit-tab"):
            gr.Markdown(
                "Component attribution (CAD) scores every feed-forward weight of the UNet's transformer blocks by how much "
                "removing it would weaken (erase) or strengthen (amplify) a concept. Zeroing the top-scored weights at "
                "inference time erases or amplifies the concept; prompts of other concepts show what is kept. Nothing in the "
                "shared model changes: the edit lives in your request. Concepts to keep have their scores subtracted, so weights "
                "they need are spared: on the toy model that helps amplify (amplify *striped*, keep the other textures). "
                "For erase, spare their *identity* instead (what tells each kept concept from the others), with the *max*: "
                "erasing red there moves red towards orange, and sparing presence alone lets orange drift to yellow "
                "(identity keeps orange, but erases less red). "
                "**UCE** erases differently: it edits the cross-attention keys and values (the only UNet weights that read the "
                "prompt) in closed form, sending the concept's text embeddings to its neighbours' mean and holding the kept "
                "concepts' own. On toy-shapes it takes red off every red prompt and leaves the other colours as they were. "
                "On toy-shapes the concept's images come from fully specified prompts that name it (at small ratios a short "
                "prompt such as *a red shape* loses red sooner); a concept prompt of your own is shown as typed."
            )
            with gr.Row():
                with gr.Column():
                    c_concept = gr.Textbox(label="Concept", value="red", placeholder="red, striped, dog, Van Gogh ...", elem_id="edit-concept")
                    gr.Examples(examples=[["red"], ["striped"], ["large"], ["blue"], ["dog"], ["Van Gogh"]], inputs=[c_concept], label="Concepts (toy first, then SD1.4)")
                    c_method = gr.Radio([("CAD: zero the top-attributed feed-forward weights", "cad"), ("UCE: closed-form cross-attention edit (erase)", "uce")],
                                        value="cad", label="Method", elem_id="edit-method")
                    c_action = gr.Radio(["erase", "amplify"], value="erase", label="Action", elem_id="edit-action")
                    c_keep = gr.Textbox(label=EDIT_LABELS["cad"]["keep"], placeholder="blue, green", value=", ".join(default.defaults.edit_keep), elem_id="edit-keep")
                    with gr.Column(elem_id="edit-cad-settings") as c_cad_settings:
                        c_mode = gr.Radio(["fast", "faithful"], value="fast", label="Attribution", elem_id="edit-mode")
                        with gr.Row():
                            c_ratio = gr.Slider(0.0005, 0.2, value=default.defaults.edit_ratio, step=0.0005, label="Share of weights zeroed", elem_id="edit-ratio", scale=2)
                            c_scope = gr.Radio([(label, scope) for scope, label in SCOPE_LABELS.items()], value=default.defaults.edit_scope,
                                               label="Top weights taken", elem_id="edit-scope", scale=1)
                        with gr.Row():
                            c_protect = gr.Radio([("presence (what each needs)", "presence"), ("identity (what tells them apart; erase)", "identity")], value="presence",
                                                 label="What of the kept concepts to spare", elem_id="edit-protect")
                            c_contrast = gr.Radio([("mean", "mean"), ("max (spares more)", "max")], value="mean", label="Subtract the kept concepts' scores", elem_id="edit-contrast")
                    c_scenes = gr.Slider(0, 8, value=default.defaults.edit_scenes, step=1, label=EDIT_LABELS["cad"]["scenes"],
                                         info=EDIT_LABELS["cad"]["scenes_info"],
                                         visible=default.defaults.toy_scenes, elem_id="edit-scenes")
                    c_prompt = gr.Textbox(label="Concept prompt (empty: the model's template)", placeholder=default.defaults.concept_template, elem_id="edit-prompt")
                    c_kept = gr.Textbox(label="Prompts of other concepts, one per line (what should be kept)",
                                        value="\n".join(default.examples[1:3]), lines=3, elem_id="edit-kept")
                    with gr.Row():
                        c_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="edit-seed")
                        c_images = gr.Number(label="Images of the concept", value=4, precision=0, minimum=1, maximum=8, elem_id="edit-images")
                    c_run = gr.Button("Apply", variant="primary", elem_id="edit-run")
                with gr.Column():
                    c_info = gr.Markdown(elem_id="edit-info")
                    c_concept_gallery = gr.Gallery(label="The concept: before and after", columns=4, height="auto", elem_id="edit-concept-gallery")
                    c_kept_gallery = gr.Gallery(label="Other concepts: before and after (kept?)", columns=4, height="auto", elem_id="edit-kept-gallery")
            with gr.Row():
                c_plot = gr.Plot(label=EDIT_LABELS["cad"]["plot"], elem_id="edit-mass")
                c_top = gr.Dataframe(headers=["layer", "row", "column", EDIT_LABELS["cad"]["score"]], label=EDIT_LABELS["cad"]["top"], interactive=False, elem_id="edit-top")

        for tab_steps, tab_guidance in ((steps, guidance), (s_steps, s_guidance), (e_steps, e_guidance)):
            model.change(model_defaults, inputs=model, outputs=[tab_steps, tab_guidance], api_visibility="private")
        model.change(model_blocks, inputs=model, outputs=block, api_visibility="private")
        model.change(model_window, inputs=model, outputs=window, api_visibility="private")
        run.click(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_name="generate")
        prompt.submit(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_visibility="private")

        sae_inputs = [model, block, window, s_steps]
        for trigger in (block.change, window.change, demo.load):
            trigger(concept_choices, inputs=sae_inputs, outputs=concept, api_visibility="private")
        for trigger in (model.change, window.change, where.change):
            trigger(steer_strength, inputs=[model, window, where], outputs=strength, api_visibility="private")
        explore.click(
            explore_image, inputs=[model, s_prompt, s_seed, s_steps, s_guidance, block, window],
            outputs=[explored_image, top_table, heatmap, heat_feature, explored, explore_info, painter], api_name="explore",
        )
        show_heat.click(feature_heatmap, inputs=[explored, heat_feature], outputs=heatmap, api_visibility="private")
        top_table.select(pick_table_row, outputs=heat_feature, api_visibility="private").then(
            feature_heatmap, inputs=[explored, heat_feature], outputs=heatmap, api_visibility="private"
        )
        search.click(find_concepts, inputs=[*sae_inputs, query], outputs=found, api_name="search_concepts")
        query.submit(find_concepts, inputs=[*sae_inputs, query], outputs=found, api_visibility="private")
        steer.click(
            steer_image,
            inputs=[model, s_prompt, s_seed, s_steps, s_guidance, block, window, concept, feature_text, where, painter, strength, branch],
            outputs=[baseline, steered, difference, steer_info], api_name="steer",
        )
        show_icons.click(icon_gallery, inputs=[*sae_inputs, icon_count], outputs=icons, api_name="icons")
        show_top.click(top_image_gallery, inputs=[*sae_inputs, top_feature], outputs=top_images, api_name="top_images")
        model.change(model_blocks, inputs=model, outputs=e_block, api_visibility="private")
        for trigger in (model.change, demo.load):
            trigger(evolution_concepts, inputs=model, outputs=e_concepts, api_visibility="private")
        follow.click(
            follow_evolution, inputs=[model, e_prompt, e_seed, e_steps, e_guidance, e_block, e_concepts],
            outputs=[evolution, step, step_preview, step_composition, step_legend, step_top, previews, curves, decided_plot, grid, composition, downloads, evolve_info],
            api_name="evolve",
        )
        step.change(scrub_evolution, inputs=[evolution, step], outputs=[step_preview, step_composition, step_legend, step_top], api_visibility="private")
        model.change(model_edit_defaults, inputs=[model, c_method], outputs=[c_ratio, c_kept, c_scope, c_keep, c_scenes], api_visibility="private")
        c_method.change(method_defaults, inputs=[model, c_method], outputs=[c_scenes, c_action, c_cad_settings, c_plot, c_top, c_keep], api_visibility="private")
        c_run.click(
            edit_concept, inputs=[model, c_concept, c_action, c_ratio, c_mode, c_prompt, c_kept, c_seed, c_images, c_keep, c_scope, c_scenes, c_contrast, c_protect, c_method],
            outputs=[c_concept_gallery, c_kept_gallery, c_plot, c_top, c_info], api_name="edit",
        )
    return demo


demo = build_app()


def launch_style() -> dict:
    """Look of the page, given at launch in Gradio 6 (tests and benchmarks launch with it too)."""
    return {"theme": gr.themes.Soft(), "css": CSS}


if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_style(),
    )
