"""Batching across users: requests in flight together share every UNet call.

A class pressing Run at once sends many batch-1 requests; on a CPU one batch of 8 toy images
costs 0.9 s against 8 × 0.33 s alone. Each caller's thread hands its (already validated) request to
one worker thread and waits. The worker schedules by step, not by request (continuous batching, as
LLM servers do it): before every shared UNet call, requests that arrived since join the ones in
flight, and a request leaves with its images as soon as its own last step is done. So a 10-step
evolution, a 25-step generation that started a second earlier and a steering run ride in the same
UNet call, each at its own step (`concepts.shared_steps`: the UNet takes one timestep per row; each
request keeps its own scheduler, seeded noise, conditioning and guidance). Only requests that cannot
share a call are kept apart: another pipeline, image size, or CFG on against off; such groups take
turns, one step each. Requests whose hooks sit inside the blocks (an erase's weight edit) also ride
in a group of their own: a block with such a hook acting runs eagerly, and the other requests' blocks
then run as traced graphs, about twice as fast in a busy server (`concepts.traced_blocks`).
At most `max_batch` requests share a call; the rest wait for a place to free up.

Requests with hooks join too: explore's capture, steering's edit, evolution's per-step maps and an
erase's weight edit. The caller hands over a `hooks` factory instead of entering its hooks; the worker
builds and enters them when the request joins, tells each its `rows` of every shared call
(`hooks.BatchRows`) and its own step, and leaves them when the request leaves, so each reads and
edits only its own images. The factory is called again if the request has to be rerun alone, so it
must also reset whatever the caller's sinks and `on_step` collected.

Why here and not Gradio's `batch=True`: a Gradio batch fails as a whole when one input is bad, so one
student's empty prompt would fail seven others, and it cannot let a request join halfway; here each
request is checked in its own thread before it joins, and a request that still fails inside a shared
step (a steering edit that overflows) sends each of its companions to run alone from the start (only
its own caller sees the error). Images equal the solo run's to within 1/255 per pixel on the CPU
(batched matrix products may round differently; tests/test_batching.py measures it).
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import os
import queue
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .devices import execution_device
from .errors import RequestCancelled
from .hooks import BlockHooks, ScopedHooks, any_active
from .progress import cancellable, current_check, step_done
from .sampling import GenerationRequest, GenerationResult, PreviewWhen, StepState, generate
from .settings import number_setting
from .shared_steps import InFlight, step_together
from .torch_threads import CORES, WorkerThreads, requests_served, use_threads

log = logging.getLogger(__name__)

HooksFactory = Callable[[], Sequence[ScopedHooks]]
"""Builds a request's hooks, not yet entered (called once per attempt: it resets the caller's sinks)."""

_STOP = object()
"""Put on the queue by `GenerationBatcher.stop`: the worker ends."""
DEFAULT_MAX_BATCH = 16
"""Thirty students pressing Generate at once on the served app: 6.25 s with 16, 7.17 s with 8; a
five-minute class answered 482 requests with 16 and 455 with 8, generate p95 4.18 and 4.31 s (one run
each, `python benchmarks/bench_served_burst.py`, `python benchmarks/bench_classroom.py --minutes 5`;
docs/speed.md, "A burst of generations, again")."""


def max_batch_setting() -> int:
    """Requests per shared UNet call: $CONCEPT_LAB_MAX_BATCH (1 to 64), else 16. The Generate tab's
    places follow it (`ui.generate.GENERATE_PLACES`). A bad value is refused with one log line."""
    return number_setting("CONCEPT_LAB_MAX_BATCH", DEFAULT_MAX_BATCH, int, lambda n: 1 <= n <= 64, "a whole number from 1 to 64", log)


MAX_BATCH = max_batch_setting()
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
    previews: PreviewWhen = False
    still_wanted: Callable[[], bool] | None = field(default_factory=current_check)
    """The caller's cancellation check, taken in its own thread (the worker has none of its own)."""
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's context variables, taken in its own thread: `on_step` runs in them, since Gradio's
    progress bar finds its request through them (in the worker's own, a bar never moved)."""
    done: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.time)
    """When the caller handed it over (wall clock, as the batch log writes it)."""
    result: GenerationResult | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        """Requests with the same key can share a UNet call, whatever their steps, guidance, prompts
        or hooks (`concepts.shared_steps`); `_admit` adds whether their hooks sit inside the blocks."""
        r = self.request
        return (id(self.pipe), r.height, r.width, r.cfg)

    @property
    def images(self) -> int:
        return len(self.request.prompts) * self.request.images_per_prompt

    def wanted(self) -> bool:
        return self.still_wanted is None or self.still_wanted()

    def report(self, state: StepState) -> None:
        """The step counted and the caller's `on_step` called, in the caller's context."""
        self.context.run(self._report, state)

    def _report(self, state: StepState) -> None:
        step_done()
        if self.on_step is not None:
            self.on_step(state)


