"""Progress of long requests (attribution, step-by-step evolution, steering), reported through a
plain callback so the core never imports gradio: the app hands in `gr.Progress`, the CLI nothing."""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[float, str], None]
"""(fraction done in 0..1, what is being done now)."""


def report(progress: ProgressFn | None, fraction: float, what: str) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), what)
