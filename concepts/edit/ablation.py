"""Zero the top-scored feed-forward weights, per request, without touching the shared model.

The plan (which weights) is computed from scores, skipping non-positive scores, in one of three scopes:
- "row" (CAD's, the default): in each matrix, per output row, the top ⌊ratio · in_features⌋ weights
  (at least `min_per_row`); a matrix too narrow for the ratio loses nothing unless `min_per_row` says so.
- "matrix": in each matrix, the top ⌊ratio · numel⌋ weights wherever they sit (the authors'
  whole-matrix variant): a row may lose many, another none.
- "model": the top ⌊ratio · total⌋ weights over all feed-forward matrices together.
The per-row rule moves in steps of one weight per row (thousands of weights at once on a narrow
model); the other two scopes make every count reachable.
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
from ..registry import EDIT_SCOPES
from .components import block_of, edit_layers, ff_layers

MAX_RATIO = 0.5
SCOPES = EDIT_SCOPES
SCOPE_LABELS = {"row": "per row", "matrix": "per matrix", "model": "whole model"}


@dataclass
class AblationPlan:
    removed: dict[str, torch.Tensor]
    """Per layer name, W ⊙ M: the part of the weight that is zeroed."""
    zeroed: dict[str, int]
    """Per layer, how many weights are zeroed."""
    total_weights: int
    scope: str = "row"
    """Where the top weights were taken: per "row", per "matrix" or over the whole "model"."""
    method: str = "cad"
    """"cad": weights zeroed (`removed` is W⊙M); "uce": cross-attention K/V edited in closed form
    (`removed` is W − W', and `zeroed` counts the weights that change)."""

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


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidInputError("scope", f"{repr(scope)[:40]} is not one of {', '.join(SCOPES)}")
    return scope


def plan_ablation(unet: nn.Module, scores: dict[str, torch.Tensor], ratio: float, min_per_row: int = 0, scope: str = "row") -> AblationPlan:
    """Which weights to zero: the top by positive score, ⌊ratio·in⌋ per row (≥ min_per_row), or
    ⌊ratio·numel⌋ per matrix, or ⌊ratio·total⌋ over the whole model (see the module doc)."""
    ratio = check_ratio(ratio)
    scope = check_scope(scope)
    if scope != "row" and min_per_row:
        raise InvalidInputError("min_per_row", f"applies to the per-row scope only, not {scope!r}")
    layers = ff_layers(unet)
    missing = sorted(set(layers) - set(scores))
    if missing:
        raise InvalidInputError("scores", f"no scores for {len(missing)} layers, e.g. {missing[0]}: they were computed for another model")
    checked = {}
    for name, layer in layers.items():
        score = scores[name].to(layer.weight.device, torch.float32)
        if score.shape != layer.weight.shape:
            raise InvalidInputError("scores", f"{name}: scores {tuple(score.shape)} do not match the weight {tuple(layer.weight.shape)}")
        checked[name] = score
    total = sum(s.numel() for s in checked.values())
    masks = {name: torch.zeros_like(score, dtype=torch.bool) for name, score in checked.items()}
    if scope == "row":
        for name, score in checked.items():
            k = min(max(int(ratio * score.shape[1]), min_per_row), score.shape[1])
            if k:
                values, index = score.topk(k, dim=1)
                masks[name].scatter_(1, index, values > 0)
    elif scope == "matrix":
        for name, score in checked.items():
            _mark_top(masks[name], score, int(ratio * score.numel()))
    else:
        _mark_top_across(masks, checked, int(ratio * total))
    removed = {name: (layers[name].weight.detach() * mask).to(layers[name].weight.dtype) for name, mask in masks.items()}
    return AblationPlan(removed, {name: int(mask.sum()) for name, mask in masks.items()}, total, scope)


def _mark_top(mask: torch.Tensor, score: torch.Tensor, k: int) -> None:
    """Set `mask` on the top-k positive entries of `score` (anywhere in the matrix)."""
    k = min(k, score.numel())
    if k:
        values, index = score.flatten().topk(k)
        mask.view(-1)[index[values > 0]] = True


def _mark_top_across(masks: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], k: int) -> None:
    """The top-k positive scores over all matrices together. Only each matrix's own top k can make
    the global top k, so merging those (not concatenating every score) keeps memory at ~k per layer."""
    if not k:
        return
    names, values, where = [], [], []
    for i, (name, score) in enumerate(scores.items()):
        v, idx = score.flatten().topk(min(k, score.numel()))
        keep = v > 0
        names.append(name)
        values.append(v[keep].cpu())
        where.append(torch.stack([torch.full_like(idx[keep], i), idx[keep]], 1).cpu())
    values, where = torch.cat(values), torch.cat(where)
    chosen = where[values.topk(min(k, values.numel())).indices]
    for i, name in enumerate(names):
        flat = chosen[chosen[:, 0] == i, 1]
        masks[name].view(-1)[flat.to(masks[name].device)] = True


class AblationHooks(ScopedHooks):
    """Apply an `AblationPlan` for the duration of a `with`, in this thread or task only."""

    def __init__(self, unet: nn.Module, plan: AblationPlan) -> None:
        super().__init__()
        layers = edit_layers(unet)
        unknown = sorted(set(plan.removed) - set(layers))
        if unknown:
            raise InvalidInputError("ablation", f"{unknown[0]} is not a feed-forward or cross-attention K/V layer of this UNet")
        self._targets = {name: layers[name] for name in plan.removed if plan.zeroed.get(name)}
        self.plan = plan

    def _install(self, add) -> None:
        for name, layer in self._targets.items():
            add(layer.register_forward_hook(self._hook(self.plan.removed[name])))

    def _hook(self, removed: torch.Tensor):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor):
            if not self._mine():
                return None  # another request through the shared model
            own = self._own(output.shape[0])
            if own is None:
                return output - F.linear(args[0], removed.to(args[0].dtype))
            # in a shared batch only this request's rows lose the weights
            return output.index_add(0, own, F.linear(args[0][own], removed.to(args[0].dtype)), alpha=-1)

        return hook
