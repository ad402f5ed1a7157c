"""`python -m concepts.toy.evaluate maps`: do the SAE concept maps point where the concept is?

The toy knows exactly where every object is (the renderer's shape mask, drawn at the prompt's
position without jitter). For fully specified prompts, every block's concept maps (the Evolution
tab's: per labelled concept, the strongest of its features at each position) are averaged over each
denoising window, upsampled (bilinear) from the block's grid to the image's 64 × 64 pixels as the
paper does, and compared with that mask:

- **object / background IoU**: where the block's features say the object is, against the mask. With
  dictionaries labelled against masks (`concepts.mask_dictionary`), a position is "object" where the
  features that fire on objects (each divided by its peak, summed) outweigh those that fire on
  backgrounds; older dictionaries: where the composition map's dominant concept is not a background.
  With a `region_cut` (chosen on the dictionary's own images), the object features count where
  their share of a cell passes it. `grid_ceiling_iou` is what the true mask drawn on the
  block's grid scores: each cell's covered share, upsampled the same way and cut at the one share
  best over the prompts (an 8 × 8 grid cannot draw a 14 px star);
- **concept IoU**: each concept the scene has (red, large, striped, top left …: the object mask;
  "white background": the rest), its map thresholded at 0.1 of its own peak as the paper does,
  against the mask; the mean per attribute and over all (the paper's mIoU is about 0.26 at the mid
  block on the first step, against Grounded-SAM masks of real images);
- **searchable**: which of the toy's 29 attribute values concept search finds at each block (a
  label of some window's dictionary, a group of features that stand for it only together,
  `concepts.feature_groups`, a read-out that weighs features for it against others,
  `concepts.feature_readouts`, or a place: the nine positions are found as the object features,
  `concepts.mask_dictionary`); `found_only_as_groups` names the values no window labels and
  `found_only_as_readouts` those no window labels or groups; for
  each missing value, the precision of the feature that comes nearest in any window (a label needs
  0.8: the share of the images it fires on, on its region, that show the value).
The first step of the early window is reported on its own, the paper's setting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..evolve.evolution import run_evolution
from ..dictionary import named_entries
from ..generation import SHARED_PIPELINES
from ..registry import load_registry
from ..saes import SAES
from ..steps import STAGES, stage_of
from .masks import object_mask, region_masks
from .prompts import labelled_prompts, readable_label
from .world import ATTRIBUTES, IMAGE_SIZE

TOY_MODEL = "toy-shapes"
PEAK_THRESHOLD = 0.1
COMPOSITION_FLOOR = 0.25


@dataclass
class MapsEvalConfig:
    prompts: int = 24
    seed: int = 2468


def upsampled(maps: np.ndarray) -> np.ndarray:
    """[labels, h, w] → [labels, 64, 64], bilinear."""
    return F.interpolate(torch.from_numpy(maps)[None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)[0].numpy()


GRID_CUTS = tuple(round(0.20 + 0.05 * i, 2) for i in range(13))
"""Cuts tried on the true mask drawn on a block's grid (0.20 … 0.80)."""


def grid_ious(scene, height: int, width: int) -> np.ndarray:
    """[GRID_CUTS] object/background IoU of the true mask drawn on the block's grid (each cell's
    covered share, upsampled back like the maps) cut at each of GRID_CUTS."""
    cells = region_masks([scene], height, width)[0, 0].reshape(1, height, width).astype(np.float32)
    drawn, truth = upsampled(cells)[0], object_mask(scene)
    return np.array([iou(drawn >= cut, truth) or 0.0 for cut in GRID_CUTS])


def grid_ceiling(per_scene: list[np.ndarray]) -> tuple[float, list[float]]:
    """The best one cut of the true mask on the grid does over these scenes (how well so coarse a
    grid can draw the objects at all), and each scene's IoU at that cut. Not a strict bound, but
    what a perfect map of the block, read like the block's maps, would score."""
    table = np.stack(per_scene)
    best = int(table.mean(axis=0).argmax())
    return round(float(table[:, best].mean()), 3), [float(v) for v in table[:, best]]


def iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else None


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 3) if values else None


