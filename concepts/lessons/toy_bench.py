"""The toy world a lesson runs on: its pipeline (shared, read-only), judge and generation shared with the class.

Lessons always run on toy-shapes, whatever model the menu shows: only there does a judge know the
truth of every image, so every lesson's number is a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..batching import HooksFactory, batched_generate
from ..edit.service import EditSpec, concept_prompt, edit_plan
from ..generation import SHARED_PIPELINES
from ..registry import ModelWorld, Registry, load_registry
from ..sampling import GenerationRequest, GenerationResult

LESSON_MODEL = "toy-shapes"


@dataclass
class ToyBench:
    world: ModelWorld
    pipe: object
    judge: object
    """Reads every attribute of a batch of images: pixels [b, 3, H, W] in [0, 1] → list of dicts."""

    @property
    def steps(self) -> int:
        return self.world.defaults.steps

    def request(self, prompts: Sequence[str], seed: int) -> GenerationRequest:
        d = self.world.defaults
        return GenerationRequest(list(prompts), seed=seed, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width)

    def draw(self, prompts: Sequence[str], seed: int, hooks: HooksFactory | None = None) -> GenerationResult:
        """One batch at the world's defaults (image i gets the i-th slice of the seed's noise). A class
        running lessons at once shares UNet batches (`concepts.batching`): `hooks` builds this draw's
        hooks, which act on its own rows; it is called again if the draw has to rerun alone, so it
        resets what its sinks collected."""
        return batched_generate(self.pipe, self.request(prompts, seed), hooks=hooks)

    def edit(self, spec: EditSpec):
        """(scores, plan) of an erase at the world's defaults, as the Erase tab makes it (CAD's scores
        from the cache or the ones the toy ships)."""
        return edit_plan(self.world, self.pipe, spec, concept_prompt(self.world, spec), self.world.defaults.edit_ratio)

    def read(self, result: GenerationResult) -> list[dict[str, str]]:
        return self.judge(result.pixels)

    def pixels(self, result: GenerationResult) -> list[np.ndarray]:
        return [p.numpy() for p in result.pixels]


def toy_bench(registry: Registry | None = None) -> ToyBench:
    world = (registry or load_registry()).get(LESSON_MODEL)
    pipe = SHARED_PIPELINES.get(world, "cpu")
    reader = world.knowledge.reader()
    return ToyBench(world, pipe, reader)


def per_row_edit(edits: Sequence) -> object:
    """One edit function for a batch whose rows each get their own edit (their own features, region):
    row i of the read goes through edits[i]; a None edit leaves its row as it is."""
    def edit(step, read: torch.Tensor) -> torch.Tensor:
        rows = [read[i:i + 1] if fn is None else fn(step, read[i:i + 1]) for i, fn in enumerate(edits)]
        return torch.cat(rows, dim=0)
    return edit
