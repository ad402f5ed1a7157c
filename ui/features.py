"""The Steer tab's feature browsers: icons (what each feature draws on its own) and top images
(the cached images where a feature fires most)."""

from __future__ import annotations

import gradio as gr

from concepts.errors import InvalidInputError
from concepts.steer.icons import MAX_ICONS, run_icons
from concepts.steer.top_images import world_top_images
from concepts.steps import StepWindow, sae_stage

from .common import DEVICE, FIT, HEAVY, REGISTRY, as_int, gpu, progress_callback, sae_dictionary, user_errors


@gpu
@user_errors
def icon_gallery(model: str, block: str, window: str, steps: float, count: float, progress: gr.Progress = gr.Progress()):
    """Icons of the SAE's labelled features (then the most frequent ones), captioned id · label; the
    bar counts their one generation's denoising steps (none when every icon is kept already)."""
    loaded, stage = sae_dictionary(model, block, str(window), as_int(steps, "steps"))
    wanted = as_int(count, "icons")
    if not 1 <= wanted <= MAX_ICONS:
        raise InvalidInputError("icons", f"must be in 1..{MAX_ICONS}, got {wanted}")
    rows = (loaded.concepts or {}).get("features", [])
    rows = sorted(rows, key=lambda f: (not f.get("labelled"), -f.get("frequency", 0.0)))
    chosen = [(int(f["id"]), f.get("label") if f.get("labelled") else None) for f in rows[:wanted]]
    if not chosen:
        chosen = [(i, None) for i in range(min(wanted, loaded.sae.num_latents))]
    images = run_icons(model, block, stage, [f for f, _ in chosen], device=DEVICE, registry=REGISTRY, progress=progress_callback(progress))
    return [(image, f"#{f} · {label}" if label else f"#{f}") for image, (f, label) in zip(images, chosen)]


@user_errors
def top_image_gallery(model: str, block: str, window: str, steps: float, feature: float):
    """The cached images where the feature fired most, captioned with prompt and activation."""
    world = REGISTRY.get(model)
    stage = sae_stage(StepWindow.parse(str(window), as_int(steps, "steps")), as_int(steps, "steps"))
    entry = world.sae(block, stage, "cond")  # an SAE for every step is cached under its own window, "all"
    tops = world_top_images(world).for_feature((entry.block, entry.window, entry.branch), as_int(feature, "feature"))
    if not tops:
        raise InvalidInputError("feature", "never fired on the cached images")
    return [(t.image, f"{t.value:.3f} · {t.prompt}") for t in tops]


def build(sae_inputs: list) -> gr.Number:
    """Two accordions inside the Steer tab; `sae_inputs` (model, block, window, steps) pick the SAE.
    Returns the top images' feature field (a feature chosen elsewhere in the tab lands there)."""
    with gr.Accordion("Feature icons: what each feature draws on its own", open=False):
        with gr.Row():
            icon_count = gr.Number(label="Icons", value=16, precision=0, minimum=1, maximum=MAX_ICONS, elem_id="icon-count")
            show_icons = gr.Button("Show icons", elem_id="show-icons")
        icons = gr.Gallery(label="Feature icons (labelled features first)", columns=8, height=FIT, elem_id="icons")
    with gr.Accordion("Top images: where a feature fires most", open=False):
        with gr.Row():
            top_feature = gr.Number(label="Feature (of this block and window's SAE)", value=0, precision=0, minimum=0, elem_id="top-feature")
            show_top = gr.Button("Show top images", elem_id="show-top")
        top_images = gr.Gallery(label="Top images (activation · prompt)", columns=8, height=FIT, elem_id="top-images")
    show_icons.click(icon_gallery, inputs=[*sae_inputs, icon_count], outputs=icons, api_name="icons", **HEAVY)
    show_top.click(top_image_gallery, inputs=[*sae_inputs, top_feature], outputs=top_images, api_name="top_images", **HEAVY)
    return top_feature
