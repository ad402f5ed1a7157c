"""`python -m concepts.toy.evaluate steer`: does steering do what it says on the toy, per window?

- **Spatial** (layout): for a fully specified prompt, the features that fire on the object's cell
  (more than elsewhere, in the baseline) are steered into another cell with the spatial edit.
  Success: the judge reads the object's position as the target cell.
- **Global** (appearance): the features the dictionary labels with another colour, texture or shape
  (or, for a value no feature is labelled with, its group, `concepts.feature_groups`) are added
  everywhere with the global edit. Success: the judge reads the target value.
- **Place** (what concept search gives for "bottom right"): the dictionary's place features (the
  block's object features, `concepts.mask_dictionary`) steered into the target cell with the spatial
  edit, as the Steer tab does when a student searches a place and steers it. Success as spatial.
- **Already there**: how often the baseline already shows the target (success must beat it).
- **Kept**: in every steered image, the share of the other attributes that the judge reads the same
  as in the baseline (the edit should change its attribute and leave the rest).
- **Clean success**: the edit counts only when the scene is still one clean object: the judge reads
  the target, every other attribute as in the baseline, and outside a 32-px box around the object's
  cell at most 2 % of the pixels differ from the background (by more than 60/255 in a channel; every
  baseline image of the toy passes). A blob painted in the corner over a smeared background, with
  the old object still ghosted where it was, is a position success but not a clean one.
- **Prompts**: fully specified ones name the position, so an early edit fights the prompt; with
  `prompts_open` the position is left out of the caption, the paper's setting ("a photo of a dog"),
  and the object's cell is where the judge reads it in the baseline.

Each is measured per stage window (early, middle, final) and for a few strengths, since the paper's
β scaling does not carry over to other models exactly. The paper's pattern: early steps move
layout, middle steps change appearance, final steps only texture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..dictionary import named_entries
from ..features import feature_maps
from ..hooks import BlockHooks, Capture
from ..pipeline import PipelineCache
from ..registry import load_registry
from ..saes import SAES
from ..sampling import GenerationRequest, generate
from ..steer.steering import CELLS, SteeringPlan, pool_to_grid, region_mask
from ..steps import STAGES, StepWindow, stage_of
from .judge import load_judge
from .prompts import labelled_prompts, readable_label
from .captions import caption
from .world import ATTRIBUTES, BACKGROUNDS, POSITIONS

TOY_MODEL = "toy-shapes"


@dataclass
class SteerEvalConfig:
    prompts: int = 12
    block: str = "mid_block.attentions.0"
    spatial_strengths: tuple[float, ...] = (8.0, 16.0)
    global_strengths: tuple[float, ...] = (300.0, 1000.0)
    object_features: int = 8
    """How many of the object's strongest features the spatial edit moves."""
    seed: int = 4321
    windows: tuple[str, ...] = field(default=STAGES)
    prompt_kinds: tuple[str, ...] = ("named",)
    """"named": fully specified prompts; "open": the same with the position left out."""
    target_kinds: tuple[str, ...] = ("label", "group")
    """What the global rows may steer to (`concepts.dictionary.named_entries` kinds); add "read-out"
    to steer read-outs' features for the value too."""


CLEAN_BOX = 16
"""Half the side of the box around the object's cell centre that may differ from the background."""
CLEAN_STRAY = 0.02
"""The most of the image outside that box that may differ from the background."""
CLEAN_TOLERANCE = 60 / 255


def stray_share(pixels: np.ndarray, background: str, cell: str) -> float:
    """The share of pixels [3, H, W] outside the box around `cell` that are not the background colour."""
    cx, cy = POSITIONS[cell]
    outside = np.ones(pixels.shape[1:], bool)
    outside[max(0, cy - CLEAN_BOX): cy + CLEAN_BOX, max(0, cx - CLEAN_BOX): cx + CLEAN_BOX] = False
    deviation = np.abs(pixels.transpose(1, 2, 0) - np.asarray(BACKGROUNDS[background]) / 255).max(-1)
    return float((deviation[outside] > CLEAN_TOLERANCE).mean())


def clean(read: dict[str, str], pixels: np.ndarray, baseline: dict[str, str], changed: str, target: str) -> bool:
    """One clean object with the target change: the target read, the rest as in the baseline, and no
    stray paint outside the object's box."""
    return (read[changed] == target and kept(baseline, read, changed) == 1.0
            and stray_share(pixels, read["background"], read["position"]) <= CLEAN_STRAY)


