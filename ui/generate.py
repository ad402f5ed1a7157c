"""The Generate tab: one image from a prompt on the chosen model world."""

from __future__ import annotations

import gradio as gr

from concepts.batching import MAX_BATCH
from concepts.generation import run_generation
from concepts.registry import ModelWorld

from . import experiment, links, texts
from .common import (
    DEVICE,
    REGISTRY,
    as_float,
    as_int,
    first_example,
    gpu,
    model_defaults,
    progress_callback,
    sampling_inputs,
    user_errors,
)

GENERATE_PLACES = {"concurrency_limit": MAX_BATCH, "concurrency_id": "generate"}
"""Up to a batch of generations may wait in the handler at once: the batcher runs them in shared UNet
calls. A link to the Generate tab runs in the same places."""


def world_examples(model: str):
    """The example chips of the chosen world (a toy caption means nothing to SD1.4, and back)."""
    return gr.Dataset(samples=[[e] for e in REGISTRY.get(model).examples] or [[""]])


@gpu
@user_errors
def generate_image(model: str, prompt: str, seed: float, steps: float, guidance: float, progress: gr.Progress = gr.Progress()):
    """Generate one image; returns (image, a line describing what was run)."""
    outcome = run_generation(
        model,
        prompt,
        seed=as_int(seed, "seed"),
        steps=as_int(steps, "steps"),
        guidance=as_float(guidance, "guidance"),
        device=DEVICE,
        registry=REGISTRY,
        progress=progress_callback(progress),
    )
    for warning in outcome.warnings:
        gr.Warning(warning)
    r = outcome.request
    info = f"**{outcome.world.title}** · seed {r.seed} · {r.steps} DDIM steps · guidance {r.guidance:g} · {r.width}×{r.height} px · {outcome.seconds:.2f} s"
    return outcome.result.images[0], info


def build(model: gr.Dropdown, default: ModelWorld) -> None:
    """The tab's layout and events (inside the app's Blocks)."""
    example = first_example(default)
    with gr.Tab("Generate", id="generate"):
        gr.Markdown(
            "Type a prompt and generate one image on the chosen model: the same seed always gives the same image. "
            "On toy-shapes, name a shape, colour, size, position, background and texture (or leave some out and see what it picks)."
        )
        texts.glossary()
        with gr.Row():
            with gr.Column():
                prompt, seed, steps, guidance = sampling_inputs(default, example, "")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                image = gr.Image(label="Image", type="pil", format="png", elem_id="image", elem_classes="pixelated", height=320, interactive=False)
                info = gr.Markdown(elem_id="info")
        examples = gr.Examples(examples=[[e] for e in default.examples] or [[""]], inputs=[prompt], label="Examples this model draws")
        links.panel("generate", "generate", links.sampling_fields(prompt, seed, steps, guidance),
                    run=(generate_image, [model, prompt, seed, steps, guidance], [image, info]), places=GENERATE_PLACES)
        download, experiment_file = experiment.download_row("generate")
    download.click(experiment.generate_experiment, inputs=[model, prompt, seed, steps, guidance, image, info], outputs=experiment_file,
                   api_visibility="private")
    model.change(world_examples, inputs=model, outputs=examples.dataset, api_visibility="private")
    model.change(model_defaults, inputs=[model, prompt], outputs=[prompt, steps, guidance], api_visibility="private")
    run.click(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_name="generate",
              **GENERATE_PLACES)
    prompt.submit(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_visibility="private",
                  **GENERATE_PLACES)
