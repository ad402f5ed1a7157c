"""Steering edits: add SAE concept vectors to a block's Δ, where and when the user asks (docs/paper.md).

Both edits keep the SAE's error: the read becomes Δ + Σ_c (z'_c − z_c) f_c, with f_c the decoder row
of feature c, so only the chosen features change and everything the SAE does not explain survives.

- **Spatial** (layout): inside the region each chosen feature is set to β·‖z_ij‖ (the norm of the
  whole code at that position, so β is relative to how busy the position is) and outside to 0.
- **Global** (style): every position gets β·(‖z_ij‖ / Σ‖z‖)·f_c added, spreading a fixed budget
  over the image in proportion to where the block is active.

Regions are masks at image resolution, pooled to the block's grid when the edit runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError, UnknownNameError
from ..hooks import BlockEdit, EditFn
from ..sae import TopKSAE
from ..steps import StepInfo, StepWindow

MAX_STRENGTH = 10_000.0
"""Largest |β| accepted (the paper's largest is 4000); beyond it images are noise, not steering."""
CELLS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
QUADRANTS = ("top left quadrant", "top right quadrant", "bottom left quadrant", "bottom right quadrant")
REGIONS = (*CELLS, *QUADRANTS, "global")
Mode = Literal["spatial", "global", "paint"]


# The paper's β per stage (docs/paper.md); its scaling is not fully recoverable, so these are starting
# points, not constants of nature. A model world can set its own (registry "defaults.strengths"),
# calibrated with its own measurements (the toy's come from `python -m concepts.toy.evaluate steer`).
PAPER_STRENGTH = {
    "spatial": {"early": 4000.0, "middle": 400.0, "final": 1000.0},
    "global": {"early": 8.0, "middle": 10.0, "final": 10.0},
}


def default_strength(window: str, spatial: bool, table: dict | None = None) -> float:
    """β for a preset window from `table` (default: the paper's); "all" and custom ranges get the middle stage's."""
    per_window = (table or PAPER_STRENGTH)["spatial" if spatial else "global"]
    return float(per_window.get(str(window).strip().lower(), per_window["middle"]))


def check_strength(strength: float) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError("strength", f"{repr(strength)[:40]} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInputError("strength", f"must be a finite number, got {value}")
    if abs(value) > MAX_STRENGTH:
        raise InvalidInputError("strength", f"|{value:g}| is above the largest accepted strength {MAX_STRENGTH:g}")
    return value


def check_features(sae: TopKSAE, features: Sequence[int]) -> tuple[int, ...]:
    ids = tuple(int(f) for f in features)
    if not ids:
        raise InvalidInputError("features", "choose at least one feature (or a concept that has features)")
    bad = [f for f in ids if not 0 <= f < sae.num_latents]
    if bad:
        raise InvalidInputError("features", f"{bad} outside this SAE's 0..{sae.num_latents - 1}")
    return ids


def region_mask(name: str, height: int, width: int) -> torch.Tensor | None:
    """A preset region as a [height, width] mask in {0, 1}; None for "global"."""
    key = name.strip().lower()
    if key == "global":
        return None
    mask = torch.zeros(height, width)
    if key in CELLS:
        row, col = divmod(CELLS.index(key), 3)
        mask[row * height // 3 : (row + 1) * height // 3, col * width // 3 : (col + 1) * width // 3] = 1.0
        return mask
    if key in QUADRANTS:
        row, col = divmod(QUADRANTS.index(key), 2)
        mask[row * height // 2 : (row + 1) * height // 2, col * width // 2 : (col + 1) * width // 2] = 1.0
        return mask
    raise UnknownNameError("region", name, list(REGIONS))


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """A user mask [H, W] (any scale; > 0 means "here"), as floats in [0, 1]."""
    mask = torch.as_tensor(mask, dtype=torch.float32)
    if mask.ndim == 3:  # an RGB(A) painting: any painted channel counts
        mask = mask.amax(dim=-1) if mask.shape[-1] in (1, 3, 4) else mask.amax(dim=0)
    if mask.ndim != 2 or min(mask.shape) < 1:
        raise InvalidInputError("mask", f"expected a 2-D mask, got shape {list(mask.shape)}")
    if not torch.isfinite(mask).all():
        raise InvalidInputError("mask", "contains NaN or infinite values")
    peak = float(mask.max())
    if peak <= 0:
        raise InvalidInputError("mask", "is empty: paint the region to steer, or choose a preset region")
    return (mask / peak).clamp(0, 1)


def pool_to_grid(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Image-resolution mask → the block's [height, width] grid (share of each cell covered)."""
    return F.adaptive_avg_pool2d(mask[None, None], (height, width))[0, 0]


def _codes(sae: TopKSAE, read: torch.Tensor) -> torch.Tensor:
    return sae.encode_dense(read.to(sae.dtype))


def spatial_edit(sae: TopKSAE, features: Sequence[int], strength: float, mask: torch.Tensor) -> EditFn:
    ids = list(check_features(sae, features))
    beta = check_strength(strength)
    mask = check_mask(mask)

    def edit(step: StepInfo, read: torch.Tensor) -> torch.Tensor:
        z = _codes(sae, read)  # [b, H, W, n]
        region = pool_to_grid(mask, read.shape[1], read.shape[2]).to(read.device, z.dtype)[None, :, :, None]
        target = beta * z.norm(dim=-1, keepdim=True) * region  # [b, H, W, 1], broadcast over features
        change = (target - z[..., ids]) @ sae.W_dec[ids]
        return read + change.to(read.dtype)

    return edit


def global_edit(sae: TopKSAE, features: Sequence[int], strength: float) -> EditFn:
    ids = list(check_features(sae, features))
    beta = check_strength(strength)

    def edit(step: StepInfo, read: torch.Tensor) -> torch.Tensor:
        norms = _codes(sae, read).norm(dim=-1, keepdim=True)  # [b, H, W, 1]
        share = norms / norms.sum(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        direction = sae.W_dec[ids].sum(dim=0)
        return read + (beta * share * direction).to(read.dtype)

    return edit


def paint_edit(sae: TopKSAE, features: Sequence[int], strength: float, mask: torch.Tensor | None, scale: torch.Tensor) -> EditFn:
    """The sdxl-unbox demo's paint: add β · scale[f] · (share of the cell painted) · f to Δ for each
    feature f, where `scale` is the feature's mean activation (its `mean.pt`), so a strength copied
    from that demo means the same here. Nothing is encoded: the painted direction is simply added."""
    ids = list(check_features(sae, features))
    beta = check_strength(strength)
    mask = None if mask is None else check_mask(mask)
    weights = torch.as_tensor(scale, dtype=torch.float32)[ids]

    def edit(step: StepInfo, read: torch.Tensor) -> torch.Tensor:
        h, w = read.shape[1], read.shape[2]
        region = torch.ones(h, w) if mask is None else pool_to_grid(mask, h, w)
        direction = (beta * weights.to(sae.W_dec.device, sae.W_dec.dtype)) @ sae.W_dec[ids]  # [d]
        return read + (region.to(read.device, direction.dtype)[None, :, :, None] * direction).to(read.dtype)

    return edit


def suppress_edit(sae: TopKSAE, features: Sequence[int]) -> EditFn:
    """Switch features off everywhere (z_c := 0), keeping the SAE error: the SAE way to erase a
    concept, which the erase panel compares with CAD."""
    ids = list(check_features(sae, features))

    def edit(step: StepInfo, read: torch.Tensor) -> torch.Tensor:
        z = _codes(sae, read)
        return read - (z[..., ids] @ sae.W_dec[ids]).to(read.dtype)

    return edit


def suppression_edits(labelled: Sequence[tuple], steps: int) -> list[BlockEdit]:
    """Switch each SAE's labelled features off in its own window, on both CFG branches, given
    `saes.labelled_saes(...)`: the SAE way to erase a concept."""
    return [BlockEdit(loaded.entry.block, suppress_edit(loaded.sae, features), StepWindow.parse(loaded.entry.window, steps), "both")
            for loaded, features in labelled]


@dataclass(frozen=True)
class SteeringPlan:
    """What to steer: which features of which block's SAE, where, when, how strongly, on which branch."""

    block: str
    features: tuple[int, ...]
    window: StepWindow
    strength: float
    mask: torch.Tensor | None = None
    """Image-resolution mask (None: a global, style edit)."""
    branch: str = "cond"
    feature_scale: torch.Tensor | None = None
    """Per-feature scale [n] of the sdxl-unbox paint (its features' mean activations); None: the
    paper's spatial or global edit."""

    def __post_init__(self) -> None:
        if self.branch not in ("cond", "both"):
            raise InvalidInputError("branch", f"{self.branch!r} is not cond or both")
        check_strength(self.strength)
        if self.mask is not None:
            object.__setattr__(self, "mask", check_mask(self.mask))

    @property
    def mode(self) -> Mode:
        if self.feature_scale is not None:
            return "paint"
        return "global" if self.mask is None else "spatial"

    def edit(self, sae: TopKSAE) -> BlockEdit:
        if self.feature_scale is not None:
            fn = paint_edit(sae, self.features, self.strength, self.mask, self.feature_scale)
        elif self.mask is None:
            fn = global_edit(sae, self.features, self.strength)
        else:
            fn = spatial_edit(sae, self.features, self.strength, self.mask)
        return BlockEdit(self.block, fn, self.window, self.branch)  # type: ignore[arg-type]
