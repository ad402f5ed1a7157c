"""The Erase / amplify tab: CAD zeroes the feed-forward weights attributed to a concept (erase or
amplify), UCE edits the cross-attention keys and values in closed form (erase); before/after images
of the concept and of other prompts show what went and what was kept. Every edit lives in its request."""

from __future__ import annotations

import gradio as gr

from concepts.edit.ablation import SCOPE_LABELS
from concepts.edit.figures import block_mass_figure, edit_size_figure
from concepts.edit.rates import edit_rates
from concepts.edit.service import (
    EditSpec,
    attributed_on,
    block_mass,
    concept_prompt,
    default_scenes,
    run_edit,
    top_components,
)
from concepts.edit.uce import change_by_block
from concepts.edit.uce_prompts import attribute_peers
from concepts.errors import InvalidInputError
from concepts.generation import SHARED_PIPELINES
from concepts.registry import ModelWorld

from . import experiment, links, texts
from .common import (
    DEVICE,
    FIT,
    HEAVY,
    REGISTRY,
    as_float,
    as_int,
    gpu,
    progress_callback,
    user_errors,
)


def prompt_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def judged_summary(world, concept: str, outcome) -> str:
    """On a world with a judge (toy): how often the concept is seen before and after."""
    reader = world.knowledge.reader()
    if reader is None or not outcome.concept_before:
        return ""
    rates = edit_rates(reader, concept, outcome)
    before, after, kept = rates["concept_rate_before"], rates["concept_rate_after"], rates["kept_attributes_unchanged"]
    text = f" The judge sees **{concept}** in {before:.0%} of the images before and {after:.0%} after."
    return text + (f" The other prompts' images keep {kept:.0%} of their attributes." if kept is not None else "")


