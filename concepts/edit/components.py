"""The components CAD scores: every scalar weight of the UNet transformer blocks' feed-forward layers
(`...transformer_blocks.N.ff.net.0.proj` and `...ff.net.2`); attention, convs, the text encoder and
the VAE are not scored (docs/cad.md). UCE (`uce.py`) edits the cross-attention key/value
projections instead, the only UNet weights that read the text embeddings."""

from __future__ import annotations

from torch import nn

FF_SUFFIXES = ("ff.net.0.proj", "ff.net.2")
CROSS_KV_SUFFIXES = ("attn2.to_k", "attn2.to_v")


def ff_layers(unet: nn.Module) -> dict[str, nn.Linear]:
    """The feed-forward Linear layers by module name, in the UNet's order."""
    return {name: m for name, m in unet.named_modules() if name.endswith(FF_SUFFIXES) and isinstance(m, nn.Linear)}


def cross_kv_layers(unet: nn.Module) -> dict[str, nn.Linear]:
    """The cross-attention key and value Linear layers by module name (what UCE edits)."""
    return {name: m for name, m in unet.named_modules() if name.endswith(CROSS_KV_SUFFIXES) and isinstance(m, nn.Linear)}


def edit_layers(unet: nn.Module) -> dict[str, nn.Linear]:
    """Every layer an edit plan may change: CAD's feed-forward layers and UCE's cross-attention K/V."""
    return {**ff_layers(unet), **cross_kv_layers(unet)}


def block_of(layer: str) -> str:
    """The transformer block (`Transformer2DModel`) a feed-forward or cross-attention layer belongs to."""
    return layer.split(".transformer_blocks.")[0]
