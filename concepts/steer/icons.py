"""Feature icons: what one SAE feature draws on its own.

The prompt is empty and, on the cond branch inside the SAE's stage window, the block's Δ at every
position is replaced by the feature's decoder direction scaled to the norm Δ had there (times
`scale`). Guidance then amplifies the difference from the unconditional image, so the picture is
the feature's own contribution. Many features render in one batch (one row each).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import torch
from PIL import Image

from ..generation import SHARED_PIPELINES
from ..hooks import BlockEdit, BlockHooks, EditFn
from ..pipeline import PipelineCache
from ..progress import ProgressFn, counting_steps
from ..registry import Registry, load_registry
from ..sae import TopKSAE
from ..saes import SAES
from ..sampling import GenerationRequest, generate
from ..steps import StepInfo, StepWindow
from .steering import check_features, check_strength

MAX_ICONS = 64
"""Most icons one call renders (one batch)."""
CACHED_ICONS = 1024
_ICONS: OrderedDict[tuple, Image.Image] = OrderedDict()
_ICONS_LOCK = threading.Lock()


def icon_edit(sae: TopKSAE, features: Sequence[int], scale: float) -> EditFn:
    """Row r of the cond batch gets feature `features[r]`'s unit direction × ‖Δ‖ × scale everywhere."""
    directions = sae.W_dec[list(features)].float()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def edit(step: StepInfo, read: torch.Tensor) -> torch.Tensor:
        norms = read.float().norm(dim=-1, keepdim=True)  # [b, H, W, 1]
        replaced = scale * norms * directions.to(read.device)[:, None, None, :]
        return replaced.to(read.dtype)

    return edit


@torch.no_grad()
def feature_icons(pipe, sae: TopKSAE, block: str, features: Sequence[int], window: StepWindow, *, steps: int, guidance: float, height: int, width: int, seed: int = 0, scale: float = 1.0, reads: str = "delta") -> list[Image.Image]:
    """One icon per feature, rendered in a single batch from the same seed."""
    features = check_features(sae, features)
    check_strength(scale)
    request = GenerationRequest([""] * len(features), seed=seed, steps=steps, guidance=guidance, height=height, width=width)
    edit = BlockEdit(block, icon_edit(sae, features, scale), window, "cond")
    with BlockHooks(pipe.unet, edits=[edit], reads=reads) as hooks:  # type: ignore[arg-type]
        return generate(pipe, request, hooks).images


def run_icons(
    model: str | None,
    block: str,
    stage: str,
    features: Sequence[int],
    *,
    seed: int = 0,
    scale: float = 1.0,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
) -> list[Image.Image]:
    """Icons of a registry SAE's features at the world's default steps and guidance, cached per process.
    `progress` counts the one generation's denoising steps (nothing when every icon is kept)."""
    world = (registry or load_registry()).get(model)
    features = [int(f) for f in features][:MAX_ICONS]
    d = world.defaults
    keys = [(world.name, block, stage, f, seed, float(scale), d.steps, d.guidance) for f in features]
    with _ICONS_LOCK:
        missing = [f for f, key in zip(features, keys) if key not in _ICONS]
    if missing:
        pipe = (cache or SHARED_PIPELINES).get(world, device)
        loaded = SAES.get(world, block, stage, "cond", pipe.unet)
        window = StepWindow.parse(stage, d.steps) if stage != "all" else StepWindow.all_steps(d.steps)
        with counting_steps(progress, d.steps, "the icons"):
            images = feature_icons(pipe, loaded.sae, loaded.entry.block, missing, window, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width, seed=seed, scale=scale, reads=loaded.entry.reads)
        with _ICONS_LOCK:
            for f, image in zip(missing, images):
                _ICONS[(world.name, block, stage, f, seed, float(scale), d.steps, d.guidance)] = image
            found = [_ICONS[key] for key in keys]
            while len(_ICONS) > CACHED_ICONS:
                _ICONS.popitem(last=False)
            return found
    with _ICONS_LOCK:
        return [_ICONS[key] for key in keys]
