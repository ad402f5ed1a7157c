"""The components CAD scores: every scalar weight of the UNet transformer blocks' feed-forward layers
(`...transformer_blocks.N.ff.net.0.proj` and `...ff.net.2`); attention, convs, the text encoder and
the VAE are not scored (design.md §5)."""

from __future__ import annotations

from torch import nn

FF_SUFFIXES = ("ff.net.0.proj", "ff.net.2")


def ff_layers(unet: nn.Module) -> dict[str, nn.Linear]:
    """The feed-forward Linear layers by module name, in the UNet's order."""
    return {name: m for name, m in unet.named_modules() if name.endswith(FF_SUFFIXES) and isinstance(m, nn.Linear)}


def block_of(layer: str) -> str:
    """The transformer block (`Transformer2DModel`) a feed-forward layer belongs to."""
    return layer.split(".transformer_blocks.")[0]
