"""Size a training run's disk use before sampling anything, and refuse a run that cannot fit.

Rows per shard folder = prompts × positions of the block × recorded steps of the window (one image
per prompt; one folder per block × window × branch). Positions come from the UNet's own config, not
from a forward pass, so a dry run needs no weights: the latent is the image size over the VAE's
scale (2^(VAE levels − 1)); every down level but the last halves it (diffusers' stride-2 conv:
ceil(h / 2)); a block at level L (down_blocks.L, mid_block = the last level, up_blocks.i = level
n − 1 − i, since the up path retraces the down path) sees latent / 2^L per side. For SD1.4 at 512 px
this gives the paper's 16×16 / 8×8 / 16×16 (docs/paper.md); the tests check it against the rows a
real collection writes.

SAE files per folder: the final weights (fp32: encoder, decoder, two biases), the resumable
checkpoint (weights + Adam's two moments + the tokens-since-fired counters) and, for cond SAEs, the
concept dictionary; while a checkpoint is swapped in, one more checkpoint exists for a moment,
counted once for the whole run. The README, registry entry and prompts.txt are not counted (small).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from ..errors import InvalidInputError, UnknownNameError
from .collect import CollectConfig
from .trainer import TrainConfig

_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
_NAME = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.attentions\.(\d+)$|^mid_block\.attentions\.(\d+)$")
SHARD_OVERHEAD = 4096
"""Bytes per shard beyond its rows (safetensors header, manifest entry), generously."""
FOLDER_OVERHEAD = 16384
"""Bytes per shard folder for its manifest (which records the whole collection config)."""
SAE_FILE_OVERHEAD = 16384
"""Bytes per SAE beyond its tensors: safetensors headers, cfg.json, trainer_state.json."""
DICTIONARY_BYTES_PER_LATENT = 1024
"""concepts.json of a cond SAE: one entry per feature with its label and runner-ups (~650 B measured)."""


@dataclass(frozen=True)
class BlockGeometry:
    """Where a transformer block sits in the UNet: its grid and width at one image size."""

    block: str
    grid: tuple[int, int]
    """Spatial positions per side (h, w) at the planned image size."""
    d: int
    """Channel width of its reads."""

    @property
    def positions(self) -> int:
        return self.grid[0] * self.grid[1]


def _per_block(value: Any, count: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * count


def hookable_blocks(unet_config: Mapping[str, Any]) -> list[str]:
    """The transformer block names a UNet config implies (SD1.x / SDXL naming)."""
    downs, ups = list(unet_config["down_block_types"]), list(unet_config["up_block_types"])
    layers = _per_block(unet_config.get("layers_per_block", 2), len(downs))
    names = [f"down_blocks.{i}.attentions.{j}" for i, kind in enumerate(downs) if "CrossAttn" in kind for j in range(layers[i])]
    if "CrossAttn" in str(unet_config.get("mid_block_type", "UNetMidBlock2DCrossAttn")):  # None: no mid block
        names.append("mid_block.attentions.0")
    up_layers = list(reversed(layers))
    names += [f"up_blocks.{i}.attentions.{j}" for i, kind in enumerate(ups) if "CrossAttn" in kind for j in range(up_layers[i] + 1)]
    return names


def block_geometry(unet_config: Mapping[str, Any], vae_scale: int, height: int, width: int, block: str) -> BlockGeometry:
    """Grid and width of `block` for images of height × width (see the module docstring)."""
    valid = hookable_blocks(unet_config)
    key = block.removeprefix("unet.")
    if key not in valid:
        raise UnknownNameError("block", block, valid)
    channels = [int(c) for c in unet_config["block_out_channels"]]
    levels = len(channels)
    match = _NAME.match(key)
    assert match is not None  # every name hookable_blocks makes matches
    if match.group(1) == "down_blocks":
        level, d = int(match.group(2)), channels[int(match.group(2))]
    elif match.group(1) == "up_blocks":
        level, d = levels - 1 - int(match.group(2)), channels[::-1][int(match.group(2))]
    else:
        level, d = levels - 1, channels[-1]
    h, w = height // vae_scale, width // vae_scale
    for _ in range(level):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return BlockGeometry(key, (h, w), d)


def vae_scale_factor(vae_config: Mapping[str, Any]) -> int:
    """Pixels per latent cell, as diffusers computes it: 2^(VAE levels − 1)."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


