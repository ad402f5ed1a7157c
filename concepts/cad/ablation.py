"""Zero the top-scored feed-forward weights, per request, without touching the shared model.

The plan (which weights) is computed from scores: in each matrix, per output row, the top
⌊ratio · in_features⌋ weights by score (at least `min_per_row`), skipping non-positive scores; a
matrix too narrow for the ratio loses nothing unless `min_per_row` says so.
Applying it never writes a weight: `AblationHooks` adds a forward hook to each edited Linear that
subtracts the removed part, y' = y − x·(W⊙M)ᵀ, which is exactly the layer with those weights zeroed.
Like `BlockHooks`, the hooks act only inside their own `with` in the calling thread or task, so a
concurrent request through the same model sees the original weights, and leaving the `with` (even
by an exception) removes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from ..hooks import ScopedHooks
from .components import block_of, ff_layers

MAX_RATIO = 0.5


@dataclass
class AblationPlan:
    removed: dict[str, torch.Tensor]
    """Per layer name, W ⊙ M: the part of the weight that is zeroed."""
    zeroed: dict[str, int]
    """Per layer, how many weights are zeroed."""
    total_weights: int

    @property
    def count(self) -> int:
        return sum(self.zeroed.values())

    def by_block(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for layer, n in self.zeroed.items():
            out[block_of(layer)] = out.get(block_of(layer), 0) + n
        return out


def check_ratio(ratio: float) -> float:
    try:
        value = float(ratio)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError("ratio", f"{repr(ratio)[:40]} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= MAX_RATIO:
        raise InvalidInputError("ratio", f"must be a number in (0, {MAX_RATIO}], got {ratio}")
    return value


def plan_ablation(unet: nn.Module, scores: dict[str, torch.Tensor], ratio: float, min_per_row: int = 0) -> AblationPlan:
    """Which weights to zero: per row the top ⌊ratio·in⌋ (≥ min_per_row) by positive score."""
    ratio = check_ratio(ratio)
    layers = ff_layers(unet)
    missing = sorted(set(layers) - set(scores))
    if missing:
        raise InvalidInputError("scores", f"no scores for {len(missing)} layers, e.g. {missing[0]}: they were computed for another model")
    removed, zeroed, total = {}, {}, 0
    for name, layer in layers.items():
        score = scores[name].to(layer.weight.device, torch.float32)
        if score.shape != layer.weight.shape:
            raise InvalidInputError("scores", f"{name}: scores {tuple(score.shape)} do not match the weight {tuple(layer.weight.shape)}")
        k = min(max(int(ratio * score.shape[1]), min_per_row), score.shape[1])
        if k == 0:
            removed[name], zeroed[name] = torch.zeros_like(layer.weight.detach()), 0
            total += score.numel()
            continue
        values, index = score.topk(k, dim=1)
        mask = torch.zeros_like(score, dtype=torch.bool).scatter_(1, index, values > 0)
        removed[name] = (layer.weight.detach() * mask).to(layer.weight.dtype)
        zeroed[name] = int(mask.sum())
        total += score.numel()
    return AblationPlan(removed, zeroed, total)


class AblationHooks(ScopedHooks):
    """Apply an `AblationPlan` for the duration of a `with`, in this thread or task only."""

    def __init__(self, unet: nn.Module, plan: AblationPlan) -> None:
        super().__init__()
        layers = ff_layers(unet)
        unknown = sorted(set(plan.removed) - set(layers))
        if unknown:
            raise InvalidInputError("ablation", f"{unknown[0]} is not a feed-forward layer of this UNet")
        self._targets = {name: layers[name] for name in plan.removed if plan.zeroed.get(name)}
        self.plan = plan

    def _install(self, add) -> None:
        for name, layer in self._targets.items():
            add(layer.register_forward_hook(self._hook(self.plan.removed[name])))

    def _hook(self, removed: torch.Tensor):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor):
            if not self._mine():
                return None  # another request through the shared model
            return output - F.linear(args[0], removed.to(args[0].dtype))

        return hook
