"""Checks that make attribution science (docs/cad.md): do the scores predict what ablation does?

- `prediction_check`: over random small ablations, the Pearson correlation between the change of J
  the scores predict (the sum of the zeroed weights' scores) and the change measured by running J
  with those weights zeroed (the authors report r ≈ 0.5).
- `random_plan`: the same number of weights as a real plan, chosen at random: the baseline an
  attribution-chosen ablation must beat.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .ablation import AblationPlan
from .attribution import AttributionConfig, objective_value
from .components import ff_layers


class PredictionCheck(NamedTuple):
    predicted: list[float]
    actual: list[float]
    pearson: float


def random_plan(unet, count: int, seed: int = 0, like: AblationPlan | None = None) -> AblationPlan:
    """`count` weights zeroed at random (per layer as many as `like` zeroes, when given)."""
    layers = ff_layers(unet)
    gen = torch.Generator().manual_seed(seed)
    total = sum(layer.weight.numel() for layer in layers.values())
    removed, zeroed = {}, {}
    for name, layer in layers.items():
        n = like.zeroed.get(name, 0) if like is not None else round(count * layer.weight.numel() / total)
        flat = torch.zeros(layer.weight.numel(), dtype=torch.bool)
        flat[torch.randperm(layer.weight.numel(), generator=gen)[:n]] = True
        mask = flat.view_as(layer.weight).to(layer.weight.device)
        removed[name] = layer.weight.detach() * mask
        zeroed[name] = int(mask.sum())
    return AblationPlan(removed, zeroed, total)


def prediction_check(pipe, prompt: str, cfg: AttributionConfig, scores: dict[str, torch.Tensor], trials: int = 12, weights_per_trial: int = 200, seed: int = 0) -> PredictionCheck:
    base = objective_value(pipe, prompt, cfg)
    predicted, actual = [], []
    for trial in range(trials):
        plan = random_plan(pipe.unet, weights_per_trial, seed=seed + trial)
        masks = {name: removed != 0 for name, removed in plan.removed.items()}
        predicted.append(float(sum(scores[name][mask.cpu()].sum() for name, mask in masks.items())))
        actual.append(base - objective_value(pipe, prompt, cfg, plan))
    r = float(np.corrcoef(predicted, actual)[0, 1]) if np.std(predicted) > 0 and np.std(actual) > 0 else float("nan")
    return PredictionCheck(predicted, actual, r)
