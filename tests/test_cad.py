"""CAD: attribution scores, the ablation plan, per-request ablation hooks, the score cache and the
first-order prediction check, on tiny random pipelines and on the toy model."""

from __future__ import annotations

import copy
import math
import threading

import pytest
import torch

from concepts.edit import (
    AblationHooks,
    AttributionConfig,
    attribute,
    ff_layers,
    plan_ablation,
)
from concepts.edit.ablation import AblationPlan
from concepts.edit.checks import prediction_check, random_plan
from concepts.errors import InvalidInputError
from concepts.sampling import GenerationRequest, generate

CFG = AttributionConfig(steps=3, guidance=5.0, height=32, width=32, images=1)


@pytest.fixture(scope="module")
def tiny_scores(tiny_pipe):
    return attribute(tiny_pipe, "a red square", CFG)


def test_scores_cover_every_feed_forward_weight_and_leave_the_model_as_it_was(tiny_pipe, tiny_scores):
    layers = ff_layers(tiny_pipe.unet)
    assert layers and all(name.endswith(("ff.net.0.proj", "ff.net.2")) for name in layers)
    assert set(tiny_scores) == set(layers)
    assert all(tiny_scores[n].shape == layers[n].weight.shape and tiny_scores[n].dtype == torch.float32 for n in layers)
    assert all(torch.isfinite(s).all() for s in tiny_scores.values()) and any(s.abs().sum() > 0 for s in tiny_scores.values())
    assert not any(p.requires_grad and p.grad is not None for p in tiny_pipe.unet.parameters())
    faithful = attribute(tiny_pipe, "a red square", AttributionConfig(**{**CFG.__dict__, "mode": "faithful"}))
    assert set(faithful) == set(tiny_scores)


def test_plan_zeroes_the_top_positive_weights_per_row(tiny_pipe, tiny_scores):
    scores = {n: torch.zeros_like(s) for n, s in tiny_scores.items()}
    name = next(iter(scores))
    scores[name][0, 3] = 2.0
    scores[name][0, 5] = 1.0
    scores[name][1, :] = -1.0  # never zero a weight whose removal would raise J
    assert plan_ablation(tiny_pipe.unet, scores, 0.01).count == 0  # too narrow for the ratio
    plan = plan_ablation(tiny_pipe.unet, scores, 0.01, min_per_row=1)
    assert plan.zeroed[name] == 1 and plan.count == 1
    removed = plan.removed[name]
    assert removed[0, 3] == ff_layers(tiny_pipe.unet)[name].weight[0, 3] and removed.count_nonzero() <= 1


@pytest.mark.parametrize("ratio", [0.0, -0.1, 0.9, math.nan, math.inf, "lots"])
def test_bad_ratio_is_named(tiny_pipe, tiny_scores, ratio):
    with pytest.raises(InvalidInputError, match="ratio"):
        plan_ablation(tiny_pipe.unet, tiny_scores, ratio)


def test_scores_of_another_model_are_refused(tiny_pipe, tiny_scores):
    wrong = dict(tiny_scores)
    wrong.pop(next(iter(wrong)))
    with pytest.raises(InvalidInputError, match="scores"):
        plan_ablation(tiny_pipe.unet, wrong, 0.1)


def test_hooks_equal_zeroing_the_weights_and_only_inside_their_with(tiny_pipe, tiny_scores):
    plan = plan_ablation(tiny_pipe.unet, tiny_scores, 0.2)
    request = GenerationRequest("a red square", seed=1, steps=3, guidance=5.0, height=32, width=32)
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    plain = generate(tiny_pipe, request).pixels
    with AblationHooks(tiny_pipe.unet, plan):
        hooked = generate(tiny_pipe, request).pixels
    zeroed = copy.deepcopy(tiny_pipe)
    for name, layer in ff_layers(zeroed.unet).items():
        layer.weight.data -= plan.removed[name]
    truly = generate(zeroed, request).pixels
    assert torch.allclose(hooked, truly, atol=1e-5) and not torch.allclose(hooked, plain)
    assert torch.equal(generate(tiny_pipe, request).pixels, plain)  # gone after the with
    assert all(torch.equal(before[k], v) for k, v in tiny_pipe.unet.state_dict().items())  # no weight written


def test_hooks_are_removed_on_error_and_invisible_to_other_threads(tiny_pipe, tiny_scores):
    plan = plan_ablation(tiny_pipe.unet, tiny_scores, 0.2)
    request = GenerationRequest("a blue circle", seed=2, steps=2, guidance=5.0, height=32, width=32)
    plain = generate(tiny_pipe, request).pixels
    seen = {}
    with pytest.raises(RuntimeError):
        with AblationHooks(tiny_pipe.unet, plan):
            worker = threading.Thread(target=lambda: seen.setdefault("other", generate(tiny_pipe, request).pixels))
            worker.start()
            worker.join()
            raise RuntimeError("boom")
    assert torch.equal(seen["other"], plain)  # the other thread never saw the edit
    assert all(not layer._forward_hooks for layer in ff_layers(tiny_pipe.unet).values())


def test_scores_predict_small_ablations(tiny_pipe, tiny_scores):
    check = prediction_check(tiny_pipe, "a red square", CFG, tiny_scores, trials=8, weights_per_trial=20)
    assert check.pearson > 0.5, (check.predicted, check.actual)


def test_random_plan_matches_a_plans_counts(tiny_pipe, tiny_scores):
    plan = plan_ablation(tiny_pipe.unet, tiny_scores, 0.1)
    rand = random_plan(tiny_pipe.unet, plan.count, seed=3, like=plan)
    assert isinstance(rand, AblationPlan) and rand.zeroed == plan.zeroed


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_amplify_target_is_what_the_model_is_trained_to_predict(tiny_pipe, prediction_type):
    """The amplify objective is the training loss: its target must be the noise for an ε model and
    the velocity for a v model. Either way, the clean latents recovered from (x_t, target) are the
    same at every timestep of one image (they are the image being denoised)."""
    from diffusers import DDIMScheduler

    from concepts.edit.attribution import _batches

    pipe = copy.copy(tiny_pipe)  # shallow: shares the modules, has its own scheduler
    pipe.scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler.config, prediction_type=prediction_type, rescale_betas_zero_snr=prediction_type == "v_prediction", timestep_spacing="trailing")
    cfg = AttributionConfig(objective="amplify", steps=4, guidance=5.0, height=32, width=32, images=1)
    noisy, timesteps, target = next(_batches(pipe, "a red square", cfg))
    a = pipe.scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    if prediction_type == "v_prediction":
        clean = a.sqrt() * noisy - (1 - a).sqrt() * target
    else:
        clean = (noisy - (1 - a).sqrt() * target) / a.sqrt()
    assert len(timesteps) == 4
    assert torch.allclose(clean, clean[:1].expand_as(clean), atol=1e-4)
    assert clean.abs().max() > 0.1
