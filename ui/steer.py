"""The Steer tab: explore which SAE features fire where in an image, then steer a concept's features
into a region (layout, early steps) or over the whole image (style, middle and final steps)."""

from __future__ import annotations

import gradio as gr

from concepts.errors import InvalidInputError
from concepts.heatmaps import heatmap_with_scale
from concepts.registry import ModelWorld
from concepts.saes import loading_notes
from concepts.steer.explore import run_explore
from concepts.steer.service import SteerSpec, run_steering
from concepts.steer.steering import CELLS, QUADRANTS, default_strength

from . import experiment, features, links, selection, texts
from .common import (
    HEAVY,
    progress_callback,
    STATE_TTL_S,
    DEVICE,
    REGISTRY,
    WINDOWS,
    as_float,
    as_int,
    default_block,
    first_example,
    gpu,
    model_blocks,
    model_defaults,
    sae_dictionary,
    sampling_inputs,
    user_errors,
)
from .concept_search import concept_choices, find_concepts
from .steer_inputs import PAINTED, painted_mask, parse_features

WHERE_CHOICES = ["global", *CELLS, *QUADRANTS, PAINTED]


@user_errors
def model_branch(model: str):
    """When the model changes: its default guidance branch (both on SAeUron's, as it edits)."""
    return gr.update(value=REGISTRY.get(model).defaults.steer_branch)


def opening_window(world) -> str:
    """"all" for models whose SAEs serve every step (SAeUron, one-step SDXL-Turbo, where no middle
    stage exists), else the paper's middle window."""
    every_step = world.defaults.steps < 3 or (world.saes and all(e.window == "all" for e in world.saes))
    return "all" if every_step else "middle"


def model_window(model: str):
    """When the model changes: the window it opens on (`opening_window`)."""
    return gr.update(value=opening_window(REGISTRY.get(model)))


@user_errors
def steer_strength(model: str, window: str, where: str):
    """The model's default β for the window and the mode (spatial when a region is chosen)."""
    return default_strength(str(window), where != "global", REGISTRY.get(model).defaults.strengths)


@gpu
@user_errors
def explore_image(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, window: str,
                  progress: gr.Progress = gr.Progress()):
    """Generate and read the block: image, top features table, heatmap of the top one, state, info."""
    outcome = run_explore(
        model, prompt, block, str(window), seed=as_int(seed, "seed"), steps=as_int(steps, "steps"),
        guidance=as_float(guidance, "guidance"), device=DEVICE, registry=REGISTRY, progress=progress_callback(progress),
    )
    for warning in outcome.warnings:
        gr.Warning(warning)
    rows = [[f.id, f.label or "", round(f.mean, 4), round(f.peak, 4)] for f in outcome.top]
    state = {"model": outcome.world.name, "block": outcome.block, "stage": outcome.stage, "image": outcome.image, "maps": outcome.maps}
    first = outcome.top[0].id if outcome.top else 0
    heat = heatmap_with_scale(outcome.image, outcome.maps[..., first])
    names = sorted({f.label for f in outcome.top if f.label})
    loaded, _ = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    info = (f"{outcome.block} · SAE of the **{outcome.stage}** stage · window {outcome.window} · "
            f"{outcome.maps.shape[0]}×{outcome.maps.shape[1]} grid · {outcome.seconds:.2f} s · "
            + (f"named here: {', '.join(names)}" if names else "no named feature fires clearly here; search the concepts below")
            + "".join(f" · SAE {note}" for note in loading_notes(loaded)))
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
    return heatmap_with_scale(state["image"], state["maps"][..., index])


