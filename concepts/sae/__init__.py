"""TopK sparse autoencoders and the checkpoint formats we read and write."""

from __future__ import annotations

from .config import SAEConfig
from .native_format import load_concepts, load_native, read_config, save_native
from .topk import EncoderOutput, ForwardOutput, TopKSAE
from .unbox_format import UnboxSAE, load_unbox

__all__ = [
    "EncoderOutput",
    "ForwardOutput",
    "SAEConfig",
    "TopKSAE",
    "UnboxSAE",
    "load_concepts",
    "load_native",
    "load_unbox",
    "read_config",
    "save_native",
]
