"""Least-squares repair of a CAD ablation: after the top weights are zeroed, the rest of each edited
row is re-fitted so that chosen prompts' feed-forward outputs stay what they were (in the manner of
Optimal Brain Surgeon's pruning update), optionally while the erased concept's own outputs are held
at their ablated values.

Why it exists: it is a measuring instrument for what CAD can do. If holding the kept concepts'
outputs gives the erased concept back too, the two share the layer's input subspace, and no edit of
the feed-forward weights can move one without the other. On toy-shapes it does, for red and its
neighbouring colours (docs/erase.md, "What falls short"). Offline use only: the input statistics are
collected with plain hooks, not per-request ones.

For one row w of a layer with input Gram matrices Hk (kept prompts) and Hc (the concept's), with
the zeroed set M fixed (d_M = −w_M) and the free set F, the change d minimises
    dᵀ Hk d + β d_Fᵀ Hc_FF d_F
so d_F = (Hk_FF + β Hc_FF)⁻¹ Hk_FM w_M (plus a little damping on the diagonal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import InvalidInputError
from .ablation import AblationPlan


@dataclass(frozen=True)
class RepairConfig:
    concept_weight: float = 0.0
    """β: how much the concept's own outputs are held at their ablated values (0: only the kept
    prompts count, so the repair may give the concept back)."""
    damping: float = 0.01
    """Added to the Gram diagonal, as a share of its mean, so a rank-poor row still solves."""

    def __post_init__(self) -> None:
        for field, value in (("concept_weight", self.concept_weight), ("damping", self.damping)):
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise InvalidInputError(field, f"must be a finite number ≥ 0, got {value!r}")


def input_grams(layers: dict[str, nn.Linear], run: Callable[[], None]) -> dict[str, torch.Tensor]:
    """XᵀX (fp64, on the CPU) of each layer's input over everything `run` pushes through the model."""
    grams = {name: torch.zeros(layer.in_features, layer.in_features, dtype=torch.float64) for name, layer in layers.items()}

    def collect(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double().cpu()
            grams[name].add_(x.T @ x)

        return hook

    handles = [layer.register_forward_pre_hook(collect(name)) for name, layer in layers.items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return grams


def repaired_plan(layers: dict[str, nn.Linear], plan: AblationPlan, kept: dict[str, torch.Tensor], concept: dict[str, torch.Tensor],
                  cfg: RepairConfig = RepairConfig()) -> AblationPlan:
    """The plan's zeroing plus the least-squares change of each edited row's other weights (see the
    module doc); `kept` and `concept` are per-layer input Gram matrices."""
    removed = {}
    for name, zeroed in plan.removed.items():
        weight = layers[name].weight.detach().double().cpu()
        cut = zeroed.double().cpu()
        mask = cut != 0
        hk = kept[name]
        h = hk + cfg.concept_weight * concept[name]
        h = h + cfg.damping * h.diagonal().mean().clamp_min(1e-12) * torch.eye(h.shape[0], dtype=h.dtype)
        change = torch.zeros_like(weight)
        for row in torch.nonzero(mask.any(1)).flatten().tolist():
            m = mask[row]
            f = ~m
            change[row, f] = torch.linalg.solve(h[f][:, f], hk[f][:, m] @ weight[row, m])
        removed[name] = (cut - change).to(zeroed.dtype).to(zeroed.device)
    return AblationPlan(removed, dict(plan.zeroed), plan.total_weights, plan.scope)
