"""Image-level activations of many SAEs over a prompt set, read in one sampling pass per batch.

Concept dictionaries and top-image caches both need, for every image of a prompt set and every
feature of every SAE, how strongly the feature fired: its strongest response anywhere in the image,
averaged over the steps of the SAE's window. One generation serves every SAE of every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from ..features import feature_maps, image_activations
from ..hooks import BlockHooks, Capture
from ..sae import TopKSAE
from ..sampling import GenerationRequest, decode_latents, sample
from ..steps import StepWindow

SAEKey = tuple[str, str, str]
"""(block, window, branch) of one SAE."""


@dataclass
class FeatureTable:
    prompts: list[str]
    activations: dict[SAEKey, np.ndarray]
    """Per SAE, [images, features] float32."""
    images: np.ndarray | None
    """uint8 [images, H, W, 3] of the final images, when kept."""
    maps: dict[SAEKey, np.ndarray] | None = None
    """Per SAE, float16 [images, H, W, features]: where each feature fired (its activation at every
    position, averaged over the window's steps), when asked for (`spatial=True`)."""


@torch.no_grad()
def feature_table(
    pipe: StableDiffusionPipeline,
    saes: dict[SAEKey, TopKSAE],
    prompts: list[str],
    *,
    steps: int,
    guidance: float,
    height: int,
    width: int,
    batch: int = 16,
    seed: int = 0,
    keep_images: bool = False,
    spatial: bool = False,
    reads: str = "delta",
    progress: bool = False,
) -> FeatureTable:
    """Generate every prompt (batch b gets seed `seed + first index`) and read all SAEs at once;
    `spatial` also keeps each feature's map (what labelling against masks needs); `reads` is what the
    SAEs read ("delta", or "output" for SAeUron's)."""
    windows = {key: StepWindow.parse(key[1], steps) for key in saes}
    parts: dict[SAEKey, list[np.ndarray]] = {key: [] for key in saes}
    map_parts: dict[SAEKey, list[np.ndarray]] = {key: [] for key in saes}
    images: list[np.ndarray] = []
    blocks = sorted({key[0] for key in saes})
    for start in tqdm(range(0, len(prompts), batch), desc="feature table", disable=not progress):
        chunk = prompts[start : start + batch]
        sums = {key: torch.zeros(len(chunk), sae.num_latents) for key, sae in saes.items()}
        map_sums: dict[SAEKey, torch.Tensor] = {}

        def sink(block: str, capture: Capture) -> None:
            for key, sae in saes.items():
                window = windows[key]
                if key[0] != block or not window.contains(capture.step.index):
                    continue
                read = capture.cond if key[2] == "cond" else capture.uncond
                if read is None:  # no CFG this run: there is no uncond branch to read
                    continue
                steps_in_window = window.end - window.start + 1
                if spatial:
                    maps = feature_maps(sae, read).float().cpu() / steps_in_window
                    map_sums[key] = map_sums[key] + maps if key in map_sums else maps
                    sums[key] += maps.flatten(1, 2).amax(dim=1)
                else:
                    sums[key] += image_activations(sae, read).cpu() / steps_in_window

        request = GenerationRequest(chunk, seed=seed + start, steps=steps, guidance=guidance, height=height, width=width)
        last = None
        with BlockHooks(pipe.unet, capture=blocks, sink=sink, reads=reads) as hooks:
            for last in sample(pipe, request, hooks):
                pass
        for key in saes:
            parts[key].append(sums[key].numpy())
            if key in map_sums:
                map_parts[key].append(map_sums[key].numpy().astype(np.float16))
        if keep_images and last is not None:
            pixels = decode_latents(pipe, last.latents)
            images.append((pixels.cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    return FeatureTable(
        prompts=list(prompts),
        activations={key: np.concatenate(p) for key, p in parts.items()},
        images=np.concatenate(images) if images else None,
        maps={key: np.concatenate(p) for key, p in map_parts.items() if p} if spatial else None,
    )