def batch_workers() -> int:
    """UNet workers on the CPU: $CONCEPT_LAB_BATCH_WORKERS, else one per core (see `GenerationBatcher`)."""
    try:
        return max(1, int(os.environ.get("CONCEPT_LAB_BATCH_WORKERS", CORES)))
    except ValueError:
        return CORES


@dataclass
class _Worker:
    """One worker thread, its own queue and requests in flight."""

    index: int
    queue: "queue.Queue[_Job]" = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    load: int = 0
    """Images handed to it and not yet given back (queued or in flight)."""


class GenerationBatcher:
    """Worker threads that run every request in flight through shared UNet calls (started on first use).

    One worker per core on the CPU, each on one torch thread while the app is busy: in a class a
    single worker on one thread costs more per image than the unbatched server, which runs two
    requests at once on the two cores, and one worker on every core waits for the core the other
    handlers hold; two workers of 4 images each cost 0.66 of the unbatched server's machine time per
    image and step (`python benchmarks/bench_batching_ceiling.py`). A request goes to the worker
    with the fewest images in hand; while the app serves at most one request (one student alone), and
    for pipelines off the CPU, every request goes to the first worker, which then takes every core."""

    def __init__(self, max_batch: int = MAX_BATCH, wait_s: float = WAIT_S, workers: int | None = None) -> None:
        self.max_batch, self.wait_s = max_batch, wait_s
        self._workers = [_Worker(i) for i in range(workers or batch_workers())]
        self._lock = threading.Lock()
        self._stats = threading.Lock()
        self.batches: list[int] = []
        """How many requests shared each UNet call, most recent last (the last 10,000 kept: for tests
        and benchmarks; `calls` counts them all)."""
        self.by_worker: list[int] = [0] * len(self._workers)
        """UNet calls each worker made."""
        self.calls = 0

    def generate(self, pipe, request: GenerationRequest, on_step: Callable[[StepState], None] | None = None,
                 hooks: HooksFactory | None = None, previews: bool = False) -> GenerationResult:
        """The same as `sampling.generate(pipe, request, hooks(), on_step, previews)`, possibly in company."""
        if request.seed_blocks:
            return _alone(pipe, request, on_step, hooks, previews)
        return self._submit([_Job(pipe, request, on_step, hooks, previews)])[0]

    def generate_many(self, pipe, requests: Sequence[tuple[GenerationRequest, HooksFactory | None]]) -> list[GenerationResult]:
        """Several requests of one caller queued at once, so they can share a batch (an erase's before
        and after images); results in order, the first error raised after all have run."""
        return self._submit([_Job(pipe, request, None, hooks) for request, hooks in requests])

    def _submit(self, jobs: list[_Job]) -> list[GenerationResult]:
        """Queue `jobs` for the workers and wait for all of them; the first error is raised."""
        self._ensure_workers()
        given = []
        for job in jobs:
            with self._lock:
                worker = self._choose(job)
                worker.load += job.images
            given.append(worker)
            worker.queue.put(job)
        for job, worker in zip(jobs, given):
            job.done.wait()
            with self._lock:
                worker.load -= job.images
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]  # type: ignore[misc]

    def _choose(self, job: _Job) -> _Worker:
        """The worker with the fewest images in hand; the first one for a student alone (it takes every
        core then) or a pipeline off the CPU (one process shares one GPU best through one batch)."""
        if len(self._workers) == 1 or requests_served() <= 1 or _device_type(job.pipe) != "cpu":
            return self._workers[0]
        return min(self._workers, key=lambda w: w.load)

    def since(self, calls: int) -> list[int]:
        """The `batches` entries of the UNet calls after the first `calls` (a mark taken from `calls`)."""
        return self.batches[len(self.batches) - min(self.calls - calls, len(self.batches)):]

    def _ensure_workers(self) -> None:
        with self._lock:
            for worker in self._workers:
                if worker.thread is None or not worker.thread.is_alive():
                    first = worker.thread is None
                    worker.thread = threading.Thread(target=self._run, args=(worker,), name=f"concept-lab-batcher-{worker.index}",
                                                     daemon=True)
                    worker.thread.start()
                    if first and worker.index == 0:
                        atexit.register(self.stop)

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the workers after their current step (requests still in flight hear RequestCancelled).
        Called at interpreter exit: a daemon thread that Python stops while it is inside torch's C++
        code aborts the whole process ("terminate called without an active exception")."""
        running = [w for w in self._workers if w.thread is not None and w.thread.is_alive()]
        for worker in running:
            worker.queue.put(_STOP)  # type: ignore[arg-type]
        for worker in running:
            worker.thread.join(timeout_s)

    def _run(self, worker: _Worker) -> None:
        """Step-level scheduling: before every shared step, requests that arrived join the ones in
        flight (while their group has room), and each request leaves as soon as its last step is done."""
        threads = WorkerThreads()  # every core alone, one in a busy class (`concepts.torch_threads`)
        inbox = worker.queue
        waiting: list[_Job] = []
        flying: dict[tuple, list[_Running]] = {}
        while True:
            if not waiting and not flying:  # idle: sleep until a request comes, then wait a moment for company
                waiting.append(inbox.get())
                deadline = time.monotonic() + self.wait_s
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        waiting.append(inbox.get(timeout=left))
                    except queue.Empty:
                        break
            while True:
                try:
                    waiting.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if any(job is _STOP for job in waiting):
                for job in [j for j in waiting if j is not _STOP] + [r.job for group in flying.values() for r in group]:
                    _fail(job, RequestCancelled("the server is shutting down"))
                for group in flying.values():
                    for running in group:
                        running.flight.close()
                return
            use_threads(threads.now() if worker.index == 0 else 1)  # only the first worker ever takes every core
            waiting = self._admit(waiting, flying)
            for key in list(flying):
                self._step(flying, key, worker.index)

    def _admit(self, waiting: list[_Job], flying: dict[tuple, list["_Running"]]) -> list[_Job]:
        """Start the waiting requests that fit (first come, first in); the rest keep waiting."""
        still = []
        for job in waiting:
            if not job.wanted():  # its page closed while it waited
                _fail(job, RequestCancelled("the request was cancelled before it ran"))
                continue
            try:
                hooks = job.hooks() if job.hooks else ()  # not entered yet: dropped unused if its group is full
                key = (*job.key(), any(h.inside_blocks for h in hooks))  # see the module docstring
                if len(flying.get(key, ())) >= self.max_batch:
                    still.append(job)
                    continue
                running = _Running(job, InFlight.start(job.pipe, job.request, hooks, job.previews))
            except Exception as exc:  # a bad request fails alone, before it joins anyone
                _fail(job, exc)
                continue
            flying.setdefault(key, []).append(running)
        return still

    def _step(self, flying: dict[tuple, list["_Running"]], key: tuple, worker: int = 0) -> None:
        """One shared step of a group; finished requests get their images, a failed step reruns its
        requests alone (fresh hooks) so that only the one at fault hears of it."""
        group = flying[key]
        for running in [r for r in group if not r.job.wanted()]:  # a page closed: its rows leave
            running.flight.close()
            group.remove(running)
            _fail(running.job, RequestCancelled("the request was cancelled"))
        started = time.time()
        try:
            if group:
                self._step_group(group, worker)
                stepped, leaving = [*group], [r for r in group if r.flight.done or r.job.error is not None]
                for running in leaving:
                    running.flight.close()
                    if running.job.error is None:
                        running.job.result = running.flight.result()
                for running in leaving:  # only once every result is in: a failed decode reruns them all
                    group.remove(running)
                _log_batch(stepped, started, time.time(), worker)
                for running in leaving:  # after the log line: a caller may read it as soon as it wakes
                    running.job.done.set()
        except Exception as exc:  # one request spoilt the step: each runs alone, so only its own caller hears of it
            for running in group:
                running.flight.close()
            if len(group) == 1:  # it was alone: no one else to spare, and a rerun would fail the same way
                _fail(group[0].job, exc)
                group.clear()
                return
            for running in group:
                job = running.job
                job.error = None
                try:
                    with cancellable(job.wanted):
                        job.result = _alone(job.pipe, job.request, job.report, job.hooks, job.previews)
                except Exception as exc:
                    job.error = exc
                job.done.set()
            group.clear()
        except BaseException as exc:  # KeyboardInterrupt and the like: every caller hears of it
            for running in group:
                running.flight.close()
                _fail(running.job, exc)
            group.clear()
        finally:
            if not group:
                flying.pop(key, None)

    def _step_group(self, group: list["_Running"], worker: int = 0) -> None:
        jobs = {id(r.flight): r.job for r in group}

        def hand_on(flight: InFlight, state: StepState) -> None:
            """The caller's own step (progress bar, per-step maps); a failing callback (a closed
            page's progress bar) ends only its own request."""
            job = jobs[id(flight)]
            if job.error is None:
                try:
                    job.report(state)
                except Exception as exc:
                    job.error = exc

        for running in group:
            running.steps_done += 1
        step_together([r.flight for r in group], hand_on)
        with self._stats:
            self.calls += 1
            self.by_worker[worker] += 1
            self.batches.append(len(group))
            del self.batches[:-10_000]


