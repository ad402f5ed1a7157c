"""The configuration of a TopK SAE, as stored in `cfg.json` (sparsify's keys plus our own)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import CheckpointError, InvalidInputError
from ..steps import BRANCHES, READS, STAGES

# sparsify / SAeUron options that change what the encoder computes at inference; a checkpoint that
# turns one on is refused rather than silently read wrong.
UNSUPPORTED_FLAGS = ("skip_connection", "transcode", "input_unit_norm")
TRAINING_ONLY_FLAGS = ("batch_topk", "sample_topk", "multi_topk")
"""Flags that only change training. SAeUron trains its published SAEs with `batch_topk` and writes it
into cfg.json; its own loader resets `batch_topk` and `sample_topk` after loading and encodes with
ordinary per-sample TopK, which is what this SAE computes (docs/checkpoints.md)."""
ACTIVATIONS = ("topk",)
"""sparsify's `activation` values we run; "groupmax" encodes differently and is refused."""


@dataclass
class SAEConfig:
    """Shape and provenance of one SAE; `__post_init__` names any bad field."""

    d_in: int
    """Width of the activation it reads (the block's channel count, 1280 for SD1.4's paper blocks)."""
    num_latents: int = 0
    """Dictionary size n; 0 means expansion_factor × d_in."""
    k: int = 10
    """Latents kept per position by TopK (the paper: 10, also 20)."""
    expansion_factor: int = 4
    """n / d_in when num_latents is 0 (the paper: 4)."""
    normalize_decoder: bool = True
    """Keep decoder rows at unit norm, so a latent's value is its contribution's length."""
    block: str | None = None
    """Diffusers module name of the block it reads, e.g. "mid_block.attentions.0"."""
    reads: str = "delta"
    """"delta" (block output − input, the paper's) or "output" (SAeUron's)."""
    window: str | None = None
    """Stage window it was trained on (early / middle / final), or None for every step."""
    branch: str | None = "cond"
    """CFG branch it was trained on (cond / uncond), or None for both."""
    base_model: str | None = None
    """Hub id or name of the model it was trained on."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Training statistics (explained variance, dead fraction, tokens, steps)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of a foreign cfg.json we do not use, kept so a round trip loses nothing."""

    def __post_init__(self) -> None:
        for name in ("d_in", "num_latents", "k", "expansion_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(name, f"must be an integer, got {value!r}")
        if self.d_in <= 0:
            raise InvalidInputError("d_in", f"must be positive, got {self.d_in}")
        if self.num_latents < 0 or self.expansion_factor <= 0:
            raise InvalidInputError("num_latents", "num_latents must be ≥ 0 and expansion_factor > 0")
        if self.num_latents == 0:
            self.num_latents = self.expansion_factor * self.d_in
        if not 1 <= self.k <= self.num_latents:
            raise InvalidInputError("k", f"must be in 1..num_latents ({self.num_latents}), got {self.k}")
        if self.reads not in READS:
            raise InvalidInputError("reads", f"{self.reads!r} is not one of {', '.join(READS)}")
        if self.window is not None and self.window not in STAGES:
            raise InvalidInputError("window", f"{self.window!r} is not one of {', '.join(STAGES)} (or null)")
        if self.branch is not None and self.branch not in BRANCHES:
            raise InvalidInputError("branch", f"{self.branch!r} is not one of {', '.join(BRANCHES)} (or null)")

    @property
    def training_only(self) -> list[str]:
        """The training-only flags the checkpoint was written with (inference is per-sample TopK)."""
        return [flag for flag in TRAINING_ONLY_FLAGS if self.extra.get(flag)]

    def to_dict(self) -> dict[str, Any]:
        """cfg.json content: our fields, then the foreign extras at top level (as they were read)."""
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "cfg.json") -> "SAEConfig":
        """Read a cfg.json dict; errors name `source` and the field."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        for flag in UNSUPPORTED_FLAGS:
            if data.get(flag):
                raise CheckpointError(f"{source}: {flag}=true is not supported by Concept Lab's TopK SAE")
        activation = data.get("activation", "topk")
        if activation not in ACTIVATIONS:
            raise CheckpointError(f"{source}: activation {activation!r} is not supported (only {', '.join(ACTIVATIONS)}): its latents would be read wrong")
        missing = [name for name in ("d_in", "k") if name not in data]
        if "num_latents" not in data and "expansion_factor" not in data:
            missing.append("num_latents or expansion_factor")
        if missing:
            raise CheckpointError(f"{source}: missing field(s) {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "extra"}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        if values.get("num_latents") is None:
            values["num_latents"] = 0
        try:
            return cls(**values)
        except InvalidInputError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
