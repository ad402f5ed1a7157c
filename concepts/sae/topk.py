"""A TopK sparse autoencoder (Gao et al. 2024; as used by Tinaz et al., docs/paper.md).

    z = TopK(ReLU(W_enc (x − b_dec) + b_enc)),    x̂ = W_dec^T z + b_dec

Parameter names follow EleutherAI sparsify (`encoder.weight [n, d]`, `encoder.bias [n]`,
`W_dec [n, d]`, `b_dec [d]`) so our checkpoints are theirs. Codes are kept sparse as (values,
indices) pairs of length k; the dense form is available for display and for analysis.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import CheckpointError
from .config import SAEConfig


class EncoderOutput(NamedTuple):
    top_acts: torch.Tensor
    """[..., k] the k largest (non-negative) latent values."""
    top_indices: torch.Tensor
    """[..., k] their latent ids (long)."""


class ForwardOutput(NamedTuple):
    sae_out: torch.Tensor
    """[N, d] reconstruction."""
    latent_acts: torch.Tensor
    """[N, k]"""
    latent_indices: torch.Tensor
    """[N, k]"""
    fvu: torch.Tensor
    """Fraction of variance unexplained: Σ(x − x̂)² / Σ(x − mean x)²."""
    auxk_loss: torch.Tensor
    """AuxK loss: how well dead latents reconstruct the residual (0 when none is dead)."""


class TopKSAE(nn.Module):
    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.d_in = cfg.d_in
        self.num_latents = cfg.num_latents
        self.encoder = nn.Linear(cfg.d_in, cfg.num_latents, device=device, dtype=dtype)
        self.encoder.bias.data.zero_()
        # Decoder starts as the encoder's transpose (tied init), which makes early training stable.
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())
        if cfg.normalize_decoder:
            self.set_decoder_norm_to_unit_norm()
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    # -- encoding --------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] → [..., n] ReLU pre-activations, before TopK."""
        return torch.relu(self.encoder(x.to(self.dtype) - self.b_dec))

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """[..., d] → the k largest latents per position."""
        values, indices = self.pre_acts(x).topk(self.cfg.k, dim=-1, sorted=True)
        return EncoderOutput(values, indices)

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] → [..., n] with zeros outside the top k."""
        top = self.encode(x)
        dense = torch.zeros(*x.shape[:-1], self.num_latents, device=self.device, dtype=top.top_acts.dtype)
        return dense.scatter_(-1, top.top_indices, top.top_acts)

    # -- decoding --------------------------------------------------------------------------
    def decode(self, top_acts: torch.Tensor, top_indices: torch.Tensor) -> torch.Tensor:
        """([..., k], [..., k]) → [..., d]: Σ_j acts_j · W_dec[idx_j] + b_dec."""
        rows = self.W_dec[top_indices]  # [..., k, d]
        return (top_acts.unsqueeze(-1).to(rows.dtype) * rows).sum(-2) + self.b_dec

    def decode_dense(self, z: torch.Tensor) -> torch.Tensor:
        """[..., n] → [..., d]"""
        return z.to(self.dtype) @ self.W_dec + self.b_dec

    def feature_direction(self, index: int) -> torch.Tensor:
        """[d] the decoder row of latent `index`: the direction it adds to the read."""
        return self.W_dec[index]

    # -- training --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None, k_aux: int = 256) -> ForwardOutput:
        """[N, d] → reconstruction, codes, FVU and the AuxK loss (the trainer scales it by α).

        Training decodes through a dense [N, n] code and a matmul: the gather-based `decode` has a
        scatter-add backward whose summation order varies between CPU threads, which would make
        runs (and resumed runs) differ in the last bits.
        """
        pre = self.pre_acts(x)
        top_acts, top_indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        dense = torch.zeros_like(pre).scatter(-1, top_indices, top_acts)
        sae_out = dense @ self.W_dec + self.b_dec
        residual = x.to(self.dtype) - sae_out
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(self.dtype).tiny)
        fvu = residual.pow(2).sum() / total_variance
        auxk_loss = sae_out.new_zeros(())
        if dead_mask is not None and bool(dead_mask.any()):
            # AuxK: let the top dead latents explain what the live ones missed, so they revive.
            k_dead = min(int(k_aux), int(dead_mask.sum()))
            dead_pre = torch.where(dead_mask, pre, torch.zeros_like(pre))
            aux_acts, aux_indices = dead_pre.topk(k_dead, dim=-1, sorted=False)
            aux_out = torch.zeros_like(pre).scatter(-1, aux_indices, aux_acts) @ self.W_dec
            auxk_loss = (aux_out - residual.detach()).pow(2).sum() / total_variance
        return ForwardOutput(sae_out, top_acts, top_indices, fvu, auxk_loss)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        norm = self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)
        self.W_dec.data /= norm

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out the gradient component that would only change a unit-norm row's length."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data

    def check_width(self, width: int, block: str) -> None:
        """Refuse to attach to a block of another width (an SAE of another model)."""
        if int(width) != self.d_in:
            raise CheckpointError(
                f"SAE reads width {self.d_in} but block {block!r} has width {width}: this SAE belongs to another model"
            )
