"""Steering edits: regions, validation, and that an edit changes Δ only through the chosen features."""

from __future__ import annotations

import math

import pytest
import torch

from concepts.errors import InvalidInputError, UnknownNameError
from concepts.sae import SAEConfig, TopKSAE
from concepts.steer.steering import (
    SteeringPlan,
    check_mask,
    global_edit,
    pool_to_grid,
    region_mask,
    spatial_edit,
)
from concepts.steps import StepInfo, StepWindow


@pytest.fixture
def sae():
    torch.manual_seed(0)
    model = TopKSAE(SAEConfig(d_in=16, num_latents=64, k=4))
    model.set_decoder_norm_to_unit_norm()
    return model


STEP = StepInfo(index=0, num_steps=10, timestep=999, cfg=True)


def test_preset_cells_cover_their_ninth():
    mask = region_mask("top left", 63, 63)
    assert mask.sum() == 21 * 21 and mask[:21, :21].all()
    assert region_mask("bottom right quadrant", 64, 64)[32:, 32:].all()
    assert region_mask("global", 64, 64) is None
    with pytest.raises(UnknownNameError, match="valid: top left"):
        region_mask("upper middle", 64, 64)


def test_bad_masks_are_named():
    with pytest.raises(InvalidInputError, match="mask.*empty"):
        check_mask(torch.zeros(64, 64))
    with pytest.raises(InvalidInputError, match="mask"):
        check_mask(torch.full((8, 8), math.nan))
    painted = torch.zeros(64, 64, 4)
    painted[:10, :10, 3] = 255  # an RGBA sketch layer
    assert check_mask(painted)[:10, :10].min() == 1.0 and check_mask(painted).sum() == 100


@pytest.mark.parametrize("strength", [math.nan, math.inf, -math.inf, 1e9, "strong"])
def test_bad_strengths_are_refused(sae, strength):
    with pytest.raises(InvalidInputError, match="strength"):
        global_edit(sae, [1], strength)
    with pytest.raises(InvalidInputError, match="strength"):
        SteeringPlan("mid_block.attentions.0", (1,), StepWindow(0, 3), strength)


def test_features_outside_the_sae_are_refused(sae):
    with pytest.raises(InvalidInputError, match="features"):
        spatial_edit(sae, [64], 10.0, torch.ones(8, 8))
    with pytest.raises(InvalidInputError, match="features"):
        global_edit(sae, [], 10.0)


def test_spatial_edit_sets_the_feature_inside_and_clears_it_outside(sae):
    read = torch.randn(2, 8, 8, 16)
    mask = torch.zeros(64, 64)
    mask[:32, :32] = 1.0  # top-left quadrant → the block's top-left 4×4 cells
    new = spatial_edit(sae, [5], 3.0, mask)(STEP, read)
    change = new - read
    z = sae.encode_dense(read)
    direction = sae.W_dec[5]
    expected_inside = 3.0 * z[:, :4, :4].norm(dim=-1, keepdim=True) - z[:, :4, :4, 5:6]
    torch.testing.assert_close(change[:, :4, :4], expected_inside * direction, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(change[:, 4:, 4:], -z[:, 4:, 4:, 5:6] * direction, rtol=1e-4, atol=1e-5)
    # Only the chosen direction moves: the change is parallel to feature 5's decoder row everywhere.
    residual = change - (change @ direction)[..., None] * direction
    assert residual.abs().max() < 1e-4


def test_global_edit_spends_beta_in_proportion_to_activity(sae):
    read = torch.randn(1, 4, 4, 16)
    change = global_edit(sae, [2, 7], 8.0)(STEP, read) - read
    direction = sae.W_dec[2] + sae.W_dec[7]
    coefficients = (change @ direction) / direction.dot(direction)
    assert coefficients.sum().item() == pytest.approx(8.0, rel=1e-4)
    norms = sae.encode_dense(read).norm(dim=-1)
    assert torch.argmax(coefficients) == torch.argmax(norms)


def test_pooling_keeps_partial_cover():
    mask = torch.zeros(64, 64)
    mask[:, :16] = 1.0
    grid = pool_to_grid(mask, 8, 8)
    assert torch.allclose(grid[:, :2], torch.ones(8, 2)) and grid[:, 2:].sum() == 0


def test_suppression_removes_exactly_the_chosen_features_contribution(sae):
    from concepts.steer.steering import suppress_edit

    torch.manual_seed(1)
    read = torch.randn(1, 4, 4, 16)
    codes = sae.encode_dense(read)
    active = [int(i) for i in torch.nonzero(codes.flatten(0, 2).sum(0))[:2, 0]]
    changed = suppress_edit(sae, active)(STEP, read)
    expected = read - codes[..., active] @ sae.W_dec[active]
    assert torch.allclose(changed, expected, atol=1e-5) and not torch.allclose(changed, read)


def test_the_unbox_paint_adds_strength_times_the_features_mean_where_painted():
    """sdxl-unbox's paint: Δ + β · mean[f] · (share of the cell painted) · f, nothing encoded."""
    from concepts.sae import SAEConfig, TopKSAE
    from concepts.steer.steering import SteeringPlan
    from concepts.steps import StepInfo, StepWindow

    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=6, num_latents=12, k=3))
    mean = torch.rand(12) * 40
    mask = torch.zeros(8, 8)
    mask[:4, :4] = 1.0  # the top left quarter painted
    plan = SteeringPlan("mid_block.attentions.0", (2, 5), StepWindow(0, 0), 10.0, mask, feature_scale=mean)
    assert plan.mode == "paint"
    read = torch.randn(1, 4, 4, 6)
    out = plan.edit(sae).fn(StepInfo(0, 1, 999, False), read)
    added = 10.0 * (mean[2] * sae.W_dec[2] + mean[5] * sae.W_dec[5])
    assert torch.allclose(out[0, :2, :2], read[0, :2, :2] + added, atol=1e-5)  # painted cells
    assert torch.equal(out[0, 2:, 2:], read[0, 2:, 2:])  # unpainted cells untouched


def test_a_world_that_scales_by_the_feature_mean_uses_it_and_one_without_means_is_named():
    from types import SimpleNamespace

    from concepts.errors import InvalidInputError
    from concepts.registry import load_registry
    from concepts.steer.service import feature_scale

    unbox = load_registry().get("sdxl-turbo-unbox")
    assert unbox.defaults.strength_scale == "feature-mean" and unbox.defaults.strengths["spatial"]["middle"] == 10.0  # the demo's default
    mean = torch.arange(4.0)
    assert torch.equal(feature_scale(unbox, SimpleNamespace(feature_mean=mean, entry=None)), mean)
    assert feature_scale(load_registry().get("toy-shapes"), SimpleNamespace(feature_mean=mean, entry=None)) is None
    with pytest.raises(InvalidInputError, match="strength"):
        feature_scale(unbox, SimpleNamespace(feature_mean=None, entry=SimpleNamespace(block="mid_block.attentions.0")))
