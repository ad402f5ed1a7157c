"""Batching across users: generations that arrive together run as one UNet batch.

A class pressing Run at once sends many batch-1 requests; on a CPU one batch of 8 toy images
costs 0.9 s against 8 × 0.33 s alone. Each caller's thread hands its (already validated) request to
one worker thread and waits; the worker gathers what arrives within `wait_s`, groups requests that
can share a UNet call (same pipeline, steps, guidance, size, negative prompt, previews), draws each
request's noise from its own seed (`GenerationRequest.seed_blocks`), and hands every caller its own
images and its own slice of every step.

Requests with hooks join too: explore's capture, steering's edit, evolution's per-step maps and an
erase's weight edit. The caller hands over a `hooks` factory instead of entering its hooks; the worker
builds them, tells each its `rows` of the shared batch (`hooks.BatchRows`) and enters them all, so
each reads and edits only its own images. The factory is called again if the request has to be
rerun alone, so it must also reset whatever the caller's sinks and `on_step` collected.

Why here and not Gradio's `batch=True`: a Gradio batch fails as a whole when one input is bad, so one
student's empty prompt would fail seven others; here each request is checked in its own thread
before it joins, and a request that still fails inside a batch (a steering edit that overflows)
sends each of its companions to run alone (only its own caller sees the error). Images equal the
solo run's to within 1/255 per pixel on the CPU (batched matrix products may round differently;
tests/test_batching.py measures it).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from .errors import RequestCancelled
from .hooks import BatchRows, BlockHooks, ScopedHooks, any_active
from .progress import cancellable, current_check
from .sampling import GenerationRequest, GenerationResult, StepState, generate
from .torch_threads import CORES, use_threads

HooksFactory = Callable[[], Sequence[ScopedHooks]]
"""Builds a request's hooks, not yet entered (called once per attempt: it resets the caller's sinks)."""

MAX_BATCH = 8
WAIT_S = 0.03
"""How long the worker waits for company once a request arrives: 30 ms against 330 ms a toy image."""


def batching_enabled() -> bool:
    return os.environ.get("CONCEPT_LAB_BATCHING", "1") not in ("0", "false", "off")


@dataclass
class _Job:
    pipe: object
    request: GenerationRequest
    on_step: Callable[[StepState], None] | None
    hooks: HooksFactory | None = None
    previews: bool = False
    still_wanted: Callable[[], bool] | None = field(default_factory=current_check)
    """The caller's cancellation check, taken in its own thread (the worker has none of its own)."""
    done: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.time)
    """When the caller handed it over (wall clock, as the batch log writes it)."""
    result: GenerationResult | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        r = self.request
        return (id(self.pipe), r.steps, float(r.guidance), r.height, r.width, r.negative_prompt, r.images_per_prompt, self.previews)

    @property
    def images(self) -> int:
        return len(self.request.prompts) * self.request.images_per_prompt

    def wanted(self) -> bool:
        return self.still_wanted is None or self.still_wanted()


def _slice_step(state: StepState, start: int, stop: int) -> StepState:
    """One request's rows of a shared step."""
    preview = None if state.preview is None else state.preview[start:stop]
    return state._replace(latents=state.latents[start:stop], pred_x0=state.pred_x0[start:stop], preview=preview)


def _split(result: GenerationResult, counts: list[int]) -> list[GenerationResult]:
    out, start = [], 0
    for n in counts:
        nsfw = None if result.nsfw is None else result.nsfw[start:start + n]
        out.append(GenerationResult(result.images[start:start + n], result.pixels[start:start + n], nsfw))
        start += n
    return out


