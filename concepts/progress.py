"""Progress of long requests (attribution, step-by-step evolution, steering), reported through a
plain callback so the core never imports gradio: the app hands in `gr.Progress`, the CLI nothing."""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[float, str], None]
"""(fraction done in 0..1, what is being done now)."""


def step_reporter(progress: ProgressFn | None, what: str = "denoising step", start: float = 0.0, span: float = 1.0):
    """An `on_step` for `sampling.generate`: reports each denoising step as a share of [start, start + span]."""
    if progress is None:
        return None
    return lambda state: report(progress, start + span * (state.index + 1) / state.num_steps, f"{what} {state.index + 1} of {state.num_steps}")


def report(progress: ProgressFn | None, fraction: float, what: str) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), what)