def before_after_pairs(before: list, after: list, prompts: list[str]) -> list[tuple]:
    """Gallery items in pairs, each prompt's image before the edit beside its image after: in two
    columns a row is one prompt."""
    return [x for b, a, p in zip(before, after, prompts) for x in ((b, f"before · {p}"), (a, f"after · {p}"))]


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
    concept_gallery = before_after_pairs(outcome.concept_before, outcome.concept_after, shown)
    kept_gallery = before_after_pairs(outcome.kept_before, outcome.kept_after, outcome.kept_prompts)
    plan = outcome.plan
    if plan.method == "uce":
        return concept_gallery, kept_gallery, *uce_summary(world, concept, keep, outcome)
    figure = block_mass_figure(block_mass(outcome.attribution.scores), plan.by_block(), f"Attribution of {attributed_on(outcome.spec, prompt)} ({action} objective, {outcome.spec.mode})")
    rows = [[layer, r, c, round(v, 6)] for layer, r, c, v in top_components(outcome.attribution.scores, 10)]
    source = "cached scores" if outcome.attribution.cached else f"scores computed in {outcome.attribution.seconds:.1f} s"
    info = (f"{PAST_TENSE[action]} **{concept}**: zeroed {plan.count:,} of {plan.total_weights:,} feed-forward weights "
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


MAX_LINK_KEPT = 2000
PAST_TENSE = {"erase": "Erased", "amplify": "Amplified"}
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


MODE_CHOICES = [("faithful: a fresh trajectory per timestep", "faithful"), ("fast: one trajectory per image", "fast")]


@user_errors
def action_ratio(model: str, action: str):
    """When the action changes: its own default ratio (amplify works at much smaller ratios)."""
    return gr.update(value=REGISTRY.get(model).defaults.ratio_for(action))


@user_errors
def model_edit_mode(model: str):
    """When the model changes: its default attribution mode."""
    return gr.update(value=REGISTRY.get(model).defaults.edit_mode)


@user_errors
def model_edit_defaults(model: str, method: str = "cad"):
    world = REGISTRY.get(model)
    return (gr.update(value=world.defaults.edit_ratio), gr.update(value="\n".join(world.examples[1:3])), gr.update(value=world.defaults.edit_scope),
            gr.update(value=", ".join(world.defaults.edit_keep)),
            gr.update(value=default_scenes(world, method), visible=world.defaults.toy_scenes))


def build(model: gr.Dropdown, default: ModelWorld) -> None:
    """The tab's layout and events (inside the app's Blocks)."""
    with gr.Tab("Erase / amplify", id="erase", elem_id="edit-tab") as c_tab:
        gr.Markdown(
            "Erase or amplify a concept for your request only: **CAD** zeroes the feed-forward weights whose removal most "
            "weakens (erase) or strengthens (amplify) it, **UCE** edits the cross-attention keys and values in closed form "
            "(erase only). The galleries show the concept's images and other prompts' images before and after, from the same seeds."
        )
        texts.glossary()
        with gr.Accordion("More: what to try, and what the toy measures", open=False):
            gr.Markdown(texts.ERASE_MORE)
        with gr.Row():
            with gr.Column():
                c_concept = gr.Textbox(label="Concept", value=(default.concept_examples or ("",))[0], placeholder=", ".join(default.concept_examples) or "a concept",
                                       elem_id="edit-concept")
                concept_chips = gr.Examples(examples=[[c] for c in default.concept_examples] or [[""]], inputs=[c_concept], label="Concepts this model draws")
                c_method = gr.Radio([("CAD: zero the top-attributed feed-forward weights", "cad"), ("UCE: closed-form cross-attention edit (erase)", "uce")],
                                    value="cad", label="Method", elem_id="edit-method", info="CAD zeroes weights; UCE rewrites the text cross-attention")
                c_action = gr.Radio(["erase", "amplify"], value="erase", label="Action", elem_id="edit-action", info="erase weakens the concept; amplify strengthens it (CAD only)")
                c_keep = gr.Textbox(label=EDIT_LABELS["cad"]["keep"], placeholder="blue, green", value=", ".join(default.defaults.edit_keep), elem_id="edit-keep", info="their weights are spared, so they should survive the edit")
                with gr.Column(elem_id="edit-cad-settings") as c_cad_settings:
                    c_mode = gr.Radio(MODE_CHOICES, value=default.defaults.edit_mode, label="Attribution", elem_id="edit-mode",
                                      info="faithful: a fresh trajectory per timestep, far less dependent on the seed than fast (docs/erase.md's stability table)")
                    with gr.Row():
                        c_ratio = gr.Slider(0.0005, 0.2, value=default.defaults.edit_ratio, step=0.0005, label="Share of weights zeroed", elem_id="edit-ratio", scale=2, info="in each matrix (or row, or model)")
                        c_scope = gr.Radio([(label, scope) for scope, label in SCOPE_LABELS.items()], value=default.defaults.edit_scope,
                                           label="Top weights taken", elem_id="edit-scope", scale=1, info="where the share is counted")
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
                    c_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="edit-seed", info="seeds the images (and the toy scenes)")
                    c_images = gr.Number(label="Images of the concept", value=4, precision=0, minimum=1, maximum=8, elem_id="edit-images", info="before/after pairs shown and judged")
                c_run = gr.Button("Apply", variant="primary", elem_id="edit-run")
            with gr.Column():
                c_info = gr.Markdown(elem_id="edit-info")
                c_concept_gallery = gr.Gallery(label="The concept: before and after", columns=2, height=FIT, elem_id="edit-concept-gallery", interactive=False)
                c_kept_gallery = gr.Gallery(label="Other concepts: before and after (kept?)", columns=2, height=FIT, elem_id="edit-kept-gallery", interactive=False)
        c_plot = gr.Plot(label=EDIT_LABELS["cad"]["plot"], elem_id="edit-mass")
        c_top = gr.Dataframe(  # full width: a layer's name is long, and every column must stay in view
            headers=["layer", "row", "column", EDIT_LABELS["cad"]["score"]], label=EDIT_LABELS["cad"]["top"], interactive=False, elem_id="edit-top")

    model.change(model_edit_defaults, inputs=[model, c_method], outputs=[c_ratio, c_kept, c_scope, c_keep, c_scenes], api_visibility="private")
    model.change(model_edit_mode, inputs=model, outputs=c_mode, api_visibility="private")
    model.change(lambda m: gr.Dataset(samples=[[c] for c in REGISTRY.get(m).concept_examples] or [[""]]), inputs=model,
                 outputs=concept_chips.dataset, api_visibility="private")
    c_action.change(action_ratio, inputs=[model, c_action], outputs=c_ratio, api_visibility="private")
    c_method.change(method_defaults, inputs=[model, c_method], outputs=[c_scenes, c_action, c_cad_settings, c_plot, c_top, c_keep], api_visibility="private")
    edit_inputs = [model, c_concept, c_action, c_ratio, c_mode, c_prompt, c_kept, c_seed, c_images, c_keep, c_scope, c_scenes, c_contrast, c_protect, c_method]
    with c_tab:
        links.panel("erase", "erase", [
            links.Field("concept", c_concept, links.text("concept", 200)),
            links.Field("method", c_method, links.choice("method", lambda world: ["cad", "uce"])),
            links.Field("action", c_action, links.choice("action", lambda world: ["erase", "amplify"])),
            links.Field("keep", c_keep, links.text("keep", 400)),
            links.Field("mode", c_mode, links.choice("mode", lambda world: [v for _, v in MODE_CHOICES])),
            links.Field("ratio", c_ratio, links.real("ratio", 0.0005, 0.2)),
            links.Field("scope", c_scope, links.choice("scope", lambda world: list(SCOPE_LABELS))),
            links.Field("protect", c_protect, links.choice("protect", lambda world: ["presence", "identity"])),
            links.Field("contrast", c_contrast, links.choice("contrast", lambda world: ["mean", "max"])),
            links.Field("scenes", c_scenes, links.integer("scenes", 0, 8)),
            links.Field("concept_prompt", c_prompt, links.text("concept_prompt", 400)),
            links.Field("kept", c_kept, links.text("kept", MAX_LINK_KEPT)),
            links.Field("seed", c_seed, links.integer("seed", 0, 2**63 - 1)),
            links.Field("images", c_images, links.integer("images", 1, 8)),
        ], run=(edit_concept, edit_inputs, [c_concept_gallery, c_kept_gallery, c_plot, c_top, c_info]))
        download, experiment_file = experiment.download_row("erase")
    download.click(experiment.erase_experiment, inputs=[*edit_inputs, c_concept_gallery, c_kept_gallery, c_info], outputs=experiment_file,
                   api_visibility="private")
    c_run.click(
        edit_concept, inputs=edit_inputs,
        outputs=[c_concept_gallery, c_kept_gallery, c_plot, c_top, c_info], api_name="edit", **HEAVY,
    )
