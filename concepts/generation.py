"""One generation request end to end, shared by the CLI and the app so both validate alike.

Resolves the model world, checks the prompt, fills unset values from the world's defaults, loads
(or reuses) the pipeline and samples. Everything a user typed is validated before a model is touched.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from diffusers import StableDiffusionPipeline

from .batching import batched_generate
from .progress import ProgressFn, step_reporter
from .pipeline import PipelineCache
from .prompts import check_prompt, known_words_message, unknown_words
from .registry import ModelWorld, Registry, load_registry
from .sampling import GenerationRequest, GenerationResult

SHARED_PIPELINES = PipelineCache()
"""The process's pipelines, shared by every service (generation, steering) so each loads once."""


class GenerationOutcome(NamedTuple):
    world: ModelWorld
    request: GenerationRequest
    result: GenerationResult
    warnings: list[str]
    seconds: float


def build_request(
    world: ModelWorld,
    prompt: str,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str = "",
    images_per_prompt: int = 1,
) -> tuple[GenerationRequest, list[str]]:
    """A validated request, unset values taken from the world's defaults, plus prompt warnings."""
    checked = check_prompt(prompt)
    negative = check_prompt(negative_prompt, allow_empty=True, field="negative_prompt")
    d = world.defaults
    request = GenerationRequest(
        prompt=checked.text,
        seed=seed,
        steps=d.steps if steps is None else steps,
        guidance=d.guidance if guidance is None else guidance,
        height=height or d.height,
        width=width or d.width,
        negative_prompt=negative.text,
        images_per_prompt=images_per_prompt,
    )
    return request, checked.warnings


def prepare(
    model: str | None,
    prompt: str,
    *,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    **request_fields: object,
) -> tuple[ModelWorld, GenerationRequest, list[str], StableDiffusionPipeline]:
    """What every generating service starts with: the world, the validated request, the prompt's
    warnings (token truncation included) and the loaded pipeline."""
    world = (registry or load_registry()).get(model)
    request, warnings = build_request(world, prompt, **request_fields)
    pipe = (cache or SHARED_PIPELINES).get(world, device)
    warnings = list(dict.fromkeys(warnings + check_prompt(request.prompt, pipe.tokenizer).warnings))
    unknown = unknown_words(request.prompt, pipe.tokenizer) if world.defaults.closed_vocabulary else []
    if unknown:
        warnings.append(known_words_message(world.name, unknown) + "; they are read as noise")
    return world, request, warnings, pipe


def run_generation(
    model: str | None,
    prompt: str,
    *,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
    **request_fields: object,
) -> GenerationOutcome:
    """Validate (see `build_request` for the fields), load or reuse the pipeline, and generate
    (`progress` hears of every denoising step)."""
    world, request, warnings, pipe = prepare(model, prompt, device=device, registry=registry, cache=cache, **request_fields)
    started = time.perf_counter()
    result = batched_generate(pipe, request, on_step=step_reporter(progress))
    return GenerationOutcome(world, request, result, warnings, time.perf_counter() - started)
