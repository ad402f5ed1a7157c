"""The Evolution tab: one generation followed through its denoising steps (the predicted x0 at each
step, which concepts the SAE features see, and from which step each attribute is settled)."""

from __future__ import annotations


import gradio as gr
from PIL import Image

from concepts.errors import InvalidInputError, UnknownNameError
from concepts.evolve.evolution import run_evolution
from concepts.evolve.figures import (
    composition_image,
    composition_legend,
    composition_strip,
    decided_figure,
    decisions,
    default_concepts,
    emergence_figure,
    evolution_record,
    heatmap_grid,
    save_gif,
    save_json,
    save_strip,
)
from concepts.generation import SHARED_PIPELINES
from concepts.registry import ModelWorld
from concepts.saes import SAES

from . import experiment, links, temp_files, texts
from .common import (
    DEVICE,
    FIT,
    HEAVY,
    STATE_TTL_S,
    REGISTRY,
    as_float,
    as_int,
    default_block,
    first_example,
    gpu,
    model_blocks,
    model_defaults,
    progress_callback,
    sampling_inputs,
    user_errors,
)


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
                     progress: gr.Progress = gr.Progress(), request: gr.Request = None):
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
                        reader=world.knowledge.reader(), device=DEVICE, registry=REGISTRY, progress=progress_callback(progress))
    for warning in evo.warnings:
        gr.Warning(warning)
    if block not in evo.traces:
        raise InvalidInputError("block", f"{block!r} is not one of {', '.join(evo.traces)}")
    shown = chosen or default_concepts(evo, block)
    decided = decisions(evo, block)
    emergence, decided_plot = emergence_figure(evo, chosen), decided_figure(decided, len(evo.previews))
    folder = temp_files.fresh_folder("evolution-", request)
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
    return (state, gr.update(maximum=max(1, last), value=last), preview, composition, legend, rows, gallery, emergence, decided_plot,
            heatmap_grid(evo, block, shown), composition_strip(evo, block), files, info)


@user_errors
def scrub_evolution(state: dict | None, step: float):
    if not state:
        raise InvalidInputError("step", "follow a generation first")
    return step_view(state, as_int(step, "step"))


def build(model: gr.Dropdown, default: ModelWorld, demo: gr.Blocks) -> None:
    """The tab's layout and events (inside the app's Blocks)."""
    blocks = default.blocks
    example = first_example(default)
    with gr.Tab("Evolution", id="evolution", elem_id="evolution-tab"):
        gr.Markdown(
            "Follow one generation through its denoising steps: the model's guess of the final image at every "
            "step (the predicted x0), which concepts its SAE features see, and from which step each attribute "
            "is settled. In Stable Diffusion the layout is decided first, style in the middle, texture last."
        )
        texts.glossary()
        with gr.Accordion("More: how to read the figures", open=False):
            gr.Markdown(
                "- **Composition map**: per position of the block's grid, the concept whose features fire most. Where the "
                "dictionaries know on which side each feature fires (object or background, as the toy's do), a position is "
                "first called object or background and then named only by a concept of that side; uncoloured: no named "
                "concept fires there.\n"
                "- **Concept emergence**: a concept's score is the mean of its map (the strongest of its features at each "
                "position) at each step.\n"
                "- **Heatmaps**: each map is scaled to its own peak, so brightness compares positions within a cell.\n"
                "- **When is it decided?**: the first step from which a reading (the toy judge on the preview, or the SAE "
                "features' leading label) stays what the final image shows."
            )
        evolution = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Row():
            with gr.Column():
                e_prompt, e_seed, e_steps, e_guidance = sampling_inputs(default, example, "evolve-")
                with gr.Row():
                    e_block = gr.Dropdown(choices=blocks, value=default_block(default), label="Block for heatmaps and composition", elem_id="evolve-block")
                    e_concepts = gr.Dropdown(choices=[], value=[], multiselect=True, label="Concepts to plot (empty: the strongest)", elem_id="evolve-concepts")
                follow = gr.Button("Follow the denoising", variant="primary", elem_id="follow")
                evolve_info = gr.Markdown(elem_id="evolve-info")
            with gr.Column():
                # A one-step model (SDXL-Turbo) still gets a slider: Gradio refuses one whose ends meet.
                step = gr.Slider(0, max(1, default.defaults.steps - 1), value=0, step=1, label="Step", elem_id="evolve-step")
                with gr.Row():
                    step_preview = gr.Image(label="Predicted x0 at this step", type="pil", format="png", elem_id="step-preview", buttons=[], elem_classes="pixelated", height=256)
                    step_composition = gr.Image(label="Dominant concept per position", type="pil", format="png", elem_id="step-composition", buttons=[], height=256)
                step_legend = gr.Markdown(elem_id="step-legend")
                step_top = gr.Dataframe(headers=["concept", "score", "block"], label="Top concepts at this step", interactive=False, elem_id="step-top")
        previews = gr.Gallery(label="Every step's preview", columns=9, height=FIT, elem_id="previews")
        curves = gr.Plot(label="Concept emergence", elem_id="curves")
        decided_plot = gr.Plot(label="When is it decided?", elem_id="decided")
        grid = gr.Image(label="Concept heatmaps: steps × concepts (each map scaled to its own peak)", type="pil", format="png", elem_id="heatmap-grid", buttons=[])
        composition = gr.Image(label="Composition maps through the steps", type="pil", format="png", elem_id="composition-strip", buttons=[])
        downloads = gr.File(label="Downloads: animated GIF, preview strip, per-step JSON", file_count="multiple", elem_id="evolve-files", elem_classes="small-empty-file")
        links.panel("evolution", "evolution", [
            *links.sampling_fields(e_prompt, e_seed, e_steps, e_guidance),
            links.Field("block", e_block, links.choice("block", lambda world: world.blocks)),
        ], run=(follow_evolution, [model, e_prompt, e_seed, e_steps, e_guidance, e_block, e_concepts],
                [evolution, step, step_preview, step_composition, step_legend, step_top, previews, curves, decided_plot, grid, composition, downloads, evolve_info]))
        download, experiment_file = experiment.download_row("evolution")
    download.click(experiment.evolution_experiment, inputs=[model, e_prompt, e_seed, e_steps, e_guidance, evolution, evolve_info],
                   outputs=experiment_file, api_visibility="private")

    model.change(model_defaults, inputs=[model, e_prompt], outputs=[e_prompt, e_steps, e_guidance], api_visibility="private")
    model.change(model_blocks, inputs=model, outputs=e_block, api_visibility="private")
    for trigger in (model.change, demo.load):
        trigger(evolution_concepts, inputs=model, outputs=e_concepts, api_visibility="private")
    follow.click(
        follow_evolution, inputs=[model, e_prompt, e_seed, e_steps, e_guidance, e_block, e_concepts],
        outputs=[evolution, step, step_preview, step_composition, step_legend, step_top, previews, curves, decided_plot, grid, composition, downloads, evolve_info],
        api_name="evolve", **HEAVY,
    )
    step.change(scrub_evolution, inputs=[evolution, step], outputs=[step_preview, step_composition, step_legend, step_top], api_visibility="private")
