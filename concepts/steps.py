"""Denoising steps, their normalised time t, and stage windows.

The paper (Tinaz et al., docs/paper.md) splits denoising into three stages by t, where t = 1 is the
first step and t = 0 the last: early t ∈ [0.6, 1], middle [0.2, 0.6), final [0, 0.2). Step index i
of N maps to t = 1 − i/(N − 1). Every window here is a closed range of step indices, so a preset and
a custom "A:B" range mean the same thing to the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInputError

# Stage presets as half-open t ranges [low, high); early also includes t = 1.
STAGE_T_RANGES: dict[str, tuple[float, float]] = {
    "early": (0.6, 1.0),
    "middle": (0.2, 0.6),
    "final": (0.0, 0.2),
}
STAGES: tuple[str, ...] = tuple(STAGE_T_RANGES)
"""The stage window names, in denoising order."""
BRANCHES: tuple[str, ...] = ("cond", "uncond")
"""The two halves of a CFG batch."""
READS: tuple[str, ...] = ("delta", "output")
"""What a hook reads from a block: output − input (the paper) or the output (SAeUron)."""
# The timestep whose SAE the paper uses inside each stage.
STAGE_SAE_T: dict[str, float] = {"early": 1.0, "middle": 0.5, "final": 0.0}


def step_t(index: int, num_steps: int) -> float:
    """Normalised time of step `index` of `num_steps`: 1.0 at the first step, 0.0 at the last."""
    if num_steps <= 1:
        return 1.0
    return 1.0 - index / (num_steps - 1)


def nearest_step(t: float, num_steps: int) -> int:
    """The step index whose t is closest to `t` (used to pick the paper's per-stage SAE step)."""
    return min(range(num_steps), key=lambda i: abs(step_t(i, num_steps) - t))


def stage_of(index: int, num_steps: int) -> str:
    """Which stage preset a step belongs to."""
    t = step_t(index, num_steps)
    for name, (low, high) in STAGE_T_RANGES.items():
        if low <= t < high or (name == "early" and t >= high):
            return name
    return "final"


@dataclass(frozen=True)
class StepInfo:
    """Where the sampler is: handed to every hook and edit at each UNet call."""

    index: int
    """Step index, 0 = first denoising step."""
    num_steps: int
    """Total number of denoising steps of this run."""
    timestep: int
    """The scheduler's own timestep value (0..999 for SD), as passed to the UNet."""
    cfg: bool
    """True when the UNet batch is [uncond, cond] (classifier-free guidance is on)."""

    @property
    def t(self) -> float:
        return step_t(self.index, self.num_steps)


@dataclass(frozen=True)
class StepWindow:
    """A closed range of step indices [start, end] in which an edit or a capture is active."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise InvalidInputError("window", f"step range {self.start}:{self.end} is empty or negative")

    def contains(self, index: int) -> bool:
        return self.start <= index <= self.end

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"

    @classmethod
    def all_steps(cls, num_steps: int) -> "StepWindow":
        return cls(0, max(num_steps - 1, 0))

    @classmethod
    def parse(cls, spec: str, num_steps: int) -> "StepWindow":
        """Read "early" / "middle" / "final" / "all" or an inclusive step range "A:B" for `num_steps` steps.

        A range must lie inside 0..num_steps−1 and have A ≤ B; a preset that holds no step at this step
        count (e.g. "middle" with 2 steps) is refused rather than silently doing nothing.
        """
        if num_steps < 1:
            raise InvalidInputError("steps", f"must be at least 1, got {num_steps}")
        text = str(spec).strip().lower()
        if text == "all":
            return cls.all_steps(num_steps)
        if text in STAGE_T_RANGES:
            indices = [i for i in range(num_steps) if stage_of(i, num_steps) == text]
            if not indices:
                raise InvalidInputError("window", f"stage {text!r} holds no step when sampling {num_steps} steps")
            return cls(indices[0], indices[-1])
        parts = text.split(":")
        if len(parts) != 2:
            raise InvalidInputError(
                "window", f"{spec!r} is not early, middle, final, all or a step range like 0:9"
            )
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise InvalidInputError("window", f"{spec!r}: step range bounds must be integers") from None
        if start > end:
            raise InvalidInputError("window", f"{spec!r} is inverted: start {start} is after end {end}")
        if start < 0 or end >= num_steps:
            raise InvalidInputError(
                "window", f"{spec!r} lies outside the steps 0:{num_steps - 1} of this {num_steps}-step run"
            )
        return cls(start, end)


def sae_stage(window: StepWindow, num_steps: int) -> str:
    """The stage whose SAE serves a window: the stage of its middle step."""
    return stage_of((window.start + window.end) // 2, num_steps)
