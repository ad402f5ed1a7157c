"""Explore one generation: which SAE features fire at a block in a step window, where, and their names.

The maps are the features' activations on the cond branch averaged over the window's steps, on the
block's grid; the top list ranks features by their mean over positions. Labels come from the SAE's
concept dictionary (only features it counts as labelled get a name). An SAE's strongest features are
often generic (they fire on most images and name nothing), so the list keeps up to half its rows for
the strongest *named* features that clearly fire on this image (`NAMED_FIRE_SHARE`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..dictionary import named_entries
from ..errors import InvalidInputError
from ..features import feature_maps
from ..generation import prepare
from ..hooks import BlockHooks, Capture
from ..pipeline import PipelineCache
from ..progress import ProgressFn, step_reporter
from ..registry import ModelWorld, Registry
from ..saes import SAES
from ..batching import batched_generate
from ..sampling import GenerationRequest
from ..steps import StepWindow, sae_stage
from .service import BASELINES


@dataclass(frozen=True)
class FeatureRow:
    id: int
    mean: float
    """Mean activation over positions (and the window's steps)."""
    peak: float
    """Strongest activation at any position."""
    label: str | None


class ExploreOutcome(NamedTuple):
    world: ModelWorld
    request: GenerationRequest
    block: str
    window: StepWindow
    stage: str
    """The stage whose SAE was read (the stage of the window's middle step)."""
    image: Image.Image
    maps: np.ndarray
    """[H, W, features] on the block's grid."""
    top: list[FeatureRow]
    concepts: dict | None
    warnings: list[str]
    seconds: float


def feature_labels(concepts: dict | None) -> dict[int, str]:
    """Feature id → label, for the features the dictionary counts as labelled."""
    if not concepts:
        return {}
    return {int(f["id"]): f["label"] for f in concepts.get("features", []) if f.get("labelled")}


NAMED_FIRE_SHARE = 0.3
"""A named feature counts as firing on an image when its peak there reaches this share of its peak
over the dictionary's images. The dictionary's own rule (0.1) serves its precision estimate; for
the names a table shows, 0.3 made them true of the toy images 89% of the time (0.1: 77%, 0.5: 95%
but half as many names; `python -m concepts.toy.evaluate names`, on the toy's previous weights)."""


def named_features_firing(maps: np.ndarray, concepts: dict | None, share: float = NAMED_FIRE_SHARE) -> list[int]:
    """Labelled features whose peak on this image reaches `share` of their peak in the dictionary."""
    if not concepts:
        return []
    peaks = maps.max(axis=(0, 1))
    return [int(f["id"]) for f in concepts.get("features", [])
            if f.get("labelled") and 0 <= int(f["id"]) < len(peaks) and peaks[int(f["id"])] >= share * float(f.get("peak", 0.0)) and peaks[int(f["id"])] > 0]


def top_features(maps: np.ndarray, concepts: dict | None, count: int, share: float = NAMED_FIRE_SHARE) -> list[FeatureRow]:
    """`count` features by mean activation, strongest first. Up to half of them are named features
    firing here (the strongest of each label first, so the rows show many concepts), the rest the
    strongest of all; features that never fired are left out."""
    means, peaks = maps.mean(axis=(0, 1)), maps.max(axis=(0, 1))
    labels = feature_labels(concepts)
    by_mean = [int(i) for i in np.argsort(-means, kind="stable") if means[i] > 0]
    firing = set(named_features_firing(maps, concepts, share))
    named = [i for i in by_mean if i in firing]
    first_of_each_label = [i for k, i in enumerate(named) if labels[i] not in {labels[j] for j in named[:k]}]
    chosen = list(dict.fromkeys(first_of_each_label + named))[: count // 2]  # many concepts before many features of one
    chosen += [i for i in by_mean if i not in chosen][: count - len(chosen)]
    order = sorted(chosen, key=by_mean.index)
    return [FeatureRow(i, float(means[i]), float(peaks[i]), labels.get(i)) for i in order]


def search_concepts(concepts: dict | None, query: str) -> list[tuple[str, list[int], str]]:
    """(name, feature ids, kind) of every label, group, read-out and place containing `query`
    (case-insensitive; `concepts.dictionary.named_entries` says what the kinds are); "" lists all."""
    if not concepts:
        raise InvalidInputError("concept", "this SAE has no concept dictionary to search")
    needle = query.strip().lower()
    return [entry for entry in named_entries(concepts) if needle in entry[0].lower()]


def not_found_reason(concepts: dict | None, query: str, labelled_elsewhere: list[str] = (),
                     other_blocks: dict[str, list[str]] | None = None) -> str:
    """Why a search found nothing, in a sentence a student can act on: how near this SAE's best
    feature comes to the value (when the dictionary knows it), which other windows of the block find
    it, and which other blocks (with their windows) do."""
    needle = " ".join(query.lower().split())
    near = next((row | {"label": label} for label, row in (concepts or {}).get("closest", {}).items() if label.lower() == needle), None)
    bar = (concepts or {}).get("config", {}).get("labelled_precision", 0.8)
    if near is None:
        text = f"no label contains {query!r}"
    else:
        text = (f"no feature of this SAE stands for {near['label']!r}, alone, in a group or weighed against others: a label needs {bar:.0%} of the images a feature fires on "
                f"to show it, and the nearest, feature {near['feature']}, fires on {near['precision']:.0%} such images")
    if labelled_elsewhere:
        text += f"; found in the {', '.join(labelled_elsewhere)} window{'s' if len(labelled_elsewhere) > 1 else ''} of this block"
    if other_blocks:
        text += "; found at " + ", ".join(f"{block} ({', '.join(windows)})" for block, windows in other_blocks.items())
    return text


def run_explore(
    model: str | None,
    prompt: str,
    block: str,
    window: str = "middle",
    *,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    top: int = 12,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
) -> ExploreOutcome:
    """Generate once, reading the block through the SAE of the window's stage (each denoising step
    reported to `progress`)."""
    world, request, warnings, pipe = prepare(model, prompt, seed=seed, steps=steps, guidance=guidance, device=device, registry=registry, cache=cache)
    steps_window = StepWindow.parse(window, request.steps)
    stage = sae_stage(steps_window, request.steps)
    loaded = SAES.get(world, block, stage, "cond", pipe.unet)
    total: list[torch.Tensor] = []

    def sink(name: str, capture: Capture) -> None:
        maps = feature_maps(loaded.sae, capture.cond)[0].float().cpu()
        if total:
            total[0] += maps
        else:
            total.append(maps)

    def hooks() -> list[BlockHooks]:
        total.clear()  # a rerun (the shared batch failed) starts the sum again
        return [BlockHooks(pipe.unet, capture=[loaded.entry.block], capture_window=steps_window, sink=sink, reads=loaded.entry.reads)]  # type: ignore[arg-type]

    started = time.perf_counter()
    result = batched_generate(pipe, request, on_step=step_reporter(progress), hooks=hooks)  # a class's explores share UNet batches
    BASELINES.put(world, pipe, request, result)  # steering this image next reuses it as its baseline
    maps = (total[0] / (steps_window.end - steps_window.start + 1)).numpy()
    return ExploreOutcome(
        world, request, loaded.entry.block, steps_window, stage, result.images[0], maps,
        top_features(maps, loaded.concepts, top), loaded.concepts, warnings, time.perf_counter() - started,
    )
