"""Attribution scores W ⊙ ∂J/∂W for every feed-forward weight (docs/cad.md), accumulated in fp32.

A positive score says zeroing that weight lowers J (first order). Objectives:
- **erase**: J = Σ_t ‖ε(x_t, c) − stopgrad(ε(x_t, ""))‖², how far the concept prompt pulls the noise
  prediction away from the unconditional one along a sampling trajectory of the concept prompt.
  Zeroing the top positive weights weakens the concept.
  **Anchored** (our option, as ESD / Concept Ablation anchor on a neighbouring concept):
  J = Σ_t ‖ε(x_t, c) − stopgrad(mean_a ε(x_t, a))‖² over anchor prompts a (e.g. "a orange shape"),
  so the scores pick up only what tells the concept from its anchors, not what it shares with them.
  With several anchors this is the sum of the per-anchor J's up to a factor and a constant:
  Σ_a ‖p − t_a‖² = K‖p − t̄‖² + Σ_a ‖t_a − t̄‖², whose second term has no gradient (the targets are
  stop-gradient), so its scores are exactly those of the sum divided by K (same ranking).
- **amplify**: J = Σ_t ‖ε(x_t, c) − ε‖², the denoising loss on the model's own images of the concept
  (noised afresh at each timestep). Zeroing the top positive weights makes the model better at
  drawing the concept. For a v-prediction model (toy-shapes, SD2) the target is the true velocity
  instead of ε, as in its training loss; ε(·) above then stands for the model's output.

Modes: **faithful** draws a fresh trajectory (its own seed) for every timestep, as the authors do;
**fast** samples one trajectory per image and takes all its timesteps from it. Both batch their
(x_t, t) pairs through one backward per chunk (J is a sum, so its gradient is the sum of the chunks'),
and faithful runs its trajectories together as one batch in which each stops at the step it is
scored at: the authors run every trajectory to the end, twice the UNet calls for the same x_t.
The model is shared: gradients are taken with `torch.autograd.grad` on the feed-forward weights only,
inside a lock, and every `requires_grad` flag is restored afterwards.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import StableDiffusionPipeline

from ..devices import execution_device, unet_dtype
from ..errors import InvalidInputError
from ..sampling import (
    GenerationRequest,
    denoising_target,
    encode_text,
    fresh_scheduler,
    guided_step,
    initial_latents,
    sample,
)
from .components import ff_layers

Objective = Literal["erase", "amplify"]
Mode = Literal["fast", "faithful"]
_GRAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class AttributionConfig:
    objective: Objective = "erase"
    mode: Mode = "fast"
    steps: int = 25
    guidance: float = 7.5
    """Guidance of the sampled trajectories (the objective itself compares cond and uncond)."""
    height: int = 512
    width: int = 512
    seed: int = 0
    images: int = 2
    """Trajectories (erase) or images (amplify) the objective is summed over."""
    chunk: int = 25
    """Timesteps per forward/backward in fast mode (lower it to save memory at 512 px)."""
    anchor: tuple[str, ...] = ()
    """Erase only: the prompts whose (mean) prediction the concept's is compared with; () is CAD's ""."""

    def __post_init__(self) -> None:
        anchor = (self.anchor,) if isinstance(self.anchor, str) else self.anchor
        if not isinstance(anchor, (tuple, list)) or not all(isinstance(a, str) for a in anchor):
            raise InvalidInputError("anchor", "must be a tuple of prompts")
        anchor = tuple(a.strip() for a in anchor)
        object.__setattr__(self, "anchor", () if anchor == ("",) else anchor)  # "" alone is CAD's objective
        if self.anchor and self.objective != "erase":
            raise InvalidInputError("anchor", "applies to the erase objective only")
        if self.objective not in ("erase", "amplify"):
            raise InvalidInputError("objective", f"{self.objective!r} is not erase or amplify")
        if self.mode not in ("fast", "faithful"):
            raise InvalidInputError("mode", f"{self.mode!r} is not fast or faithful")
        if self.images < 1 or self.chunk < 1:
            raise InvalidInputError("images", "images and chunk must be at least 1")


def _request(prompt: str, cfg: AttributionConfig, seed: int) -> GenerationRequest:
    return GenerationRequest(prompt, seed=seed, steps=cfg.steps, guidance=cfg.guidance, height=cfg.height, width=cfg.width)


@torch.no_grad()
def _trajectory(pipe: StableDiffusionPipeline, prompt: str, cfg: AttributionConfig, seed: int) -> tuple[list[torch.Tensor], list[int], torch.Tensor]:
    """The latents x_t fed to the UNet at every step, their timesteps, and the final latents."""
    request = _request(prompt, cfg, seed)
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(request.steps, device=execution_device(pipe))
    states, inputs = [], [initial_latents(pipe, request, scheduler)]
    for state in sample(pipe, request):
        states.append(state)
        inputs.append(state.latents)
    return inputs[:-1], [s.timestep for s in states], states[-1].latents


@torch.no_grad()
def _stopped_inputs(pipe: StableDiffusionPipeline, prompt: str, cfg: AttributionConfig, seeds: list[int]) -> list[torch.Tensor]:
    """The UNet input x_t [1, C, h, w] of trajectory i (seeded `seeds[i]`) at step i: what the
    authors get by running each trajectory alone. Here they run as one batch (DDIM, eta = 0, the
    request's guidance) from which each trajectory leaves once it reaches its step."""
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(cfg.steps, device=execution_device(pipe))
    request = _request(prompt, cfg, seeds[0])
    text = encode_text(pipe, request)  # [uncond; cond] under guidance, else [cond]
    latents = torch.cat([initial_latents(pipe, _request(prompt, cfg, s), scheduler) for s in seeds])
    found: list[torch.Tensor] = []
    for index, timestep in enumerate(scheduler.timesteps[: len(seeds)]):
        found.append(latents[:1].clone())  # trajectory `index` is the first one left: its x_t at its own step
        latents = latents[1:]
        if not len(latents):
            break
        b = latents.shape[0]
        hidden = torch.cat([text[:1].expand(b, -1, -1), text[-1:].expand(b, -1, -1)]) if request.cfg else text.expand(b, -1, -1)
        latents = guided_step(pipe, scheduler, request, latents, timestep, {"encoder_hidden_states": hidden}).prev_sample
    return found


def prompt_embeddings(pipe: StableDiffusionPipeline, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uncond, cond) text embeddings [1, L, D] of "" and the prompt."""
    both = encode_text(pipe, GenerationRequest(prompt, guidance=2.0, height=8, width=8))
    return both[:1], both[1:]


def _anchor_embeddings(pipe: StableDiffusionPipeline, uncond: torch.Tensor, cfg: AttributionConfig) -> list[torch.Tensor]:
    """The embeddings [1, L, D] the erase target is predicted from: "" (CAD's), or each anchor prompt."""
    return [prompt_embeddings(pipe, a)[1] for a in cfg.anchor] if cfg.anchor else [uncond]


def _targets(pipe, latents: torch.Tensor, timesteps: torch.Tensor, anchors: list[torch.Tensor], cfg: AttributionConfig, true_target: torch.Tensor | None) -> torch.Tensor:
    """What the conditioned prediction is compared with: stopgrad ε(x_t, "") or the mean of
    stopgrad ε(x_t, a) over the anchors (erase), or the true noise or velocity (amplify)."""
    if cfg.objective == "amplify":
        return true_target.float()
    with torch.no_grad():
        b = latents.shape[0]
        preds = [pipe.unet(latents, timesteps, encoder_hidden_states=e.expand(b, -1, -1), return_dict=False)[0].float() for e in anchors]
        return preds[0] if len(preds) == 1 else torch.stack(preds).mean(0)


def _objective_terms(pipe, latents: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J summed over a batch of (x_t, t)."""
    b = latents.shape[0]
    pred = pipe.unet(latents, timesteps, encoder_hidden_states=cond.expand(b, -1, -1), return_dict=False)[0].float()
    return ((pred - target) ** 2).sum()


def _batches(pipe, prompt: str, cfg: AttributionConfig):
    """(latents, timesteps, denoising target) batches whose J terms sum to the objective (the
    target, the true noise or velocity, only for amplify)."""
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(cfg.steps, device=execution_device(pipe))
    dtype = unet_dtype(pipe)
    for image in range(cfg.images):
        seed = cfg.seed + 1000 * image
        if cfg.objective == "amplify":
            _, timesteps, x0 = _trajectory(pipe, prompt, cfg, seed)
            gen = torch.Generator("cpu").manual_seed(seed + 7)
            noise = torch.randn((len(timesteps), *x0.shape[1:]), generator=gen).to(x0.device, dtype)
            t = torch.tensor(timesteps, device=x0.device)
            clean = x0.expand(len(timesteps), -1, -1, -1)
            noisy = scheduler.add_noise(clean, noise, t).to(dtype)
            target = denoising_target(scheduler, clean, noise, t).to(dtype)
            items = [(noisy[i : i + 1], t[i : i + 1], target[i : i + 1]) for i in range(len(timesteps))]
        elif cfg.mode == "fast":
            inputs, timesteps, _ = _trajectory(pipe, prompt, cfg, seed)
            items = [(x, torch.tensor([ts], device=x.device), None) for x, ts in zip(inputs, timesteps)]
        else:  # faithful: a fresh trajectory for every timestep, each stopped at its step
            inputs = _stopped_inputs(pipe, prompt, cfg, [seed + 1 + index for index in range(cfg.steps)])
            items = [(x, scheduler.timesteps[index : index + 1].to(x.device), None) for index, x in enumerate(inputs)]
        size = cfg.chunk
        for start in range(0, len(items), size):
            part = items[start : start + size]
            target = torch.cat([p[2] for p in part]) if part[0][2] is not None else None
            yield torch.cat([p[0] for p in part]), torch.cat([p[1] for p in part]), target


def attribute(pipe: StableDiffusionPipeline, prompt: str, cfg: AttributionConfig = AttributionConfig()) -> dict[str, torch.Tensor]:
    """Scores W ⊙ ∂J/∂W (fp32, on the CPU) for every feed-forward weight, by layer name."""
    layers = ff_layers(pipe.unet)
    weights = [layer.weight for layer in layers.values()]
    uncond, cond = prompt_embeddings(pipe, prompt)
    anchors = _anchor_embeddings(pipe, uncond, cfg)
    grads = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    with _GRAD_LOCK:
        flags = [w.requires_grad for w in weights]
        try:
            for w in weights:
                w.requires_grad_(True)
            for latents, timesteps, true_target in _batches(pipe, prompt, cfg):
                target = _targets(pipe, latents, timesteps, anchors, cfg, true_target)
                with torch.enable_grad():
                    j = _objective_terms(pipe, latents, timesteps, cond, target)
                    for total, g in zip(grads, torch.autograd.grad(j, weights)):
                        total += g.float()
        finally:
            for w, flag in zip(weights, flags):
                w.requires_grad_(flag)
    return {name: (w.detach().float() * g).cpu() for (name, w), g in zip(((n, l.weight) for n, l in layers.items()), grads)}


@torch.no_grad()
def objective_value(pipe: StableDiffusionPipeline, prompt: str, cfg: AttributionConfig, ablation=None) -> float:
    """J itself (no gradients) on the unedited model's trajectories and targets, with an ablation (if
    given) applied to the conditioned prediction only: exactly the quantity the scores linearise."""
    from .ablation import AblationHooks

    uncond, cond = prompt_embeddings(pipe, prompt)
    anchors = _anchor_embeddings(pipe, uncond, cfg)
    total = 0.0
    for latents, timesteps, true_target in list(_batches(pipe, prompt, cfg)):  # trajectories of the unedited model
        target = _targets(pipe, latents, timesteps, anchors, cfg, true_target)
        if ablation is None:
            total += float(_objective_terms(pipe, latents, timesteps, cond, target))
        else:
            with AblationHooks(pipe.unet, ablation):
                total += float(_objective_terms(pipe, latents, timesteps, cond, target))
    return total
