"""One denoising step for several requests at once, each at its own step of its own schedule.

Continuous batching (`concepts.batching`): a request joins the shared UNet call at the next step
boundary and leaves it when its last step is done, so a 10-step evolution, a 25-step generation that
started a second earlier and a steering run all ride in the same UNet call. What makes that possible
is that nothing in one DDIM step (eta = 0) is shared across the batch except the UNet itself: the UNet
takes one timestep per row, and each request keeps its own scheduler, latents, conditioning, guidance
and hooks. So each request's rows go through exactly the maths of `sampling.sample` alone; only the
batched matrix products may round differently (within 1/255 per pixel, `tests/test_batching.py`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .conditioning import TextConditioning
from .devices import execution_device
from .hooks import BatchRows, BlockHooks, ScopedHooks, only_these_active
from .sampling import (GenerationRequest, GenerationResult, PreviewWhen, StepState, conditioning, decode_latents, finish,
                       fresh_scheduler, initial_latents)
from .steps import StepInfo, step_t
from .traced_blocks import traced_blocks
from .unet_clock import clocked_unet


@dataclass
class InFlight:
    """A request between its first and last step: its own scheduler, latents, conditioning and hooks."""

    pipe: object
    request: GenerationRequest
    hooks: list[ScopedHooks]
    """Already entered (in `stack`); told their rows and step before every shared UNet call."""
    stack: ExitStack
    previews: PreviewWhen = False
    scheduler: object = None
    latents: torch.Tensor | None = None
    text: TextConditioning | None = None
    index: int = 0
    last: StepState | None = field(default=None, repr=False)

    @classmethod
    def start(cls, pipe, request: GenerationRequest, hooks: Sequence[ScopedHooks], previews: PreviewWhen = False) -> "InFlight":
        """Encode the prompts, draw the seeded noise and enter the hooks (left again by `close`)."""
        stack = ExitStack()
        try:
            entered = [stack.enter_context(hook) for hook in hooks]
            scheduler = fresh_scheduler(pipe)
            scheduler.set_timesteps(request.steps, device=execution_device(pipe))
            text = conditioning(pipe, request)
            latents = initial_latents(pipe, request, scheduler)
        except BaseException:
            stack.close()
            raise
        return cls(pipe, request, entered, stack, previews, scheduler, latents, text)

    @property
    def images(self) -> int:
        return self.latents.shape[0]

    @property
    def num_steps(self) -> int:
        return len(self.scheduler.timesteps)

    @property
    def done(self) -> bool:
        return self.index >= self.num_steps

    def timestep(self) -> torch.Tensor:
        return self.scheduler.timesteps[self.index]

    def result(self) -> GenerationResult:
        """The final images, decoded and safety-checked as `sampling.generate` does."""
        return finish(self.pipe, self.latents)

    def close(self) -> None:
        """Leave the hooks (idempotent): called when the request is done, failed or cancelled."""
        self.stack.close()


def _halves(tensor: torch.Tensor, cfg: bool) -> tuple[torch.Tensor, ...]:
    return tensor.chunk(2) if cfg else (tensor,)


def merged_kwargs(texts: Sequence[TextConditioning], cfg: bool) -> dict:
    """The UNet's conditioning for requests side by side: every request's uncond rows, then every
    request's cond rows (the [uncond; cond] layout `hooks.BatchRows` expects), SDXL's added
    conditioning laid out the same way."""
    def merge(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [_halves(t, cfg) for t in tensors]
        return torch.cat([p[half] for half in range(len(parts[0])) for p in parts])

    kwargs: dict = {"encoder_hidden_states": merge([t.hidden for t in texts])}
    if texts[0].added is not None:
        kwargs["added_cond_kwargs"] = {key: merge([t.added[key] for t in texts]) for key in texts[0].added}
    return kwargs


def step_together(group: Sequence[InFlight], on_step: Callable[[InFlight, StepState], None]) -> None:
    """One UNet call for every request of `group` (same pipeline, image size and CFG on or off),
    each at its own step; then each request's own scheduler step, and `on_step` with its state."""
    first = group[0]
    pipe, cfg = first.pipe, first.request.cfg
    counts = [r.images for r in group]
    size = sum(counts)
    start = 0
    for r, count in zip(group, counts):
        info = StepInfo(index=r.index, num_steps=r.num_steps, timestep=int(r.timestep()), cfg=cfg)
        for hook in r.hooks:
            hook.rows = None if len(group) == 1 else BatchRows(start, start + count, size)
            if isinstance(hook, BlockHooks):
                hook.set_step(info)
        start += count
    latents = torch.cat([r.scheduler.scale_model_input(r.latents, r.timestep()) for r in group])
    timesteps = torch.cat([r.timestep().expand(r.images) for r in group])
    model_input, timesteps = (torch.cat([latents] * 2), torch.cat([timesteps] * 2)) if cfg else (latents, timesteps)
    with torch.no_grad():
        # only this group's hooks act (the worker has other groups' requests entered too), and the
        # blocks run traced where that is safe (one interpreter hand-off per block)
        with only_these_active(h for r in group for h in r.hooks), traced_blocks(pipe.unet), clocked_unet(size):
            noise = pipe.unet(model_input, timesteps, **merged_kwargs([r.text for r in group], cfg), return_dict=False)[0]
        halves = _halves(noise, cfg)
        start = 0
        for r, count in zip(group, counts):
            mine = [h[start:start + count] for h in halves]
            start += count
            guided = mine[0] + r.request.guidance * (mine[1] - mine[0]) if cfg else mine[0]
            out = r.scheduler.step(guided, r.timestep(), r.latents, eta=0.0, return_dict=True)
            index, timestep = r.index, int(r.timestep())
            r.latents, r.index = out.prev_sample, r.index + 1
            wanted = r.previews(index) if callable(r.previews) else r.previews
            preview = decode_latents(pipe, out.pred_original_sample) if wanted else None
            r.last = StepState(index, r.num_steps, step_t(index, r.num_steps), timestep, r.latents, out.pred_original_sample, preview)
            on_step(r, r.last)