def evaluate_maps(cfg: MapsEvalConfig = MapsEvalConfig(), model: str = TOY_MODEL) -> dict:
    started = time.time()
    world = load_registry().get(model)
    scenes = labelled_prompts(cfg.prompts, cfg.seed, "train")
    windows = ("first step", *STAGES)
    tallies: dict[tuple[str, str], dict[str, list]] = {}
    searchable: dict[str, set[str]] = {}
    ceilings: dict[str, list] = {}
    for i, (scene, prompt) in enumerate(scenes):
        evo = run_evolution(model, prompt, seed=cfg.seed + i, with_previews=False)
        steps = len(evo.timesteps)
        truth = {readable_label(a, getattr(scene, a)): ("background" if a == "background" else "object") for a in ATTRIBUTES}
        for block, trace in evo.traces.items():
            searchable.setdefault(block, set()).update(trace.labels)
            ceilings.setdefault(block, []).append(grid_ious(scene, *trace.maps[0].shape[1:]))
            for window in windows:
                chosen = [0] if window == "first step" else [s for s in range(steps) if stage_of(s, steps) == window]
                maps = upsampled(np.mean([trace.maps[s] for s in chosen], axis=0))  # [labels, 64, 64]
                grid = maps.shape[1:]
                obj = object_mask(scene)
                tally = tallies.setdefault((block, window), {"object": [], "concepts": [], **{a: [] for a in ATTRIBUTES}})
                if trace.regions and trace.region_maps:  # the dictionaries say where each feature fires
                    regions = upsampled(np.mean([trace.region_maps[s] for s in chosen], axis=0))
                    tally["object"].append(iou(regions.argmax(axis=0) == trace.regions.index("object"), obj))
                elif len(trace.labels):
                    strength = maps.max(axis=0)
                    dominant = maps.argmax(axis=0)
                    named = strength > COMPOSITION_FLOOR * max(float(strength.max()), 1e-12)
                    is_object = named & np.array([trace.groups[trace.labels[d]] != "background" for d in dominant.flat]).reshape(grid)
                    tally["object"].append(iou(is_object, obj))
                for row, label in enumerate(trace.labels):
                    if label not in truth or maps[row].max() <= 0:
                        continue
                    where = obj if truth[label] == "object" else ~obj
                    value = iou(maps[row] >= PEAK_THRESHOLD * maps[row].max(), where)
                    tally["concepts"].append(value)
                    attribute = next(a for a in ATTRIBUTES if readable_label(a, getattr(scene, a)) == label)
                    tally[attribute].append(value)
    every = {readable_label(a, v) for a, values in ATTRIBUTES.items() for v in values}
    report = {"what": "maps", "model": world.name, "prompts": cfg.prompts, "seed": cfg.seed,
              "paper": {"miou": 0.26, "where": "mid block, first step, against Grounded-SAM masks"}, "blocks": {}}
    pipe = SHARED_PIPELINES.get(world, "cpu")
    for block, labels in searchable.items():
        closest: dict[str, float] = {}
        dictionaries = [SAES.get(world, block, stage, "cond", pipe.unet).concepts or {} for stage in STAGES]
        for dictionary in dictionaries:  # what concept search finds: labels, groups, read-outs, places (positions)
            labels = labels | {name for name, _, _ in named_entries(dictionary)}
        for dictionary in dictionaries:
            near = dictionary.get("closest", {})
            for value in every - labels:
                if value in near:
                    closest[value] = max(closest.get(value, 0.0), near[value]["precision"])
        report["blocks"][block] = {
            "searchable": f"{len(labels & every)}/{len(every)}",
            "nearest_precision_of_missing": dict(sorted(closest.items(), key=lambda kv: -kv[1])),
            "grid_ceiling_iou": grid_ceiling(ceilings[block])[0],
            "missing": sorted(every - labels),
            "found_only_as_groups": sorted({name for d in dictionaries for name in d.get("groups", {})}
                                           - {name for d in dictionaries for name in d.get("concepts", {})}),
            "found_only_as_readouts": sorted({name for d in dictionaries for name in d.get("readouts", {})}
                                             - {name for d in dictionaries for name in (*d.get("concepts", {}), *d.get("groups", {}))}),
            "windows": {w: {"object_background_iou": mean(t["object"]), "concept_miou": mean(t["concepts"]),
                            "by_attribute": {a: mean(t[a]) for a in ATTRIBUTES}}
                        for (b, w), t in tallies.items() if b == block},
        }
    report["seconds"] = round(time.time() - started, 1)
    return report
