"""Load any SD1.x or SDXL diffusers pipeline, from a Hub id or a local folder, through one code path.

Hub ids are first resolved to a folder in the Hub cache (`hub.resolve`), so SD1.4, SDXL-Turbo, the
toy model and the tiny test models are all loaded by `from_pretrained(folder)`; `model_index.json`'s
`_class_name` picks `StableDiffusionPipeline` or `StableDiffusionXLPipeline`. The scheduler is
swapped for DDIM (the paper's sampler), keeping the model's own timestep spacing: with SDXL-Turbo's
"trailing" spacing one DDIM step from t = 999 gives the same x0 as its Euler-ancestral step. A model
that ships a safety checker keeps it; one whose `model_index.json` has none is loaded without,
explicitly (docs/pitfalls.md). SDXL's VAE overflows in fp16 (`force_upcast`), so it is kept in fp32.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import diffusers
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from .errors import CheckpointError, InvalidInputError
from .hub import Source, resolve
from .registry import ModelWorld
from .thread_safe_tokenizer import shared_safely

log = logging.getLogger(__name__)

# What a diffusers SD repo needs; weights only as safetensors, no fp16/EMA duplicates, no .ckpt.
PIPELINE_ALLOW = ["*.json", "*.txt", "*/*.json", "*/*.txt", "*/*.safetensors"]
PIPELINE_IGNORE = ["*.fp16.*", "*non_ema*", "*.ckpt", "*.bin", "*.msgpack", "*.onnx", "*.pb", "*.h5"]
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The pipelines Concept Lab runs (same UNet module names, same hooks) and the folders each needs.
# The SDXL class is imported only when an SDXL model is loaded: importing it makes transformers warn
# about torchvision on every start.
PIPELINE_COMPONENTS = {
    "StableDiffusionPipeline": REQUIRED_COMPONENTS,
    "StableDiffusionXLPipeline": (*REQUIRED_COMPONENTS, "text_encoder_2", "tokenizer_2"),
}
if TYPE_CHECKING:
    from diffusers import StableDiffusionXLPipeline
Pipeline = Union[StableDiffusionPipeline, "StableDiffusionXLPipeline"]


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype


def pick_device(device: str = "auto") -> DeviceChoice:
    """cuda with fp16 where a GPU is present, else the CPU with fp32 ("cpu" / "cuda" force one)."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InvalidInputError("device", f"{device!r} is not auto, cpu or cuda")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("device", "cuda was asked for but no GPU is available")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return DeviceChoice(torch.device(device), dtype)


def pipeline_folder(source: Source, base_dir: Path | None = None) -> Path:
    """The local folder of a pipeline (downloading it into the Hub cache if it is a repo)."""
    folder = resolve(
        source,
        required=["model_index.json"],
        base_dir=base_dir,
        allow_patterns=PIPELINE_ALLOW if source.repo else None,
        ignore_patterns=PIPELINE_IGNORE if source.repo else None,
    )
    return folder


def load_pipeline_from_folder(folder: Path, choice: DeviceChoice) -> Pipeline:
    """`from_pretrained` on a local folder, with DDIM and clear errors for broken folders."""
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index_path} is unreadable or not JSON ({exc}); the pipeline folder is corrupt") from None
    class_name = index.get("_class_name", "StableDiffusionPipeline") if isinstance(index, dict) else None
    if class_name not in PIPELINE_COMPONENTS:
        raise CheckpointError(f"{index_path}: {class_name!r} is not a pipeline Concept Lab runs ({', '.join(PIPELINE_COMPONENTS)})")
    pipeline_class, required = getattr(diffusers, class_name), PIPELINE_COMPONENTS[class_name]
    missing = [c for c in required if c not in index or not (folder / c).is_dir()]
    if missing:
        raise CheckpointError(f"pipeline folder {folder} lacks {', '.join(missing)}: not a complete {class_name}")
    extra: dict = {}
    has_checker = isinstance(index.get("safety_checker"), list) and index["safety_checker"][0] is not None
    if pipeline_class is StableDiffusionPipeline and not has_checker:
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        pipe = pipeline_class.from_pretrained(folder, dtype=choice.dtype, use_safetensors=True, **extra)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"could not load the pipeline in {folder}: {type(exc).__name__}: {exc}") from None
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    for name in ("tokenizer", "tokenizer_2"):  # every request shares them (see PipelineCache)
        if getattr(pipe, name, None) is not None:
            shared_safely(getattr(pipe, name))
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(choice.device)
    if getattr(pipe.vae.config, "force_upcast", False) and choice.dtype == torch.float16:
        pipe.vae.to(torch.float32)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.eval().requires_grad_(False)
    return pipe


def load_pipeline(world_or_source: ModelWorld | Source, device: str = "auto") -> Pipeline:
    """Load a registry world's pipeline (or any `Source`) on the chosen device."""
    if isinstance(world_or_source, ModelWorld):
        source, base_dir = world_or_source.pipeline, world_or_source.base_dir
    else:
        source, base_dir = world_or_source, None
    return load_pipeline_from_folder(pipeline_folder(source, base_dir), pick_device(device))


class PipelineCache:
    """Pipelines loaded once and shared read-only by every request (loading is serialised by a lock).

    Sharing is safe because nothing per-user lives on the pipeline: samplers make their own
    schedulers, hooks act only inside their own context (see `hooks.py`) and the tokenizers, whose
    fast backends keep per-call padding settings, encode one call at a time (`thread_safe_tokenizer`).
    """

    def __init__(self) -> None:
        self._pipes: dict[tuple[str, str], Pipeline] = {}
        self._lock = threading.Lock()

    def get(self, world: ModelWorld, device: str = "auto") -> Pipeline:
        key = (world.name, device)
        with self._lock:
            if key not in self._pipes:
                log.info("loading pipeline %s on %s", world.name, device)
                self._pipes[key] = load_pipeline(world, device)
            return self._pipes[key]
