"""Concept Lab — the Gradio app (also the Hugging Face Space). All UI code lives here.

The first page: pick a model world from the registry, type a prompt, choose seed, steps and
guidance, and generate. The steering, timestep-evolution and erase/amplify panels are added as
tabs by later work. Every error a user can cause is shown as a message (`gr.Error`), never a
traceback; models are shared read-only across users and nothing per-user lives in module globals.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported: no import-time advice

import gradio as gr  # noqa: E402

from concepts.errors import ConceptLabError, InvalidInputError  # noqa: E402
from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.registry import load_registry  # noqa: E402
from concepts.service import run_generation  # noqa: E402

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
CSS = "#image img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"


def as_int(value: object, field: str) -> int:
    """A whole number from a UI widget (which may hand over a float, None or NaN)."""
    if value is None or isinstance(value, bool):
        raise InvalidInputError(field, "is empty")
    number = float(value)
    if not math.isfinite(number) or number != int(number):
        raise InvalidInputError(field, f"must be a whole number, got {value!r}")
    return int(number)


def as_float(value: object, field: str) -> float:
    if value is None or isinstance(value, bool):
        raise InvalidInputError(field, "is empty")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(field, f"must be a finite number, got {value!r}")
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
        raise gr.Error(str(exc)) from None
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
        raise gr.Error(str(exc)) from None
    return gr.update(value=world.defaults.steps), gr.update(value=world.defaults.guidance)


def build_app() -> gr.Blocks:
    default = REGISTRY.get()
    with gr.Blocks(title="Concept Lab") as demo:
        gr.Markdown(
            "# Concept Lab\nSee, steer and erase the concepts inside a text-to-image diffusion model. "
            "The default model is tiny and runs on a CPU in seconds."
        )
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    model = gr.Dropdown(
                        choices=[(REGISTRY.get(n).title, n) for n in REGISTRY.names],
                        value=default.name,
                        label="Model",
                        elem_id="model",
                    )
                    prompt = gr.Textbox(label="Prompt", value=default.examples[0] if default.examples else "", elem_id="prompt")
                    with gr.Row():
                        seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                        steps = gr.Slider(1, 100, value=default.defaults.steps, step=1, label="Denoising steps", elem_id="steps")
                        guidance = gr.Slider(0, 20, value=default.defaults.guidance, step=0.5, label="Guidance", elem_id="guidance")
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column():
                    image = gr.Image(label="Image", type="pil", format="png", elem_id="image", height=320)
                    info = gr.Markdown(elem_id="info")
            if default.examples:
                gr.Examples(examples=[[e] for e in default.examples], inputs=[prompt])
        model.change(model_defaults, inputs=model, outputs=[steps, guidance], api_visibility="private")
        run.click(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_name="generate")
        prompt.submit(generate_image, inputs=[model, prompt, seed, steps, guidance], outputs=[image, info], api_visibility="private")
    return demo


demo = build_app()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(),
        css=CSS,
    )
