"""UCE: erase a concept with a closed-form edit of the cross-attention key/value projections, keeping
named concepts (Gandikota et al., "Unified Concept Editing in Diffusion Models", 2024).

Why it sits beside CAD: CAD zeroes feed-forward weights, and on toy-shapes the weights that draw
red also draw its hue neighbours (erasing red turns orange yellow: every CAD setting that takes red
below 0.2 costs the other colours a third of their accuracy). Colour words reach the UNet only
through the cross-attention keys and values, and there red and orange are two different text
embeddings, so a linear edit can move one and hold the other.

Every cross-attention K/V projection W reads the same text embeddings c (dimension D), so the
least-squares edit
    min_W' Σ_e ‖W' c_e − W c*_e‖² + λ Σ_p ‖W' c_p − W c_p‖² + μ ‖W' − W‖²
(erased token embeddings c_e sent to their guides' c*_e, preserved ones c_p held, μ keeping the
rest) is W' = W·A for all of them with one D×D map
    A = (Σ c*_e c_eᵀ + λ Σ c_p c_pᵀ + μI)(Σ c_e c_eᵀ + λ Σ c_p c_pᵀ + μI)⁻¹.
The erased sums run over the token positions from the concept's first token on (CLIP's text encoder
is causal: the words after the concept carry it too, the ones before are the same with or without it
and are held, not moved); the preserved sums over every position. The edit is applied like a CAD ablation, by hooks that add x(W' − W)ᵀ inside
one request (`AblationHooks`): the shared weights never change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from diffusers import StableDiffusionPipeline
from torch import nn

from ..errors import InvalidInputError
from .ablation import AblationPlan
from .attribution import prompt_embeddings
from .components import block_of, cross_kv_layers


@dataclass(frozen=True)
class UceConfig:
    preserve: float = 1.0
    """λ: how much a preserved embedding's error weighs against an erased one's."""
    regularize: float = 0.1
    """μ: pull towards the unedited weights, for every direction the prompts do not pin down."""

    def __post_init__(self) -> None:
        for field, value in (("preserve", self.preserve), ("regularize", self.regularize)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1e4:
                raise InvalidInputError(field, f"must be a number in (0, 10000], got {value!r}")


@dataclass(frozen=True)
class UcePrompts:
    """What the edit is fitted on: each erased prompt is sent to the mean embedding of its guide
    prompts (same token positions); preserved prompts keep theirs."""

    concept: str
    erased: tuple[str, ...]
    guides: tuple[tuple[str, ...], ...]
    preserved: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.concept.strip():
            raise InvalidInputError("concept", "is empty: name the concept to erase")
        if not self.erased:
            raise InvalidInputError("concept", "no prompt to erase")
        if len(self.guides) != len(self.erased) or not all(self.guides):
            raise InvalidInputError("anchor", "every erased prompt needs at least one guide prompt")


def swapped(prompt: str, concept: str, other: str) -> str:
    """The prompt with the concept's words replaced by another concept ("" removes them)."""
    text = re.sub(rf"(?i)\b{re.escape(concept.strip())}\b", other, prompt)
    return " ".join(text.split())


def concept_start(tokenizer, prompt: str, concept: str) -> int:
    """The first token position where the prompt differs from itself without the concept (where the
    concept's first token sits); 0 if nothing differs."""
    with_it, without = tokenizer(prompt).input_ids, tokenizer(swapped(prompt, concept, "")).input_ids
    return next((i for i, (a, b) in enumerate(zip(with_it, without)) if a != b), min(len(with_it), len(without)))


@torch.no_grad()
def token_embeddings(pipe: StableDiffusionPipeline, prompt: str) -> torch.Tensor:
    """The text encoder's output [L, D] for one prompt (fp32), padded as the pipeline pads it."""
    return prompt_embeddings(pipe, prompt)[1][0].float().cpu()


def text_map(pipe: StableDiffusionPipeline, prompts: UcePrompts, cfg: UceConfig = UceConfig()) -> torch.Tensor:
    """The D×D map A with W' = W·A for every cross-attention K/V (see the module doc)."""
    cache: dict[str, torch.Tensor] = {}

    def embed(prompt: str) -> torch.Tensor:
        if prompt not in cache:
            cache[prompt] = token_embeddings(pipe, prompt)
        return cache[prompt]

    dim = embed(prompts.erased[0]).shape[-1]
    moved = cfg.regularize * torch.eye(dim, dtype=torch.float64)
    seen = cfg.regularize * torch.eye(dim, dtype=torch.float64)
    for prompt, guides in zip(prompts.erased, prompts.guides):
        start = concept_start(pipe.tokenizer, prompt, prompts.concept)
        c = embed(prompt).double()[start:]
        target = torch.stack([embed(g) for g in guides]).mean(0).double()[start:]
        moved += target.T @ c
        seen += c.T @ c
    for prompt in prompts.preserved:
        c = embed(prompt).double()
        moved += cfg.preserve * c.T @ c
        seen += cfg.preserve * c.T @ c
    return torch.linalg.solve(seen.T, moved.T).T.float()  # moved · seen⁻¹ (seen is symmetric)


def uce_plan(unet: nn.Module, text_map_: torch.Tensor) -> AblationPlan:
    """The edit W' = W·A of every cross-attention K/V, as the part each loses: W − W' = W(I − A)."""
    layers = cross_kv_layers(unet)
    if not layers:
        raise InvalidInputError("method", "this UNet has no cross-attention key/value projections to edit")
    removed, changed = {}, {}
    for name, layer in layers.items():
        weight = layer.weight.detach()
        if weight.shape[1] != text_map_.shape[0]:
            raise InvalidInputError("method", f"{name} reads {weight.shape[1]}-dim text, the map is {text_map_.shape[0]}-dim")
        delta = weight.float() @ (torch.eye(text_map_.shape[0], device=weight.device) - text_map_.to(weight.device))
        removed[name] = delta.to(weight.dtype)
        changed[name] = int((delta != 0).sum())
    return AblationPlan(removed, changed, sum(layer.weight.numel() for layer in layers.values()), scope="closed form", method="uce")


def change_by_block(unet: nn.Module, plan: AblationPlan) -> dict[str, float]:
    """Per transformer block, ‖W' − W‖ / ‖W‖ over its edited K/V matrices: where the edit acts."""
    layers = cross_kv_layers(unet)
    moved: dict[str, list[float]] = {}
    for name, removed in plan.removed.items():
        row = moved.setdefault(block_of(name), [0.0, 0.0])
        row[0] += float(removed.float().pow(2).sum())
        row[1] += float(layers[name].weight.detach().float().pow(2).sum())
    return {block: math.sqrt(d / max(w, 1e-30)) for block, (d, w) in moved.items()}
