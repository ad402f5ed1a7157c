"""One steering request end to end (shared by the CLI and the app): baseline and steered images from
the same seed, the edit that was applied, and where the picture changed.

The SAE is the one trained for the stage the window falls in (a custom window "A:B" uses the stage
of its middle step), on the cond branch, as in the paper. A concept label is looked up in that SAE's
dictionary; feature ids are taken as given. Everything is validated before the model runs, and the
edit lives only inside this call's hooks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from ..batching import batched_generate
from ..progress import ProgressFn, step_reporter
from ..devices import execution_device, unet_dtype
from ..dictionary import concept_features, place_of
from ..errors import InvalidInputError
from ..generation import prepare
from ..hooks import BlockHooks
from ..pipeline import PipelineCache
from ..registry import ModelWorld, Registry
from ..saes import SAES, LoadedSAE
from ..sampling import GenerationRequest, GenerationResult
from ..steps import StepWindow, sae_stage
from .steering import SteeringPlan, region_mask

BASELINES_KEPT = 16


class BaselineCache:
    """Recent unsteered generations by (model, request): a user tuning β or the region re-steers the
    same prompt and seed, and the baseline is a pure function of them, so it is made once."""

    def __init__(self, size: int = BASELINES_KEPT) -> None:
        self.size = size
        self._results: OrderedDict[tuple, GenerationResult] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(world: ModelWorld, pipe, request: GenerationRequest) -> tuple:
        r = request
        return (world.name, str(execution_device(pipe)), str(unet_dtype(pipe)), tuple(r.prompts), r.seed, r.steps, r.guidance, r.height, r.width, r.negative_prompt, r.images_per_prompt)

    def get(self, world: ModelWorld, pipe, request: GenerationRequest) -> GenerationResult:
        with self._lock:
            found = self._results.get(self.key(world, pipe, request))
            if found is not None:
                self._results.move_to_end(self.key(world, pipe, request))
                return found
        result = batched_generate(pipe, request)  # a class's baselines share UNet batches
        self.put(world, pipe, request, result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._results.clear()

    def put(self, world: ModelWorld, pipe, request: GenerationRequest, result: GenerationResult) -> None:
        """Keep a result made without edits (reading hooks do not change it)."""
        with self._lock:
            self._results[self.key(world, pipe, request)] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)


BASELINES = BaselineCache()


@dataclass(frozen=True)
class SteerSpec:
    """What the user asked for, before it is resolved against a model."""

    block: str
    window: str
    """"early", "middle", "final", "all" or "A:B" (step indices, inclusive)."""
    strength: float
    concept: str | None = None
    features: tuple[int, ...] = ()
    region: str | None = "global"
    """A preset region name (`steering.REGIONS`); ignored when `mask` is given."""
    mask: torch.Tensor | None = None
    branch: str | None = None
    """"cond" or "both" (None: the model's default, `defaults.steer_branch`)."""


class SteerOutcome(NamedTuple):
    world: ModelWorld
    request: GenerationRequest
    plan: SteeringPlan
    stage: str
    baseline: GenerationResult
    steered: GenerationResult
    change: torch.Tensor
    """[B, H, W]: mean absolute pixel change per position (0..1), the difference heatmap."""
    warnings: list[str]
    seconds: float


def resolve_features(loaded: LoadedSAE, concept: str | None, features: Sequence[int]) -> tuple[int, ...]:
    if concept and features:
        raise InvalidInputError("concept", "give a concept label or feature ids, not both")
    if concept:
        if not loaded.concepts:
            raise InvalidInputError("concept", "this SAE has no concept dictionary; choose feature ids instead")
        return tuple(concept_features(loaded.concepts, concept))
    if not features:
        raise InvalidInputError("concept", "choose a concept label or at least one feature id")
    return tuple(int(f) for f in features)


def plan_steering(world: ModelWorld, spec: SteerSpec, request: GenerationRequest, unet: torch.nn.Module) -> tuple[SteeringPlan, LoadedSAE, str]:
    window = StepWindow.parse(spec.window, request.steps)
    stage = sae_stage(window, request.steps)
    loaded = SAES.get(world, spec.block, stage, "cond", unet)
    features = resolve_features(loaded, spec.concept, spec.features)
    region = spec.region or "global"
    place = place_of(loaded.concepts, spec.concept) if not spec.features else None
    if place is not None and region == "global" and spec.mask is None:
        region = place  # a place is its object features steered there (`concepts.mask_dictionary`)
    mask = spec.mask if spec.mask is not None else region_mask(region, request.height, request.width)
    plan = SteeringPlan(loaded.entry.block, features, window, spec.strength, mask, spec.branch or world.defaults.steer_branch,
                        feature_scale(world, loaded))
    return plan, loaded, stage


def feature_scale(world: ModelWorld, loaded: LoadedSAE) -> torch.Tensor | None:
    """The per-feature scale of a strength: the features' mean activations on a world whose strength
    means the sdxl-unbox demo's (its SAEs ship `mean.pt`), else None (the paper's edits)."""
    if world.defaults.strength_scale != "feature-mean":
        return None
    if loaded.feature_mean is None:
        raise InvalidInputError("strength", f"{world.name}'s strengths are scaled by each feature's mean activation, but the SAE of {loaded.entry.block} ships none")
    return loaded.feature_mean


def run_steering(
    model: str | None,
    prompt: str,
    spec: SteerSpec,
    *,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
) -> SteerOutcome:
    world, request, warnings, pipe = prepare(model, prompt, seed=seed, steps=steps, guidance=guidance, device=device, registry=registry, cache=cache)
    plan, loaded, stage = plan_steering(world, spec, request, pipe.unet)
    started = time.perf_counter()
    baseline = BASELINES.get(world, pipe, request)
    steered = batched_generate(  # a class's steerings share UNet batches, each edit on its own rows
        pipe, request, on_step=step_reporter(progress, "steered image: denoising step"),
        hooks=lambda: [BlockHooks(pipe.unet, edits=[plan.edit(loaded.sae)], reads=loaded.entry.reads)],  # type: ignore[arg-type]
    )
    change = (steered.pixels - baseline.pixels).abs().mean(dim=1)
    return SteerOutcome(world, request, plan, stage, baseline, steered, change, warnings, time.perf_counter() - started)