@dataclass
class _Running:
    """A request the worker has started: its job (the caller's side) and its sampling state."""

    job: _Job
    flight: InFlight
    steps_done: int = 0


def _device_type(pipe) -> str:
    return execution_device(pipe).type


def _fail(job: _Job, error: BaseException) -> None:
    job.error = error
    job.done.set()


def _log_batch(group: list[_Running], started: float, ended: float, worker: int = 0) -> None:
    """With $CONCEPT_LAB_BATCH_LOG set to a file, one JSON line per shared step: when it started and
    ended, and per request whether it had hooks, its images, and, at its first step, how long it
    waited for the worker (what `benchmarks/bench_classroom.py` sums up: rows per UNet call, cost per
    image and step, how long generations waited). A log that cannot be written is skipped: it must
    not fail the users' step."""
    path = os.environ.get("CONCEPT_LAB_BATCH_LOG")
    if not path:
        return
    jobs = []
    for running in group:
        job = running.job
        entry = {"hooks": job.hooks is not None, "images": job.images, "steps": job.request.steps}
        if running.steps_done == 1:
            entry["waited"] = round(started - job.submitted, 4)
        jobs.append(entry)
    line = {"start": round(started, 4), "end": round(ended, 4), "steps": 1, "worker": worker, "jobs": jobs}
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
