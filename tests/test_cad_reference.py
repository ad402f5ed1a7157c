"""Parity with CAD as its authors describe it, written from the method (not from their code):

scores = W ⊙ ∂J/∂W, J = Σ_t ‖ε(x_t, c) − stopgrad ε(x_t, "")‖², where faithful mode draws a fresh
trajectory for every timestep t (its own seed) and uses that trajectory's x_t, and fast mode takes
every x_t from one trajectory per image. The reference below does exactly that, one timestep at a
time with its own backward, running each trajectory to the end as the authors do; our attribution
batches the timesteps and stops each faithful trajectory at its step. Both must give the same scores
(to float rounding)."""

from __future__ import annotations

import pytest
import torch

from concepts.edit import AttributionConfig, attribute, ff_layers
from concepts.edit.attribution import prompt_embeddings
from concepts.sampling import GenerationRequest, fresh_scheduler, initial_latents, sample

PROMPT = "a red square"
CFG = AttributionConfig(steps=4, guidance=5.0, height=32, width=32, images=2, seed=3)


def trajectory_inputs(pipe, seed: int) -> list[torch.Tensor]:
    """Every x_t the sampler feeds the UNet on the concept prompt's trajectory (run to the end)."""
    request = GenerationRequest(PROMPT, seed=seed, steps=CFG.steps, guidance=CFG.guidance, height=CFG.height, width=CFG.width)
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(CFG.steps)
    inputs = [initial_latents(pipe, request, scheduler)]
    inputs += [state.latents for state in sample(pipe, request)]
    return inputs[:-1]


def reference_scores(pipe, mode: str) -> dict[str, torch.Tensor]:
    """The method, one (x_t, t) at a time: Σ over images and timesteps of ∂J_t/∂W, then W ⊙ that."""
    layers = ff_layers(pipe.unet)
    weights = [layer.weight for layer in layers.values()]
    uncond, cond = prompt_embeddings(pipe, PROMPT)
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(CFG.steps)
    total = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    for image in range(CFG.images):
        seed = CFG.seed + 1000 * image  # the seeds attribution documents: one per image, +1+t per faithful timestep
        fast_inputs = trajectory_inputs(pipe, seed) if mode == "fast" else None
        for index, timestep in enumerate(scheduler.timesteps):
            x = fast_inputs[index] if mode == "fast" else trajectory_inputs(pipe, seed + 1 + index)[index]
            t = timestep.reshape(1)
            with torch.no_grad():
                target = pipe.unet(x, t, encoder_hidden_states=uncond, return_dict=False)[0].float()
            for w in weights:
                w.requires_grad_(True)
            try:
                with torch.enable_grad():
                    pred = pipe.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0].float()
                    grads = torch.autograd.grad(((pred - target) ** 2).sum(), weights)
            finally:
                for w in weights:
                    w.requires_grad_(False)
            for acc, g in zip(total, grads):
                acc += g.double()
    return {name: (layer.weight.detach().double() * g).float() for (name, layer), g in zip(layers.items(), total)}


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_scores_equal_the_per_timestep_reference(tiny_pipe, mode):
    ours = attribute(tiny_pipe, PROMPT, AttributionConfig(**{**CFG.__dict__, "mode": mode}))
    reference = reference_scores(tiny_pipe, mode)
    assert set(ours) == set(reference)
    flat_ours = torch.cat([ours[n].flatten() for n in sorted(ours)]).double()
    flat_ref = torch.cat([reference[n].flatten() for n in sorted(reference)]).double()
    assert flat_ref.abs().max() > 0
    assert torch.allclose(flat_ours, flat_ref, rtol=1e-3, atol=1e-5 * float(flat_ref.abs().max()))
    assert torch.corrcoef(torch.stack([flat_ours, flat_ref]))[0, 1] > 0.99999


def test_faithful_and_fast_differ_as_the_method_says(tiny_pipe):
    """Faithful takes each x_t from its own trajectory, fast from one: not the same scores (a test
    that passed with both modes computing one thing would be worthless)."""
    fast = attribute(tiny_pipe, PROMPT, AttributionConfig(**{**CFG.__dict__, "mode": "fast"}))
    faithful = attribute(tiny_pipe, PROMPT, AttributionConfig(**{**CFG.__dict__, "mode": "faithful"}))
    assert any(not torch.allclose(fast[n], faithful[n]) for n in fast)
