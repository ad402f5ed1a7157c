"""Download experiment: a panel's (or a lesson's) last run as one zip (`concepts.experiment`).

The zip's `command.sh` is the CLI call that reruns it; the settings are the panel's, read back the
way the panel read them, so the command fails in the same place a typed value would.
"""

from __future__ import annotations

import io

import gradio as gr
import numpy as np
from PIL import Image

from concepts.errors import InvalidInputError
from concepts.experiment import experiment_zip
from concepts.generation import SHARED_PIPELINES

from . import temp_files
from .common import DEVICE, REGISTRY, as_float, as_int, user_errors
from .steer_inputs import PAINTED, painted_mask


def _save(data: bytes, stem: str, request: gr.Request | None = None) -> str:
    folder = temp_files.fresh_folder("experiment-", request)
    path = folder / f"{stem}.zip"
    path.write_bytes(data)
    return str(path)


def _sampling(model: str, prompt: str, seed: float, steps: float, guidance: float) -> tuple[dict, list[str]]:
    settings = {"model": model, "prompt": prompt, "seed": as_int(seed, "seed"), "steps": as_int(steps, "steps"), "guidance": as_float(guidance, "guidance")}
    args = ["--model", model, "--prompt", prompt, "--seed", str(settings["seed"]), "--steps", str(settings["steps"]), "--guidance", f"{settings['guidance']:g}"]
    return settings, args


@user_errors
def generate_experiment(model: str, prompt: str, seed: float, steps: float, guidance: float, image: Image.Image | None, info: str, request: gr.Request = None):
    """The Generate panel's last image as an experiment zip."""
    if image is None:
        raise InvalidInputError("image", "generate an image first")
    settings, args = _sampling(model, prompt, seed, steps, guidance)
    pipe = SHARED_PIPELINES.get(REGISTRY.get(model), DEVICE)
    data = experiment_zip({"panel": "generate", **settings}, ["python", "-m", "concepts", "generate", *args, "--out", "outputs/"],
                          {"image": image}, {"info": info}, unet=pipe.unet)
    return _save(data, "generate-experiment", request)


@user_errors
def steer_experiment(model: str, prompt: str, seed: float, steps: float, guidance: float, block: str, window: str, concept: str | None,
                     feature_text: str, where: str, painting: dict | None, strength: float, branch: str,
                     baseline: Image.Image | None, steered: Image.Image | None, info: str, request: gr.Request = None):
    """The Steer panel's last baseline and steered images as an experiment zip."""
    if baseline is None or steered is None:
        raise InvalidInputError("steer", "steer an image first")
    settings, args = _sampling(model, prompt, seed, steps, guidance)
    settings.update(block=block, window=str(window), concept=concept or None, features=(feature_text or "").strip() or None, where=where,
                    strength=as_float(strength, "strength"), branch=branch)
    args += ["--block", block, "--window", str(window), "--strength", f"{settings['strength']:g}", "--branch", branch]
    if concept:
        args += ["--concept", concept]
    for word in (feature_text or "").replace(",", " ").split():
        args += ["--feature", word]
    files = {}
    if where == PAINTED:
        mask = (painted_mask(painting).numpy() > 0).astype(np.uint8) * 255
        png = io.BytesIO()
        Image.fromarray(mask).save(png, format="PNG")
        files["mask.png"] = png.getvalue()
        args += ["--mask", "mask.png"]
    else:
        args += ["--region", where]
    pipe = SHARED_PIPELINES.get(REGISTRY.get(model), DEVICE)
    data = experiment_zip({"panel": "steer", **settings}, ["python", "-m", "concepts", "steer", *args, "--out", "outputs/"],
                          {"baseline": baseline, "steered": steered}, {"info": info}, unet=pipe.unet, files=files)
    return _save(data, "steer-experiment", request)


def download_row(elem_prefix: str) -> tuple[gr.Button, gr.File]:
    """A "Download experiment" button and the file it fills (call inside the panel's layout). The
    pictures it packs are inputs of its click, which makes Gradio offer an upload in them unless they
    say `interactive=False`: a student's own picture would be zipped as the panel's result."""
    with gr.Row():
        button = gr.Button("Download experiment (settings, command, images, versions)", size="sm", elem_id=f"{elem_prefix}-download", scale=0)
        file = gr.File(label="Experiment zip", elem_id=f"{elem_prefix}-experiment", scale=4, elem_classes="small-empty-file")
    return button, file