class GenerationBatcher:
    """One worker thread that runs compatible plain generations together (started on first use)."""

    def __init__(self, max_batch: int = MAX_BATCH, wait_s: float = WAIT_S) -> None:
        self.max_batch, self.wait_s = max_batch, wait_s
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []
        """Sizes of the batches run so far, most recent last (at most 1,000 kept: for tests and benchmarks)."""

    def generate(self, pipe, request: GenerationRequest, on_step: Callable[[StepState], None] | None = None,
                 hooks: HooksFactory | None = None, previews: bool = False) -> GenerationResult:
        """The same as `sampling.generate(pipe, request, hooks(), on_step, previews)`, possibly in company."""
        if request.seed_blocks:
            return _alone(pipe, request, on_step, hooks, previews)
        return self._submit([_Job(pipe, request, on_step, hooks, bool(previews))])[0]

    def generate_many(self, pipe, requests: Sequence[tuple[GenerationRequest, HooksFactory | None]]) -> list[GenerationResult]:
        """Several requests of one caller queued at once, so they can share a batch (an erase's before
        and after images); results in order, the first error raised after all have run."""
        return self._submit([_Job(pipe, request, None, hooks) for request, hooks in requests])

    def _submit(self, jobs: list[_Job]) -> list[GenerationResult]:
        """Queue `jobs` for the worker and wait for all of them; the first error is raised."""
        self._ensure_worker()
        for job in jobs:
            self._queue.put(job)
        for job in jobs:
            job.done.wait()
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]  # type: ignore[misc]

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="concept-lab-batcher", daemon=True)
                self._worker.start()

    def _gather(self, first: _Job) -> list[_Job]:
        jobs, deadline = [first], time.monotonic() + self.wait_s
        while len(jobs) < 4 * self.max_batch:
            left = deadline - time.monotonic()
            try:
                jobs.append(self._queue.get(timeout=max(0.0, left)) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _run(self) -> None:
        use_threads(CORES)  # the one thread with every core (`concepts.torch_threads`)
        while True:
            jobs = self._gather(self._queue.get())
            for job in [j for j in jobs if not j.wanted()]:  # its page closed while it waited
                job.error = RequestCancelled("the request was cancelled before it ran")
                job.done.set()
                jobs.remove(job)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                for start in range(0, len(group), self.max_batch):
                    self._run_batch(group[start:start + self.max_batch])

    def _run_batch(self, jobs: list[_Job]) -> None:
        started = time.time()
        try:
            if len(jobs) == 1:
                job = jobs[0]
                with cancellable(job.wanted):
                    job.result = _alone(job.pipe, job.request, job.on_step, job.hooks, job.previews)
            else:
                self._run_together(jobs)
            self.batches = (self.batches + [len(jobs)])[-1000:]
            _log_batch(jobs, started, time.time())
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
            else:  # one request spoilt the batch: each runs alone, so only its own caller hears of it
                for job in jobs:
                    job.error = None
                    self._run_batch([job])
        except BaseException as exc:  # KeyboardInterrupt and the like: every caller hears of it
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done.set()

    def _run_together(self, jobs: list[_Job]) -> None:
        counts = [job.images for job in jobs]
        starts = [sum(counts[:i]) for i in range(len(jobs))]
        size = sum(counts)
        merged = replace(jobs[0].request, prompt=[p for j in jobs for p in j.request.prompts],
                         seed_blocks=tuple((j.request.seed, len(j.request.prompts)) for j in jobs))
        with ExitStack() as stack:
            block_hooks: list[BlockHooks] = []
            for job, start, count in zip(jobs, starts, counts):
                for hook in (job.hooks() if job.hooks is not None else ()):
                    hook.rows = BatchRows(start, start + count, size)
                    stack.enter_context(hook)
                    if isinstance(hook, BlockHooks):
                        block_hooks.append(hook)

            def every_step(state: StepState) -> None:
                if not any(j.wanted() for j in jobs):  # every page closed: stop (each then stops alone)
                    raise RequestCancelled("every request of the batch was cancelled")
                for job, start, count in zip(jobs, starts, counts):
                    if job.on_step is not None and job.error is None:
                        try:
                            job.on_step(_slice_step(state, start, start + count))
                        except Exception as exc:  # a closed page's progress bar must not stop the others
                            job.error = exc

            with torch.no_grad():
                result = generate(jobs[0].pipe, merged, block_hooks, on_step=every_step, previews=jobs[0].previews)
        for job, part in zip(jobs, _split(result, counts)):
            if job.error is None:
                job.result = part


def _log_batch(jobs: list[_Job], started: float, ended: float) -> None:
    """With $CONCEPT_LAB_BATCH_LOG set to a file, one JSON line per batch that ran through: when it
    started and ended, its steps, and per request whether it had hooks, its images and how long it
    waited for the worker (what `benchmarks/bench_classroom.py` sums up: batch sizes, cost per image
    and step). A log that cannot be written is skipped: it must not fail the users' batch."""
    path = os.environ.get("CONCEPT_LAB_BATCH_LOG")
    if not path:
        return
    line = {"start": round(started, 4), "end": round(ended, 4), "steps": jobs[0].request.steps,
            "jobs": [{"hooks": job.hooks is not None, "images": job.images, "waited": round(started - job.submitted, 4)} for job in jobs]}
    try:
        with open(path, "a") as log:
            log.write(json.dumps(line) + "\n")
    except OSError:
        pass


def _alone(pipe, request: GenerationRequest, on_step, hooks: HooksFactory | None, previews: bool) -> GenerationResult:
    """A request run on its own batch, its hooks entered around it."""
    with ExitStack() as stack:
        entered = [stack.enter_context(hook) for hook in (hooks() if hooks is not None else ())]
        return generate(pipe, request, [h for h in entered if isinstance(h, BlockHooks)], on_step=on_step, previews=previews)


BATCHER = GenerationBatcher()
"""The process's batcher, shared by every panel's plain generations."""


def batched_generate(pipe, request: GenerationRequest, on_step: Callable[[StepState], None] | None = None,
                     hooks: HooksFactory | None = None, previews: bool = False) -> GenerationResult:
    """Generation through the shared batcher when batching is on ($CONCEPT_LAB_BATCHING), else alone;
    `hooks` builds the request's own hooks (entered around its rows only). A caller that already has
    hooks or a weight edit active around this call runs alone (they act in its own context)."""
    if batching_enabled() and not any_active():
        return BATCHER.generate(pipe, request, on_step, hooks, previews)
    return _alone(pipe, request, on_step, hooks, previews)


def batched_generate_many(pipe, requests: Sequence[tuple[GenerationRequest, HooksFactory | None]]) -> list[GenerationResult]:
    """Several generations of one caller, each with its own hooks factory: one shared batch when
    batching is on, one after another when it is off (or hooks are already active around the call)."""
    if batching_enabled() and not any_active():
        return BATCHER.generate_many(pipe, requests)
    return [_alone(pipe, request, None, hooks, False) for request, hooks in requests]