class FolderPlan(NamedTuple):
    """Rows and bytes of one (block, window, branch) shard folder and its SAE."""

    block: str
    window: str
    branch: str
    positions: int
    steps: int
    """Denoising steps recorded in the window."""
    rows: int
    d: int
    activation_bytes: int
    sae_bytes: int


class DiskPlan(NamedTuple):
    prompts: int
    folders: list[FolderPlan]
    activation_bytes: int
    sae_bytes: int
    total_bytes: int
    """Everything the run writes under --out, peak included."""

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "rows": sum(f.rows for f in self.folders),
            "activation_bytes": self.activation_bytes,
            "sae_bytes": self.sae_bytes,
            "total_bytes": self.total_bytes,
            "total": human_bytes(self.total_bytes),
            "per_sae": [
                {"block": f.block, "window": f.window, "branch": f.branch, "grid_positions": f.positions, "steps": f.steps,
                 "rows": f.rows, "d": f.d, "activation_bytes": f.activation_bytes, "sae_bytes": f.sae_bytes,
                 "activations": human_bytes(f.activation_bytes)}
                for f in self.folders
            ],
        }


def _sae_weight_bytes(d: int, train: TrainConfig) -> int:
    n = train.num_latents or train.expansion_factor * d
    return 4 * (2 * n * d + n + d) + SAE_FILE_OVERHEAD // 2


def plan_disk(prompts: int, geometry: Mapping[str, BlockGeometry], collect: CollectConfig, train: TrainConfig) -> DiskPlan:
    """The bytes a run of `prompts` prompts writes: shards, SAEs, checkpoints (see module docstring)."""
    if prompts < 1:
        raise InvalidInputError("prompts", "the plan needs at least one prompt")
    window_steps = collect.window_steps()
    folders: list[FolderPlan] = []
    peak_checkpoint = 0
    for block in collect.blocks:
        geo = geometry[block]
        weights = _sae_weight_bytes(geo.d, train)
        n = train.num_latents or train.expansion_factor * geo.d
        checkpoint = 3 * weights + 8 * n  # weights + Adam's exp_avg, exp_avg_sq + since_fired (int64)
        peak_checkpoint = max(peak_checkpoint, checkpoint)
        for window in collect.windows:
            steps = len(window_steps[window])
            rows = prompts * geo.positions * steps
            shards = -(-rows // collect.rows_per_shard)
            data = rows * geo.d * _BYTES[collect.dtype] + shards * SHARD_OVERHEAD + FOLDER_OVERHEAD
            for branch in collect.branches:
                dictionary = DICTIONARY_BYTES_PER_LATENT * n if branch == "cond" else 0
                folders.append(FolderPlan(block, window, branch, geo.positions, steps, rows, geo.d, data, weights + checkpoint + dictionary))
    activations = sum(f.activation_bytes for f in folders)
    saes = sum(f.sae_bytes for f in folders)
    return DiskPlan(prompts, folders, activations, saes, activations + saes + peak_checkpoint)


def bytes_under(folder: Path) -> int:
    """Bytes already written under `folder` (0 if absent): a resumed run needs only the rest."""
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    probe = Path(path).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


def check_disk(plan: DiskPlan, out: Path) -> dict[str, Any]:
    """Compare what the run still needs with the free space under `out`; InvalidInputError("out") if short."""
    have = bytes_under(out / "activations") + bytes_under(out / "saes")
    needed = max(0, plan.total_bytes - have)
    free = free_bytes(out)
    report = {"needed_bytes": needed, "already_written_bytes": have, "free_bytes": free, "fits": free >= needed}
    if free < needed:
        raise InvalidInputError("out", f"the run needs {human_bytes(needed)} more under {out} but only {human_bytes(free)} is free; "
                                "free space, choose another --out, use fewer prompts, or pass --no-disk-check")
    return report


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