@gpu
@user_errors
def steer_image(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, window: str,
                concept: str | None, feature_text: str, where: str, painting: dict | None, strength: float, branch: str,
                progress: gr.Progress = gr.Progress()):
    """Baseline and steered images from one seed, the difference heatmap and what was applied."""
    features = parse_features(feature_text)
    concept = (concept or "").strip() or None
    if where not in WHERE_CHOICES:
        raise InvalidInputError("region", f"{where!r} is not one of {', '.join(WHERE_CHOICES)}")
    mask = painted_mask(painting) if where == PAINTED else None
    spec = SteerSpec(block=block, window=str(window), strength=as_float(strength, "strength"), concept=concept,
                     features=features, region=None if mask is not None else where, mask=mask, branch=branch)
    outcome = run_steering(model, prompt, spec, seed=as_int(seed, "seed"), steps=as_int(steps, "steps"),
                           guidance=as_float(guidance, "guidance"), device=DEVICE, registry=REGISTRY, progress=progress_callback(progress))
    for warning in outcome.warnings:
        gr.Warning(warning)
    change = outcome.change[0].numpy()
    diff = heatmap_with_scale(outcome.baseline.images[0], change, opacity=0.75)
    plan = outcome.plan
    what = f"concept **{concept}**" if concept else "features"
    if where == "global" and plan.mode == "spatial":  # a searched place: its object features, steered in that cell
        where = f"{concept}: a place is the object's features, steered in that cell"
    info = (f"Steered {what} {list(plan.features)} at {plan.block} · {plan.mode} ({where}) · steps {plan.window} "
            f"(SAE of the {outcome.stage} stage) · β {plan.strength:g}"
            + (" × each feature's mean activation, as in the sdxl-unbox demo" if plan.feature_scale is not None else "")
            + f" · branch {plan.branch} · "
            f"mean pixel change {float(change.mean()):.4f} · {outcome.seconds:.2f} s")
    return outcome.baseline.images[0], outcome.steered.images[0], diff, info


