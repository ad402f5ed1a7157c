"""The sdxl-unbox SAE format (surokpro2/sdxl-saes; docs/checkpoints.md), converted to our TopKSAE.

A folder per block, e.g. `down_blocks.2.attentions.1_k10_hidden5120_auxk256_bs4096_lr0.0001/final/`:
`config.json` (`n_dirs_local`, `d_model`, `k`, `auxk`, `dead_steps_threshold`), `state_dict.pth`
= `{"state_dict": {encoder.weight [n, d], decoder.weight [d, n], pre_bias [d], latent_bias [n],
stats_last_nonzero [n]}}`, and `mean.pt` / `std.pt`, per-feature activation statistics [n] that
the unbox demo uses to scale edits. They read Δ = block output − input.

These files are torch pickles: they are loaded ONLY with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers, so a hostile file cannot run code.
Mapping: encoder.weight → encoder.weight, latent_bias → encoder.bias, decoder.weight.T → W_dec,
pre_bias → b_dec (subtracted before encoding, added after decoding, as in OpenAI's TopK
autoencoder that unbox builds on). The decoder is kept as stored (normalize_decoder=False): its
rows are used at their trained scale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..errors import CheckpointError
from .config import SAEConfig
from .topk import TopKSAE


class UnboxSAE(NamedTuple):
    sae: TopKSAE
    feature_mean: torch.Tensor
    """[n] mean activation of each feature (mean.pt)."""
    feature_std: torch.Tensor
    """[n] its standard deviation (std.pt)."""


def _safe_torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not a complete sdxl-unbox SAE folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refused by weights_only, or a damaged file
        raise CheckpointError(f"{path} could not be loaded safely ({type(exc).__name__}): it is corrupt or holds more than tensors") from None


def load_unbox(folder: str | Path, block: str | None = None, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> UnboxSAE:
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing: not an sdxl-unbox SAE folder")
    try:
        raw = json.loads(cfg_path.read_text())
        n, d, k = int(raw["n_dirs_local"]), int(raw["d_model"]), int(raw["k"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: unreadable or missing n_dirs_local / d_model / k ({exc})") from None
    loaded = _safe_torch_load(folder / "state_dict.pth")
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{folder / 'state_dict.pth'}: expected a dict of tensors")
    shapes = {"encoder.weight": (n, d), "decoder.weight": (d, n), "pre_bias": (d,), "latent_bias": (n,)}
    for name, shape in shapes.items():
        tensor = state.get(name)
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{folder / 'state_dict.pth'}: missing tensor {name}")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"{folder / 'state_dict.pth'}: {name} has shape {list(tensor.shape)}, config.json implies {list(shape)}")
    stats = {}
    for name in ("mean", "std"):
        tensor = _safe_torch_load(folder / f"{name}.pt")
        if not isinstance(tensor, torch.Tensor) or tensor.numel() != n:
            raise CheckpointError(f"{folder / (name + '.pt')}: expected a tensor of {n} per-feature values")
        stats[name] = tensor.reshape(n).float()
    cfg = SAEConfig(
        d_in=d,
        num_latents=n,
        k=k,
        normalize_decoder=False,
        block=block,
        reads="delta",
        branch=None,
        base_model="stabilityai/sdxl-turbo",
        extra={"format": "sdxl-unbox", **{key: raw[key] for key in ("auxk", "dead_steps_threshold") if key in raw}},
    )
    sae = TopKSAE(cfg, device="meta")
    weights = {
        "encoder.weight": state["encoder.weight"],
        "encoder.bias": state["latent_bias"],
        "W_dec": state["decoder.weight"].T.contiguous(),
        "b_dec": state["pre_bias"],
    }
    sae.load_state_dict(weights, assign=True)
    sae = sae.to(device=device or "cpu", dtype=dtype or torch.float32)
    return UnboxSAE(sae, stats["mean"].to(sae.device), stats["std"].to(sae.device))
