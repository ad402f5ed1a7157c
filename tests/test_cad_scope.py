"""The ablation plan's scopes: per row (CAD's), per matrix (the whole-matrix variant) and over the
whole model; the counts, that the chosen weights are the top-scored ones, and that the hooks equal
zeroing them."""

from __future__ import annotations

import copy

import pytest
import torch

from concepts.edit import AblationHooks, ff_layers, plan_ablation
from concepts.edit.ablation import SCOPES
from concepts.errors import InvalidInputError
from concepts.sampling import GenerationRequest, generate


@pytest.fixture(scope="module")
def scores(tiny_pipe):
    """Distinct random scores, a third of them negative (never zeroed)."""
    gen = torch.Generator().manual_seed(7)
    return {name: torch.randn(layer.weight.shape, generator=gen) - 0.45 for name, layer in ff_layers(tiny_pipe.unet).items()}


def masks(plan):
    return {name: removed != 0 for name, removed in plan.removed.items()}


def chosen(plan, scores):
    """(layer, flat index) of every zeroed weight, checked against the mask of nonzero removed values."""
    return {(name, int(i)) for name, m in masks(plan).items() for i in m.flatten().nonzero().flatten()}


def test_matrix_scope_zeroes_each_matrixs_top_weights(tiny_pipe, scores):
    ratio = 0.03
    plan = plan_ablation(tiny_pipe.unet, scores, ratio, scope="matrix")
    assert plan.scope == "matrix" and plan.total_weights == sum(s.numel() for s in scores.values())
    for name, s in scores.items():
        k = int(ratio * s.numel())
        expected = s.flatten().topk(k).indices[s.flatten().topk(k).values > 0]
        got = masks(plan)[name].flatten().nonzero().flatten()
        assert plan.zeroed[name] == len(expected) == len(got)
        assert set(got.tolist()) == set(expected.tolist())
        layer = ff_layers(tiny_pipe.unet)[name]
        assert torch.equal(plan.removed[name], layer.weight.detach() * masks(plan)[name])


def test_model_scope_zeroes_the_top_weights_over_all_matrices(tiny_pipe, scores):
    ratio = 0.02
    plan = plan_ablation(tiny_pipe.unet, scores, ratio, scope="model")
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(ratio * flat.numel())
    assert plan.count == k and plan.scope == "model"
    threshold = flat.topk(k).values[-1]
    expected = {(name, int(i)) for name, s in scores.items() for i in (s.flatten() >= threshold).nonzero().flatten()}
    assert chosen(plan, scores) == expected
    assert len({name for name, n in plan.zeroed.items() if n}) > 1  # spread where the scores are, not per matrix quota
    # the per-matrix counts differ from the matrix scope's equal shares
    per_matrix = plan_ablation(tiny_pipe.unet, scores, ratio, scope="matrix")
    assert plan.zeroed != per_matrix.zeroed


def test_non_positive_scores_are_never_zeroed_in_any_scope(tiny_pipe, scores):
    negative = {name: -s.abs() for name, s in scores.items()}
    for scope in SCOPES:
        assert plan_ablation(tiny_pipe.unet, negative, 0.1, scope=scope).count == 0
    few = {name: torch.zeros_like(s) for name, s in scores.items()}
    name = next(iter(few))
    few[name][1, 2] = 3.0
    few[name][0, 0] = 1.0
    for scope in ("matrix", "model"):
        plan = plan_ablation(tiny_pipe.unet, few, 0.5, scope=scope)
        assert plan.count == 2 and chosen(plan, few) == {(name, few[name].shape[1] + 2), (name, 0)}


def test_scopes_reach_counts_the_row_rule_skips(tiny_pipe, scores):
    counts = {scope: [plan_ablation(tiny_pipe.unet, scores, r, scope=scope).count for r in (0.01, 0.012, 0.014, 0.016)] for scope in SCOPES}
    assert len(set(counts["model"])) == 4 and counts["model"] == sorted(counts["model"])
    assert len(set(counts["row"])) < 4  # ⌊ratio·in⌋ moves in whole weights per row


def test_row_scope_is_the_default_and_unchanged(tiny_pipe, scores):
    default = plan_ablation(tiny_pipe.unet, scores, 0.1)
    row = plan_ablation(tiny_pipe.unet, scores, 0.1, scope="row")
    assert default.scope == "row" and default.zeroed == row.zeroed
    for name, s in scores.items():
        k = int(0.1 * s.shape[1])
        if k:
            values, index = s.topk(k, dim=1)
            expected = torch.zeros_like(s, dtype=torch.bool).scatter_(1, index, values > 0)
            assert torch.equal(masks(default)[name], expected & (ff_layers(tiny_pipe.unet)[name].weight != 0))


@pytest.mark.parametrize("scope", ["matrix", "model"])
def test_hooks_equal_zeroing_the_chosen_weights(tiny_pipe, scores, scope):
    plan = plan_ablation(tiny_pipe.unet, scores, 0.05, scope=scope)
    assert plan.count > 0
    request = GenerationRequest("a red square", seed=1, steps=3, guidance=5.0, height=32, width=32)
    plain = generate(tiny_pipe, request).pixels
    with AblationHooks(tiny_pipe.unet, plan):
        hooked = generate(tiny_pipe, request).pixels
    zeroed = copy.deepcopy(tiny_pipe)
    for name, layer in ff_layers(zeroed.unet).items():
        layer.weight.data[masks(plan)[name]] = 0.0
    truly = generate(zeroed, request).pixels
    assert torch.allclose(hooked, truly, atol=1e-5) and not torch.allclose(hooked, plain)


@pytest.mark.parametrize("scope", ["rows", "", None, "MODEL", 3])
def test_bad_scope_is_named(tiny_pipe, scores, scope):
    with pytest.raises(InvalidInputError, match="scope"):
        plan_ablation(tiny_pipe.unet, scores, 0.1, scope=scope)


def test_min_per_row_belongs_to_the_row_scope(tiny_pipe, scores):
    assert plan_ablation(tiny_pipe.unet, scores, 0.001, min_per_row=1, scope="row").count > 0
    with pytest.raises(InvalidInputError, match="min_per_row"):
        plan_ablation(tiny_pipe.unet, scores, 0.01, min_per_row=1, scope="matrix")


def test_a_models_default_scope_is_checked():
    from concepts.registry import Defaults

    assert Defaults().edit_scope == "row"  # CAD's, for every model that does not say otherwise
    assert Defaults(edit_scope="matrix").edit_scope == "matrix"
    with pytest.raises(InvalidInputError, match="edit_scope"):
        Defaults(edit_scope="diagonal")


def test_a_models_source_of_concept_images_is_checked():
    from concepts.registry import Defaults

    assert Defaults().concept_images == "template"
    with pytest.raises(InvalidInputError, match="concept_images"):
        Defaults(concept_images="photos")
