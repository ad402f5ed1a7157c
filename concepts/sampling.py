"""A readable DDIM sampling loop with classifier-free guidance that yields every step.

It does what `StableDiffusionPipeline.__call__` does for plain text-to-image (same noise, same
scheduler maths, so the same image), but as a generator: callers see each step's latents and the
scheduler's predicted x0 (`pred_original_sample`, the "preview"), and the block hooks are told
which step the UNet is at. Each call builds its own scheduler from the pipeline's config, so
concurrent users sharing one pipeline never share scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .conditioning import TextConditioning, encode_conditioning, require_sd1
from .devices import execution_device, unet_dtype
from .errors import InvalidInputError
from .hooks import BlockHooks
from .progress import check_cancelled, step_done
from .steps import StepInfo, step_t
from .traced_blocks import traced_blocks
from .unet_clock import clocked_unet

MAX_SEED = 2**63 - 1


@dataclass
class GenerationRequest:
    """What to draw and how; validated on construction so a bad value names its field."""

    prompt: str | list[str]
    """One prompt or a batch of prompts; "" is the unconditional prompt (used by feature icons)."""
    seed: int = 0
    """Seeds the initial noise on the CPU: same seed, same image."""
    steps: int = 25
    """Number of DDIM denoising steps."""
    guidance: float = 7.5
    """Classifier-free guidance scale; at most 1 turns guidance (and the uncond branch) off."""
    height: int = 512
    width: int = 512
    negative_prompt: str = ""
    """The prompt of the uncond branch."""
    images_per_prompt: int = 1
    max_steps: int = field(default=1000, repr=False)
    """Upper bound on `steps` (the scheduler's training timesteps)."""
    seed_blocks: tuple[tuple[int, int], ...] = ()
    """Requests batched together (`concepts.batching`): (seed, prompts) per request, in order. Each
    block's noise comes from its own seed, exactly as that request alone draws it; () means `seed`
    seeds the whole batch."""

    def __post_init__(self) -> None:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise InvalidInputError("prompt", "must be a string or a non-empty list of strings")
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("steps", self.steps, 1, self.max_steps)
        check_int("images_per_prompt", self.images_per_prompt, 1, 64)
        for name in ("height", "width"):
            value = getattr(self, name)
            check_int(name, value, 8, 4096)
            if value % 8:
                raise InvalidInputError(name, f"must be a multiple of 8, got {value}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)):
            raise InvalidInputError("guidance", f"must be a number, got {self.guidance!r}")
        if not math.isfinite(self.guidance) or not 0 <= self.guidance <= 100:
            raise InvalidInputError("guidance", f"must be a finite number in 0..100, got {self.guidance}")

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def cfg(self) -> bool:
        """Guidance on, as diffusers decides it: the UNet batch is then [uncond, cond]."""
        return self.guidance > 1.0


def check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(name, f"must be an integer, got {repr(value)[:40]}")
    if not low <= int(value) <= high:
        shown = str(value) if abs(int(value)) < 10**30 else "a number that large"
        raise InvalidInputError(name, f"must be in {low}..{high}, got {shown}")


class StepState(NamedTuple):
    """The sampler after one denoising step (latents are [B, C, h, w]; preview is [B, 3, H, W] in [0, 1])."""

    index: int
    num_steps: int
    t: float
    timestep: int
    latents: torch.Tensor
    pred_x0: torch.Tensor
    preview: torch.Tensor | None


class GenerationResult(NamedTuple):
    """Final images (PIL, one per row of the batch), their pixel tensor in [0, 1], and NSFW flags if checked."""

    images: list[Image.Image]
    pixels: torch.Tensor
    nsfw: list[bool] | None


PreviewWhen = bool | Callable[[int], bool]


def fresh_scheduler(pipe: StableDiffusionPipeline) -> DDIMScheduler:
    """A private DDIM scheduler for one call, built from the pipeline's scheduler config."""
    return DDIMScheduler.from_config(pipe.scheduler.config)


def denoising_target(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to output for `clean` noised with `noise` at `timesteps`: the noise
    (ε-prediction) or the velocity (v-prediction), as the scheduler config says."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    return noise


def conditioning(pipe, request: GenerationRequest) -> TextConditioning:
    """The UNet's text conditioning for a request (SD1.x or SDXL), [uncond; cond] under CFG."""
    return encode_conditioning(pipe, request.prompts, request.negative_prompt, request.images_per_prompt, request.cfg, request.height, request.width)


def encode_text(pipe: StableDiffusionPipeline, request: GenerationRequest) -> torch.Tensor:
    """SD1.x text embeddings alone ([uncond; cond] under CFG), for code that calls the UNet itself
    with nothing else (CAD attribution); SDXL is refused with a clear message."""
    require_sd1(pipe, "Erase / amplify (CAD attribution)")
    return conditioning(pipe, request).hidden


@torch.no_grad()
def decode_latents(pipe: StableDiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents [B, C, h, w] to pixels [B, 3, H, W] in [0, 1] (float32)."""
    scaled = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
    pixels = pipe.vae.decode(scaled, return_dict=False)[0]
    return (pixels.float() / 2 + 0.5).clamp(0, 1)


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] → PIL images, rounded as diffusers' image processor rounds them."""
    array = (pixels.detach().cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    return [Image.fromarray(a) for a in array]


def initial_latents(pipe: StableDiffusionPipeline, request: GenerationRequest, scheduler: DDIMScheduler) -> torch.Tensor:
    """Seeded start noise, drawn on the CPU so a seed means the same image on every device."""
    batch = len(request.prompts) * request.images_per_prompt
    shape = (
        batch,
        pipe.unet.config.in_channels,
        request.height // pipe.vae_scale_factor,
        request.width // pipe.vae_scale_factor,
    )
    blocks = request.seed_blocks or ((request.seed, len(request.prompts)),)
    noise = torch.cat([randn_tensor((count * request.images_per_prompt, *shape[1:]), generator=torch.Generator("cpu").manual_seed(int(seed)),
                                    device=execution_device(pipe), dtype=unet_dtype(pipe)) for seed, count in blocks])
    if noise.shape[0] != batch:
        raise InvalidInputError("seed_blocks", f"cover {noise.shape[0]} images, the batch has {batch}")
    return noise * scheduler.init_noise_sigma


def guided_step(pipe: StableDiffusionPipeline, scheduler: DDIMScheduler, request: GenerationRequest, latents: torch.Tensor,
                timestep: torch.Tensor, unet_kwargs: dict):
    """One DDIM step (eta = 0) with classifier-free guidance as diffusers does it: the UNet on
    [uncond; cond] copies of `latents` when `request.cfg`; `unet_kwargs` carry the text conditioning
    for that batch. Returns the scheduler's output (prev_sample, pred_original_sample)."""
    model_input = torch.cat([latents] * 2) if request.cfg else latents
    model_input = scheduler.scale_model_input(model_input, timestep)
    with traced_blocks(pipe.unet), clocked_unet(latents.shape[0]):  # one interpreter hand-off per block (concepts/traced_blocks.py)
        noise = pipe.unet(model_input, timestep, **unet_kwargs, return_dict=False)[0]
    if request.cfg:
        noise_uncond, noise_cond = noise.chunk(2)
        noise = noise_uncond + request.guidance * (noise_cond - noise_uncond)
    return scheduler.step(noise, timestep, latents, eta=0.0, return_dict=True)


@torch.no_grad()
def sample(
    pipe: StableDiffusionPipeline,
    request: GenerationRequest,
    hooks: BlockHooks | Sequence[BlockHooks] = (),
    previews: PreviewWhen = False,
) -> Iterator[StepState]:
    """Run DDIM (eta = 0) and yield a `StepState` after every step.

    `hooks` must already be entered (`with BlockHooks(...)`); they are told the step before each
    UNet call. `previews` decodes the predicted x0 for every step (True) or for the steps it accepts.
    """
    hook_list = [hooks] if isinstance(hooks, BlockHooks) else list(hooks)
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(request.steps, device=execution_device(pipe))
    text = conditioning(pipe, request)
    latents = initial_latents(pipe, request, scheduler)
    num_steps = len(scheduler.timesteps)
    for index, timestep in enumerate(scheduler.timesteps):
        check_cancelled()  # a closed page's request stops here, before the next UNet call
        step = StepInfo(index=index, num_steps=num_steps, timestep=int(timestep), cfg=request.cfg)
        for h in hook_list:
            h.set_step(step)
        out = guided_step(pipe, scheduler, request, latents, timestep, text.unet_kwargs())
        step_done()
        latents, pred_x0 = out.prev_sample, out.pred_original_sample
        wanted = previews(index) if callable(previews) else previews
        preview = decode_latents(pipe, pred_x0) if wanted else None
        yield StepState(index, num_steps, step_t(index, num_steps), int(timestep), latents, pred_x0, preview)


def generate(
    pipe: StableDiffusionPipeline,
    request: GenerationRequest,
    hooks: BlockHooks | Sequence[BlockHooks] = (),
    on_step: Callable[[StepState], None] | None = None,
    previews: PreviewWhen = False,
) -> GenerationResult:
    """Sample to the end and decode; runs the model's own safety checker where it has one.
    `on_step` sees every step's state, with its decoded preview where `previews` asks for one."""
    last: StepState | None = None
    for state in sample(pipe, request, hooks, previews=previews):
        last = state
        if on_step is not None:
            on_step(state)
    assert last is not None  # steps >= 1 is validated
    return finish(pipe, last.latents)


@torch.no_grad()
def finish(pipe: StableDiffusionPipeline, latents: torch.Tensor) -> GenerationResult:
    """Decode the last step's latents, through the model's own safety checker where it has one."""
    pixels = decode_latents(pipe, latents)
    nsfw = None
    if getattr(pipe, "safety_checker", None) is not None:
        checked, nsfw_flags = pipe.run_safety_checker(pixels.permute(0, 2, 3, 1).cpu().numpy(), execution_device(pipe), unet_dtype(pipe))
        pixels = torch.from_numpy(np.asarray(checked)).permute(0, 3, 1, 2).float()
        nsfw = [bool(f) for f in nsfw_flags]
    return GenerationResult(to_pil(pixels), pixels, nsfw)
