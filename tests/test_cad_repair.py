"""The least-squares repair of a CAD ablation (`cad.repair`), on plain linear layers whose inputs are known."""

import pytest
import torch
from torch import nn

from concepts.edit.ablation import AblationPlan
from concepts.edit.repair import RepairConfig, input_grams, repaired_plan
from concepts.errors import InvalidInputError


def setup(seed: int = 0):
    torch.manual_seed(seed)
    layer = nn.Linear(8, 4, bias=False)
    basis = torch.randn(3, 8)
    kept_x = torch.randn(200, 3) @ basis  # the kept prompts' inputs span a 3-dim subspace
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :2] = True  # two weights of every row zeroed
    plan = AblationPlan({"ff": layer.weight.detach() * mask}, {"ff": int(mask.sum())}, layer.weight.numel(), "matrix")
    return layer, basis, kept_x, mask, plan


def edited(layer: nn.Linear, plan: AblationPlan, x: torch.Tensor) -> torch.Tensor:
    return x @ (layer.weight.detach() - plan.removed["ff"]).T


def grams_of(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return input_grams({"ff": layer}, lambda: layer(x))["ff"]


def test_input_grams_are_the_inputs_outer_products_and_leave_no_hook():
    layer, _, kept_x, _, _ = setup()
    gram = grams_of(layer, kept_x)
    assert torch.allclose(gram, kept_x.double().T @ kept_x.double(), rtol=1e-6)
    assert not layer._forward_pre_hooks


def test_repair_holds_the_kept_outputs_and_keeps_the_zeroed_weights_zero():
    layer, basis, kept_x, mask, plan = setup()
    before = kept_x @ layer.weight.detach().T
    assert (edited(layer, plan, kept_x) - before).abs().max() > 0.1  # zeroing alone moves them
    repaired = repaired_plan({"ff": layer}, plan, {"ff": grams_of(layer, kept_x)}, {"ff": torch.zeros(8, 8, dtype=torch.float64)}, RepairConfig(damping=1e-9))
    assert torch.allclose(edited(layer, repaired, kept_x), before, atol=1e-3)
    new_weight = layer.weight.detach() - repaired.removed["ff"]
    assert torch.all(new_weight[mask] == 0) and repaired.zeroed == plan.zeroed


def test_a_concept_inside_the_kept_subspace_comes_back_and_one_outside_does_not():
    """Why the repair measures CAD's limit: an input the kept ones span is restored with them."""
    layer, basis, kept_x, _, plan = setup()
    inside = torch.randn(20, 3) @ basis
    outside = torch.randn(20, 8)
    repaired = repaired_plan({"ff": layer}, plan, {"ff": grams_of(layer, kept_x)}, {"ff": torch.zeros(8, 8, dtype=torch.float64)}, RepairConfig(damping=1e-9))
    assert torch.allclose(edited(layer, repaired, inside), inside @ layer.weight.detach().T, atol=1e-3)
    assert not torch.allclose(edited(layer, repaired, outside), outside @ layer.weight.detach().T, atol=1e-1)


def test_weighting_the_concept_keeps_its_ablated_outputs_closer():
    layer, basis, kept_x, _, plan = setup()
    concept_x = torch.randn(50, 3) @ basis + 0.3 * torch.randn(50, 8)
    kept, own = {"ff": grams_of(layer, kept_x)}, {"ff": grams_of(layer, concept_x)}
    ablated = edited(layer, plan, concept_x)
    drift = [(edited(layer, repaired_plan({"ff": layer}, plan, kept, own, RepairConfig(concept_weight=b)), concept_x) - ablated).norm() for b in (0.0, 1.0, 16.0)]
    assert drift[0] > drift[1] > drift[2]


@pytest.mark.parametrize("field, value", [("concept_weight", -1.0), ("concept_weight", float("nan")), ("damping", float("inf"))])
def test_bad_repair_settings_name_the_field(field, value):
    with pytest.raises(InvalidInputError, match=field):
        RepairConfig(**{field: value})


def test_on_the_toy_holding_the_other_colours_gives_red_back():
    """The README's measurement of CAD's limit, small: the default erase takes red off, and the
    repair that holds the other colours' feed-forward outputs (2 scenes each) returns every red."""
    from concepts.toy.erase_repair import erase_with_repair

    before, cad, repaired = erase_with_repair("red", (0.0,), scenes=2, prompts=6)["rows"]
    assert before["edit"] == "before" and cad["edit"].startswith("CAD,") and repaired["edit"] == "CAD + repair, β = 0"
    assert before["concept_rate_on_its_prompts"] == 1.0
    assert cad["concept_rate_on_its_prompts"] <= 0.2 and cad["others_attribute_accuracy"] < 1.0
    assert repaired["concept_rate_on_its_prompts"] == 1.0 and repaired["others_attribute_accuracy"] == 1.0