@user_errors
def evolution_experiment(model: str, prompt: str, seed: float, steps: float, guidance: float, state: dict | None, info: str, request: gr.Request = None):
    """The Evolution panel's last run as an experiment zip: every step's preview and the final image."""
    if not state or "evolution" not in state:
        raise InvalidInputError("evolution", "follow a generation first")
    evo = state["evolution"]
    settings, args = _sampling(model, prompt, seed, steps, guidance)
    images = {"final": evo.image, **{f"step_{i:03d}": preview for i, preview in enumerate(evo.previews)}}
    pipe = SHARED_PIPELINES.get(REGISTRY.get(model), DEVICE)
    data = experiment_zip({"panel": "evolution", **settings}, ["python", "-m", "concepts", "evolve", *args, "--out", "outputs/"],
                          images, {"info": info, "timesteps": list(evo.timesteps)}, unet=pipe.unet)
    return _save(data, "evolution-experiment", request)


def _gallery_images(items: list | None, prefix: str) -> dict[str, Image.Image]:
    """A gallery's (image, caption) pairs as named images (a gallery hands back PIL images or file paths)."""
    images = {}
    for i, item in enumerate(items or []):
        picture = item[0] if isinstance(item, (list, tuple)) else item
        images[f"{prefix}_{i:02d}"] = picture if isinstance(picture, Image.Image) else Image.open(picture).convert("RGB")
    return images


@user_errors
def erase_experiment(model: str, concept: str, action: str, ratio: float, mode: str, concept_prompt_text: str, kept_text: str, seed: float,
                     images: float, keep_text: str, scope: str, scenes: float | None, contrast: str, protect: str, method: str,
                     concept_gallery: list | None, kept_gallery: list | None, info: str, request: gr.Request = None):
    """The Erase panel's last edit as an experiment zip: before/after images of the concept and of the kept prompts."""
    if not concept_gallery:
        raise InvalidInputError("erase", "apply an edit first")
    world = REGISTRY.get(model)
    keep = [k.strip() for k in (keep_text or "").split(",") if k.strip()]
    kept_prompts = [line.strip() for line in (kept_text or "").splitlines() if line.strip()]
    settings = {"panel": "erase", "model": model, "concept": concept, "action": action, "method": method, "seed": as_int(seed, "seed"),
                "images": as_int(images, "images"), "keep": keep, "kept_prompts": kept_prompts, "concept_prompt": concept_prompt_text or None}
    args = ["--model", model, "--concept", concept, "--method", method, "--seed", str(settings["seed"]), "--images", str(settings["images"])]
    if method == "cad":
        settings.update(ratio=as_float(ratio, "ratio"), scope=scope, mode=mode, contrast=contrast, protect=protect)
        args += ["--ratio", f"{settings['ratio']:g}", "--scope", scope, "--mode", mode, "--contrast", contrast]
        args += ["--protect", protect] if action == "erase" else []
    if scenes is not None and world.defaults.toy_scenes:
        settings["scenes"] = as_int(scenes, "scenes")
        args += ["--scenes", str(settings["scenes"])]
    args += [a for k in keep for a in ("--keep", k)]
    args += ["--concept-prompt", concept_prompt_text] if concept_prompt_text else []
    args += [a for p in kept_prompts for a in ("--kept-prompt", p)]
    pictures = {**_gallery_images(concept_gallery, "concept"), **_gallery_images(kept_gallery, "kept")}
    captions = [item[1] if isinstance(item, (list, tuple)) else "" for item in [*(concept_gallery or []), *(kept_gallery or [])]]
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    data = experiment_zip(settings, ["python", "-m", "concepts", action, *args, "--out", "outputs/"], pictures,
                          {"info": info, "captions": dict(zip(pictures, captions))}, unet=pipe.unet)
    return _save(data, f"{action}-experiment", request)


@user_errors
def lesson_experiment(reading: dict | None, examples: Image.Image | None, request: gr.Request = None):
    """The lesson's last run as an experiment zip: its figures (measured.json), its chart and example images."""
    if not reading:
        raise InvalidInputError("lesson", "run the lesson first")
    from concepts.lessons import lesson_figure
    from concepts.lessons.reading import reading_from_json

    png = io.BytesIO()
    lesson_figure(reading_from_json(reading)).savefig(png, format="png", dpi=110)
    images = {"chart": Image.open(png).convert("RGB"), **({"examples": examples} if examples is not None else {})}
    data = experiment_zip({"panel": "lessons", "lesson": reading["lesson"], "seed": reading["seed"]},
                          ["python", "-m", "concepts", "lesson", reading["lesson"], "--seed", str(reading["seed"]), "--json"],
                          images, reading)
    return _save(data, f"lesson-{reading['lesson']}", request)
