"""Progress of long requests (attribution, step-by-step evolution, steering), reported through a
plain callback so the core never imports gradio: the app hands in `gr.Progress`, the CLI nothing.

Cancellation rides along: the app runs each request under `cancellable(still_wanted)`, and every
denoising step (`check_cancelled`, called by `sampling.sample`) and every progress report asks whether
the request is still wanted. A closed page thus stops its work within one step, through the same
`finally` blocks that undo hooks and edits on any error."""

from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import RequestCancelled

ProgressFn = Callable[[float, str], None]
"""(fraction done in 0..1, what is being done now)."""


def step_reporter(progress: ProgressFn | None, what: str = "denoising step", start: float = 0.0, span: float = 1.0):
    """An `on_step` for `sampling.generate`: reports each denoising step as a share of [start, start + span]."""
    if progress is None:
        return None
    return lambda state: report(progress, start + span * (state.index + 1) / state.num_steps, f"{what} {state.index + 1} of {state.num_steps}")


def report(progress: ProgressFn | None, fraction: float, what: str) -> None:
    check_cancelled()
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), what)


_STILL_WANTED: ContextVar[Callable[[], bool] | None] = ContextVar("concept_lab_still_wanted", default=None)


@contextlib.contextmanager
def cancellable(still_wanted: Callable[[], bool]) -> Iterator[None]:
    """Run the block as one request that stops (RequestCancelled) once `still_wanted()` is False.
    A context variable, so each request thread has its own and the CLI (which sets none) never stops."""
    token = _STILL_WANTED.set(still_wanted)
    try:
        yield
    finally:
        _STILL_WANTED.reset(token)


def current_check() -> Callable[[], bool] | None:
    """This request's check, for work handed to another thread (the batcher's worker)."""
    return _STILL_WANTED.get()


def check_cancelled() -> None:
    """Raise RequestCancelled if the current request is no longer wanted (no-op outside the app)."""
    still_wanted = _STILL_WANTED.get()
    if still_wanted is not None and not still_wanted():
        raise RequestCancelled("the request was cancelled: its page closed or it was stopped")


@dataclass
class StepCounter:
    """Counts a long request's denoising steps (each generation's step, however many images it
    holds), for work made of many generations, such as a lesson: it cannot hand an `on_step` to each."""

    progress: ProgressFn
    total: int
    """The steps the work is expected to take (the bar stays full beyond it)."""
    what: str
    start: float = 0.0
    span: float = 1.0
    """The part of the bar the steps fill: [start, start + span]."""
    done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tick(self) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        report(self.progress, self.start + self.span * min(1.0, done / max(1, self.total)),
               f"{self.what}: {min(done, self.total)} of {self.total} denoising steps")


_COUNTER: ContextVar[StepCounter | None] = ContextVar("concept_lab_step_counter", default=None)


@contextlib.contextmanager
def counting_steps(progress: ProgressFn | None, total: int, what: str, start: float = 0.0,
                   span: float = 1.0) -> Iterator[StepCounter | None]:
    """Report every denoising step of the generations run inside the block (in this context: the
    batcher's worker reports its steps in their caller's, `concepts.batching`) as progress through
    `total` steps, filling [start, start + span] of the bar. Without a progress callback, nothing is
    counted."""
    if progress is None:
        yield None
        return
    counter = StepCounter(progress, total, what, start, span)
    token = _COUNTER.set(counter)
    try:
        yield counter
    finally:
        _COUNTER.reset(token)


def step_done() -> None:
    """One denoising step of one generation is done: counted where `counting_steps` asks for it."""
    counter = _COUNTER.get()
    if counter is not None:
        counter.tick()
