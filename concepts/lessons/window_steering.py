"""Steering a batch of prompts in each denoising window, each prompt with its own features and region.

Lessons 3 and 4 ask the same question of two edits: in which window does a steering edit still work?
One baseline batch is drawn while the block's features are read (summed per window); then, per
window, one steered batch in which each row gets its own edit (`per_row_edit`). The judge reads
every image; success needs the target read, a clean success also the rest as in the baseline and
no stray paint (`concepts.toy.evaluate_steer.clean`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..features import feature_maps
from ..hooks import BlockEdit, BlockHooks, Capture
from ..saes import SAES
from ..steer.steering import SteeringPlan
from ..steps import STAGES, StepWindow, stage_of
from ..toy.evaluate_steer import clean
from .toy_bench import ToyBench, per_row_edit

BLOCK = "mid_block.attentions.0"


@dataclass
class Goal:
    """What one row is steered towards: the changed attribute's target value, with which features where."""

    attribute: str
    target: str
    features: tuple[int, ...]
    mask: torch.Tensor | None
    """Image-resolution region (None: the global edit)."""


@dataclass
class WindowTally:
    trials: int = 0
    success: int = 0
    clean: int = 0
    no_goal: int = 0
    images: list = field(default_factory=list)
    goals: list = field(default_factory=list)


GoalFn = Callable[[int, dict[str, str], torch.Tensor, object], Goal | None]
"""(row, the judge's baseline reading, the row's feature maps summed over the window [H, W, n], the
window's loaded SAE) → the row's goal, or None when it has nothing to steer with."""


def steer_by_window(bench: ToyBench, prompts: Sequence[str], seed: int, strength: float, goal_for: GoalFn,
                    windows: Sequence[str] = STAGES) -> tuple[list[dict[str, str]], list, dict[str, WindowTally]]:
    """The baseline's readings and images, and per window the tally of the steered batch."""
    steps = bench.steps
    spans = {w: StepWindow.parse(w, steps) for w in windows}
    saes = {w: SAES.get(bench.world, BLOCK, stage_of((s.start + s.end) // 2, steps), "cond", bench.pipe.unet) for w, s in spans.items()}
    sums: dict[str, torch.Tensor | None] = {w: None for w in windows}

    def sink(block: str, capture: Capture) -> None:
        for w, span in spans.items():
            if span.contains(capture.step.index):
                maps = feature_maps(saes[w].sae, capture.cond).float()
                sums[w] = maps if sums[w] is None else sums[w] + maps

    def capture() -> list[BlockHooks]:
        sums.update({w: None for w in windows})  # a rerun alone starts the sums again
        return [BlockHooks(bench.pipe.unet, capture=[BLOCK], sink=sink)]

    baseline = bench.draw(prompts, seed, capture)
    before = bench.read(baseline)
    tallies = {}
    for w, span in spans.items():
        tally = WindowTally()
        goals = [goal_for(i, before[i], sums[w][i], saes[w]) for i in range(len(prompts))]
        fns = [None if g is None else SteeringPlan(BLOCK, g.features, span, strength, g.mask).edit(saes[w].sae).fn for g in goals]
        tally.no_goal = sum(g is None for g in goals)
        tally.goals = goals
        if any(fn is not None for fn in fns):
            edit = BlockEdit(BLOCK, per_row_edit(fns), span, "cond")
            steered = bench.draw(prompts, seed, lambda edit=edit: [BlockHooks(bench.pipe.unet, edits=[edit])])
            after, pixels = bench.read(steered), bench.pixels(steered)
            for i, goal in enumerate(goals):
                if goal is None:
                    continue
                tally.trials += 1
                tally.success += after[i][goal.attribute] == goal.target
                tally.clean += clean(after[i], pixels[i], before[i], goal.attribute, goal.target)
            tally.images = steered.images
        tallies[w] = tally
    return before, baseline.images, tallies