def target_cell(position: str) -> str:
    """The cell diagonally opposite (the centre goes to the top left): always a real move."""
    index = CELLS.index(position)
    return CELLS[0] if index == 4 else CELLS[8 - index]


def object_features(maps: np.ndarray, cell: str, count: int) -> list[int]:
    """Features firing more inside `cell` than outside it, strongest difference first."""
    h, w, _ = maps.shape
    inside = pool_to_grid(region_mask(cell, 64, 64), h, w).numpy() >= 0.5
    score = maps[inside].mean(0) - maps[~inside].mean(0)
    order = np.argsort(-score)[:count]
    return [int(i) for i in order if score[i] > 0]


def kept(before: dict[str, str], after: dict[str, str], changed: str) -> float:
    others = [a for a in ATTRIBUTES if a != changed]
    return sum(before[a] == after[a] for a in others) / len(others)


class Tally:
    """Success and kept rates per (kind, window, strength)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, float], list[tuple[bool, float, bool]]] = {}
        self.skipped: dict[tuple[str, str], int] = {}
        self.already: dict[tuple[str, str], list[bool]] = {}

    def add(self, kind: str, window: str, strength: float, success: bool, kept_share: float, clean_success: bool) -> None:
        self.rows.setdefault((kind, window, strength), []).append((success, kept_share, clean_success))

    def baseline(self, kind: str, window: str, already_there: bool) -> None:
        self.already.setdefault((kind, window), []).append(already_there)

    def skip(self, kind: str, window: str) -> None:
        self.skipped[(kind, window)] = self.skipped.get((kind, window), 0) + 1

    def report(self, kind: str, windows: tuple[str, ...], strengths: tuple[float, ...]) -> dict:
        out = {}
        for window in windows:
            per = {}
            for strength in strengths:
                rows = self.rows.get((kind, window, strength), [])
                per[f"{strength:g}"] = {
                    "trials": len(rows),
                    "success": round(float(np.mean([r[0] for r in rows])), 3) if rows else None,
                    "kept": round(float(np.mean([r[1] for r in rows])), 3) if rows else None,
                    "clean_success": round(float(np.mean([r[2] for r in rows])), 3) if rows else None,
                }
            already = self.already.get((kind, window), [])
            out[window] = {
                "by_strength": per,
                "already_there": round(float(np.mean(already)), 3) if already else None,
                "no_features": self.skipped.get((kind, window), 0),
            }
        return out


def evaluate_steering(cfg: SteerEvalConfig = SteerEvalConfig(), model: str = TOY_MODEL) -> dict:
    started = time.time()
    world = load_registry().get(model)
    pipe = PipelineCache().get(world, device="cpu")
    judge = load_judge(world.base_dir / world.pipeline.path / "judge")
    steps, guidance = world.defaults.steps, world.defaults.guidance
    windows = {w: StepWindow.parse(w, steps) for w in cfg.windows}
    saes = {w: SAES.get(world, cfg.block, stage_of((win.start + win.end) // 2, steps), "cond", pipe.unet) for w, win in windows.items()}
    tallies = {kind: Tally() for kind in cfg.prompt_kinds}
    baseline_clean: list[bool] = []

    def judged(result) -> tuple[dict[str, str], np.ndarray]:
        return judge.predict(result.pixels)[0], result.pixels[0].numpy()

    for kind in cfg.prompt_kinds:
        tally = tallies[kind]
        for i, (scene, full) in enumerate(labelled_prompts(cfg.prompts, cfg.seed, "train")):
            prompt = full if kind == "named" else caption(scene, keep=set(ATTRIBUTES) - {"position"})
            request = GenerationRequest(prompt, seed=cfg.seed + i, steps=steps, guidance=guidance, height=64, width=64)
            sums = {w: None for w in windows}

            def sink(block: str, capture: Capture) -> None:
                for w, win in windows.items():
                    if win.contains(capture.step.index):
                        maps = feature_maps(saes[w].sae, capture.cond)[0].float()
                        sums[w] = maps if sums[w] is None else sums[w] + maps

            with BlockHooks(pipe.unet, capture=[cfg.block], sink=sink) as hooks:
                baseline = generate(pipe, request, hooks)
            before, pixels = judged(baseline)
            baseline_clean.append(stray_share(pixels, before["background"], before["position"]) <= CLEAN_STRAY)
            here = scene.position if kind == "named" else before["position"]  # an open prompt's object is where it was drawn
            for w, win in windows.items():
                loaded = saes[w]
                target = target_cell(here)

                def move(kind: str, features: list[int] | None) -> None:
                    """Steer `features` into the target cell with the spatial edit; tally as `kind`."""
                    if not features:
                        tally.skip(kind, w)
                        return
                    tally.baseline(kind, w, before["position"] == target)
                    for strength in cfg.spatial_strengths:
                        plan = SteeringPlan(loaded.entry.block, tuple(features), win, strength, region_mask(target, 64, 64))
                        after, after_pixels = _steered(pipe, request, plan, loaded.sae, judged)
                        tally.add(kind, w, strength, after["position"] == target, kept(before, after, "position"),
                                  clean(after, after_pixels, before, "position", target))

                # Spatial: move the object's own features to the opposite cell.
                move("spatial", object_features(sums[w].numpy(), here, cfg.object_features))
                # Place: the searched place's features (the object features) steered into that cell.
                move("place", ((loaded.concepts or {}).get("places") or {}).get(target))
                # Global: add another colour's / texture's / shape's features everywhere.
                for attribute in ("colour", "texture", "shape"):
                    goal = _searchable_other(loaded.concepts, attribute, getattr(scene, attribute), i, cfg.target_kinds)
                    if goal is None:
                        tally.skip(attribute, w)
                        continue
                    value, features = goal
                    tally.baseline(attribute, w, before[attribute] == value)
                    for strength in cfg.global_strengths:
                        plan = SteeringPlan(loaded.entry.block, tuple(features), win, strength, None)
                        after, after_pixels = _steered(pipe, request, plan, loaded.sae, judged)
                        tally.add(attribute, w, strength, after[attribute] == value, kept(before, after, attribute),
                                  clean(after, after_pixels, before, attribute, value))
    first = tallies[cfg.prompt_kinds[0]]
    report = {
        "what": "steer",
        "model": world.name,
        "block": cfg.block,
        "prompts": cfg.prompts,
        "steps": steps,
        "guidance": guidance,
        "spatial": first.report("spatial", cfg.windows, cfg.spatial_strengths),
        "place": first.report("place", cfg.windows, cfg.spatial_strengths),
        "global_colour": first.report("colour", cfg.windows, cfg.global_strengths),
        "global_texture": first.report("texture", cfg.windows, cfg.global_strengths),
        "global_shape": first.report("shape", cfg.windows, cfg.global_strengths),
        "baseline_clean": round(float(np.mean(baseline_clean)), 3),
        "clean_rule": {"box_half_px": CLEAN_BOX, "stray_share_at_most": CLEAN_STRAY, "tolerance": round(CLEAN_TOLERANCE, 4)},
        "seconds": round(time.time() - started, 1),
    }
    if "open" in cfg.prompt_kinds and cfg.prompt_kinds[0] != "open":
        report["position_open"] = {"spatial": tallies["open"].report("spatial", cfg.windows, cfg.spatial_strengths),
                                   "place": tallies["open"].report("place", cfg.windows, cfg.spatial_strengths),
                                   "global_texture": tallies["open"].report("texture", cfg.windows, cfg.global_strengths)}
    report["best_window"] = {kind: _best_window(report[kind]) for kind in ("spatial", "global_colour", "global_texture", "global_shape")}
    return report


def _steered(pipe, request: GenerationRequest, plan: SteeringPlan, sae, judged) -> tuple[dict[str, str], np.ndarray]:
    with BlockHooks(pipe.unet, edits=[plan.edit(sae)]) as hooks:
        return judged(generate(pipe, request, hooks))


def _searchable_other(concepts: dict | None, attribute: str, current: str, turn: int,
                      kinds: tuple[str, ...] = ("label", "group")) -> tuple[str, list[int]] | None:
    """Another value of `attribute` that concept search finds as one of `kinds` (rotating by prompt)."""
    found = {name: ids for name, ids, kind in named_entries(concepts) if kind in kinds}
    options = [(value, found[label]) for value in ATTRIBUTES[attribute]
               if value != current and found.get(label := readable_label(attribute, value))]
    return options[turn % len(options)] if options else None


def _best_window(by_window: dict) -> str | None:
    best, best_rate = None, -1.0
    for window, row in by_window.items():
        rates = [v["success"] for v in row["by_strength"].values() if v["success"] is not None]
        if rates and max(rates) > best_rate:
            best, best_rate = window, max(rates)
    return best