def build(model: gr.Dropdown, default: ModelWorld, demo: gr.Blocks) -> None:
    """The tab's layout and events (inside the app's Blocks)."""
    blocks = default.blocks
    example = first_example(default)
    with gr.Tab("Steer", id="steer", elem_id="steer-tab"):
        gr.Markdown(
            "Sparse autoencoders (SAEs) split what a UNet block adds to the image into features. "
            "**Explore** which features fire where, then **steer**: push a concept's features into a region "
            "(the paper moves layout this way in the early steps) or over the whole image (style, in the middle steps)."
        )
        texts.glossary()
        with gr.Accordion("More: what the numbers mean", open=False):
            gr.Markdown(texts.STEER_MORE)
        explored = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Row():
            with gr.Column():
                s_prompt, s_seed, s_steps, s_guidance = sampling_inputs(default, example, "steer-")
                with gr.Row():
                    block = gr.Dropdown(choices=blocks, value=default_block(default), label="Block", elem_id="steer-block",
                                        info="where in the UNet the SAE reads")
                    window = gr.Dropdown(
                        choices=WINDOWS, value=opening_window(default), allow_custom_value=True, elem_id="steer-window",
                        label="Denoising window (early, middle, final, all, or steps A:B)", info="which steps it acts in; each window has its own SAE",
                    )
                explore = gr.Button("Generate and explore", variant="primary", elem_id="explore")
                explore_info = gr.Markdown(elem_id="explore-info")
            with gr.Column():
                with gr.Row():
                    explored_image = gr.Image(label="Image", type="pil", format="png", elem_id="explored", buttons=[], elem_classes="pixelated", height=256)
                    heatmap = gr.Image(label="Feature heatmap", type="pil", format="png", elem_id="heatmap", buttons=[], height=256)
                with gr.Row():
                    heat_feature = gr.Number(label="Feature", value=0, precision=0, minimum=0, elem_id="heat-feature")
                    show_heat = gr.Button("Show heatmap", elem_id="show-heatmap")
        top_table = gr.Dataframe(
            headers=["feature", "label (blank: none reaches 80 % precision)", "mean (over the image and window)", "peak (strongest position)"],
            label="Top features: the strongest, plus up to half named ones that clearly fire (click a row to select it for the heatmap, steering and top images)",
            interactive=False, elem_id="top-features",
        )
        with gr.Row():
            query = gr.Textbox(label="Search concepts by name", placeholder="large, dotted, triangle, white background, top left ...", elem_id="concept-query")
            search = gr.Button("Search", elem_id="concept-search")
        found = gr.Dataframe(headers=["concept", "features", "what it is"], label="Concepts found (click one to steer it)", interactive=False,
                             wrap=True, column_widths=["16%", "44%", "40%"], elem_id="concepts-found")

        gr.Markdown("### Steer")
        with gr.Row():
            with gr.Column():
                concept = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label="Concept", elem_id="steer-concept")
                feature_text = gr.Textbox(label="...or feature ids (of this block and window's SAE)", placeholder="12, 40", elem_id="steer-features")
                where = gr.Dropdown(choices=WHERE_CHOICES, value="global", label="Where", elem_id="steer-where",
                                    info="global: the whole image (style); a cell or painted mask: move the concept there")
                gr.Markdown("**Paint where to steer** (then choose *painted mask* under Where)")
                painter = gr.ImageEditor(  # cyan: no toy object or background has it
                    label="Paint where to steer", show_label=False, type="numpy", elem_id="painter",
                    brush=gr.Brush(colors=["#00e5ff"], default_size=8), height=256,
                    sources=(),  # its picture is the explored image: a student's own would not be what is steered
                )
                with gr.Row():
                    strength = gr.Number(label="Strength β", value=default_strength(opening_window(default), False, default.defaults.strengths), elem_id="steer-strength",
                                         info="how hard the edit pushes; the default is measured")
                    branch = gr.Radio(["cond", "both"], value=default.defaults.steer_branch, label="CFG branch", elem_id="steer-branch",
                                      info="cond: the prompt's half of guidance; both: also the other")
                steer = gr.Button("Steer", variant="primary", elem_id="steer")
            with gr.Column():
                with gr.Row():
                    baseline = gr.Image(label="Baseline", type="pil", format="png", elem_id="baseline", buttons=[], elem_classes="pixelated", height=256, interactive=False)
                    steered = gr.Image(label="Steered", type="pil", format="png", elem_id="steered", buttons=[], elem_classes="pixelated", height=256, interactive=False)
                    difference = gr.Image(label="Difference", type="pil", format="png", elem_id="difference", buttons=[], height=256)
                steer_info = gr.Markdown(elem_id="steer-info")
        sae_inputs = [model, block, window, s_steps]
        top_feature = features.build(sae_inputs)
        steer_inputs = [model, s_prompt, s_seed, s_steps, s_guidance, block, window, concept, feature_text, where, painter, strength, branch]
        links.panel("steer", "steer", [
            *links.sampling_fields(s_prompt, s_seed, s_steps, s_guidance),
            links.Field("block", block, links.choice("block", lambda world: world.blocks)),
            links.Field("window", window, links.text("window", 20)),
            links.Field("concept", concept, links.text("concept", 200)),
            links.Field("features", feature_text, links.text("features", 400)),
            links.Field("where", where, links.choice("where", lambda world: WHERE_CHOICES)),
            links.Field("mask", painter, links.mask_from_text("mask"), encode=links.mask_to_text),
            links.Field("strength", strength, links.real("strength", -10_000.0, 10_000.0)),
            links.Field("branch", branch, links.choice("branch", lambda world: ["cond", "both"])),
        ], run=(steer_image, steer_inputs, [baseline, steered, difference, steer_info]))
        download, experiment_file = experiment.download_row("steer")
    download.click(experiment.steer_experiment, inputs=[*steer_inputs, baseline, steered, steer_info], outputs=experiment_file, api_visibility="private")

    model.change(model_defaults, inputs=[model, s_prompt], outputs=[s_prompt, s_steps, s_guidance], api_visibility="private")
    model.change(model_blocks, inputs=model, outputs=block, api_visibility="private")
    model.change(model_window, inputs=model, outputs=window, api_visibility="private")
    model.change(model_branch, inputs=model, outputs=branch, api_visibility="private")
    for trigger in (block.change, window.change, demo.load):
        trigger(concept_choices, inputs=[*sae_inputs, concept], outputs=concept, api_visibility="private")
    # A user's change of window or region resets β to its default; a share link sets β with them.
    for trigger in (model.change, window.input, where.input):
        trigger(steer_strength, inputs=[model, window, where], outputs=strength, api_visibility="private")
    explore.click(
        explore_image, inputs=[model, s_prompt, s_seed, s_steps, s_guidance, block, window],
        outputs=[explored_image, top_table, heatmap, heat_feature, explored, explore_info, painter], api_name="explore", **HEAVY,
    )
    show_heat.click(feature_heatmap, inputs=[explored, heat_feature], outputs=heatmap, api_visibility="private")
    selection.wire(top_table=top_table, found=found, block=block, window=window, heat_feature=heat_feature, feature_text=feature_text,
                   concept=concept, top_feature=top_feature, show_heatmap=(feature_heatmap, [explored, heat_feature], heatmap),
                   where=where, strength=(steer_strength, [model, window, where], strength))
    search.click(find_concepts, inputs=[*sae_inputs, query], outputs=found, api_name="search_concepts")
    query.submit(find_concepts, inputs=[*sae_inputs, query], outputs=found, api_visibility="private")
    steer.click(
        steer_image,
        inputs=steer_inputs, outputs=[baseline, steered, difference, steer_info], api_name="steer", **HEAVY,
    )
