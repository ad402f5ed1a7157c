"""Batching across users: plain generations that arrive together run as one UNet batch.

A class pressing Generate at once sends many batch-1 requests; on a CPU one batch of 8 toy images
costs 0.9 s against 8 × 0.33 s alone. Each caller's thread hands its (already validated) request to
one worker thread and waits; the worker gathers what arrives within `wait_s`, groups requests that
can share a UNet call (same pipeline, steps, guidance, size, negative prompt), draws each request's
noise from its own seed (`GenerationRequest.seed_blocks`), and hands every caller its own images.

Why here and not Gradio's `batch=True`: a Gradio batch fails as a whole when one input is bad, so one
student's empty prompt would fail seven others; here each request is checked in its own thread
before it joins, a request that still fails inside a batch sends each of its companions to run
alone (only its own caller sees the error), and only plain generations join (hooks act per caller,
so steering, capture and weight edits always run alone). Images equal the solo run's to within 1/255 per pixel on the CPU
(batched matrix products may round differently; tests/test_batching.py measures it).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .errors import RequestCancelled
from .hooks import any_active
from .progress import cancellable, current_check
from .sampling import GenerationRequest, GenerationResult, StepState, generate

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
    still_wanted: Callable[[], bool] | None = field(default_factory=current_check)
    """The caller's cancellation check, taken in its own thread (the worker has none of its own)."""
    done: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        r = self.request
        return (id(self.pipe), r.steps, float(r.guidance), r.height, r.width, r.negative_prompt, r.images_per_prompt)

    def wanted(self) -> bool:
        return self.still_wanted is None or self.still_wanted()


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

    def generate(self, pipe, request: GenerationRequest, on_step: Callable[[StepState], None] | None = None) -> GenerationResult:
        """The same as `sampling.generate(pipe, request)`, possibly in company."""
        if request.seed_blocks:
            return generate(pipe, request, on_step=on_step)
        job = _Job(pipe, request, on_step)
        self._ensure_worker()
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

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
        try:
            if len(jobs) == 1:
                job = jobs[0]
                with cancellable(job.wanted):
                    job.result = generate(job.pipe, job.request, on_step=job.on_step)
            else:
                counts = [len(j.request.prompts) * j.request.images_per_prompt for j in jobs]
                merged = replace(jobs[0].request, prompt=[p for j in jobs for p in j.request.prompts],
                                 seed_blocks=tuple((j.request.seed, len(j.request.prompts)) for j in jobs))

                def every_step(state: StepState) -> None:
                    if not any(j.wanted() for j in jobs):  # every page closed: stop (each then stops alone)
                        raise RequestCancelled("every request of the batch was cancelled")
                    for j in jobs:
                        if j.on_step is not None:
                            try:
                                j.on_step(state)
                            except Exception:  # a closed page's progress bar must not stop the others
                                pass

                with torch.no_grad():
                    result = generate(jobs[0].pipe, merged, on_step=every_step)
                for job, part in zip(jobs, _split(result, counts)):
                    job.result = part
            self.batches = (self.batches + [len(jobs)])[-1000:]
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
            else:  # one request spoilt the batch: each runs alone, so only its own caller hears of it
                for job in jobs:
                    self._run_batch([job])
        except BaseException as exc:  # KeyboardInterrupt and the like: every caller hears of it
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done.set()


BATCHER = GenerationBatcher()
"""The process's batcher, shared by every panel's plain generations."""


def batched_generate(pipe, request: GenerationRequest, on_step: Callable[[StepState], None] | None = None) -> GenerationResult:
    """Plain generation through the shared batcher when batching is on ($CONCEPT_LAB_BATCHING), else
    alone; a caller with hooks or a weight edit active always runs alone (they act in its own context)."""
    if batching_enabled() and not any_active():
        return BATCHER.generate(pipe, request, on_step)
    return generate(pipe, request, on_step=on_step)
