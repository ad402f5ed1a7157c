"""Torch's CPU threads per OS thread: in a served app, only the batcher's worker runs parallel ops.

PyTorch's CPU ops run on an OpenMP team that belongs to the OS thread calling them, and each thread
that once ran an op with two or more threads keeps its team for as long as it lives. On the 2-core
machine, a toy generation (8 images) in a worker thread takes 1.44 s; beside another live thread
that once ran a single op on both cores, even one that now sleeps, 2.35 s (1.63×), and setting that
thread back to one thread does not undo it (2.37 s); beside a thread that ran its op on one thread,
1.62 s (`python benchmarks/bench_threads.py --repeats 3`, `benchmarks/results/threads-toy-shapes-cpu.json`).
Gradio runs every request in a pool of worker threads that live on, so in the app every handler
that touched torch made every later generation slower. The served app therefore gives one thread to
each handler thread (the judge, figures, CAD's gradients), and the cores to the batcher's UNet
workers (`concepts.batching`): the first takes all of them while it serves one student alone; in a
busy app every worker runs on one thread, one worker per core (`WorkerThreads` says why), and the
app keeps Python's switch interval short (`short_turns`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

import torch

CORES = max(1, torch.get_num_threads())
"""Torch's threads when this module was first imported (its default: the machine's cores)."""

_here = threading.local()


def one_thread_rule() -> bool:
    """Whether the served app keeps its own threads to one torch thread ($CONCEPT_LAB_ONE_TORCH_THREAD,
    on by default; `benchmarks/bench_solo.py` serves it both ways)."""
    return os.environ.get("CONCEPT_LAB_ONE_TORCH_THREAD", "1") not in ("0", "false", "off")


_served = 0
_served_lock = threading.Lock()
CALM_S = 1.0
"""The worker goes back to every core only after the app has served one request at most this long."""


@contextmanager
def serving():
    """Count a served request for as long as its handler runs (`ui.common.user_errors`)."""
    global _served
    with _served_lock:
        _served += 1
    try:
        yield
    finally:
        with _served_lock:
            _served -= 1


def requests_served() -> int:
    """How many served requests are being handled right now (waiting for the UNet included)."""
    return _served


class WorkerThreads:
    """How many torch threads the UNet worker should use for its next step.

    Alone, every core: a batch of 4 toy images at 25 steps takes 0.47 s on both cores, 0.67 s on one.
    But beside one other process busy on one core it takes 1.60 s on both and 0.69 s on one: an op
    split in two waits for its half that the OS put aside (`python benchmarks/bench_worker_threads.py`).
    In a class the other core is always busy with the other students' handlers (figures, SAE codes,
    the web server), so the worker takes one thread while two or more requests are being served, and
    every core again once the app has served at most one for `CALM_S`. $CONCEPT_LAB_WORKER_THREADS
    fixes the count instead (1 to the machine's cores). Only the first worker asks: the others
    (`concepts.batching.batch_workers`) always run on one thread."""

    def __init__(self, calm_s: float = CALM_S) -> None:
        self.calm_s = calm_s
        self._busy_at = float("-inf")

    def now(self) -> int:
        fixed = os.environ.get("CONCEPT_LAB_WORKER_THREADS")
        if fixed:
            try:
                return min(max(int(fixed), 1), CORES)
            except ValueError:
                pass
        clock = time.monotonic()
        if requests_served() >= 2:
            self._busy_at = clock
        return 1 if clock - self._busy_at < self.calm_s else CORES


def use_threads(count: int) -> None:
    """Run the calling OS thread's torch ops on `count` threads. Done once per thread and count:
    every change also clears oneDNN's cache of compiled kernels."""
    if getattr(_here, "count", None) != count:
        torch.set_num_threads(count)
        _here.count = count


def threads_here() -> int | None:
    """The count `use_threads` set for the calling thread, or None if it never did."""
    return getattr(_here, "count", None)


SWITCH_INTERVAL_MS = 0.1
"""The served app's interpreter switch interval (Python's default is 5 ms); see `short_turns`."""


def short_turns() -> float:
    """Make threads that wait for the interpreter lock wait at most 0.1 ms, not Python's 5 ms; returns
    the interval set, in seconds ($CONCEPT_LAB_SWITCH_INTERVAL_MS sets another).

    Why: the UNet worker releases the lock around every torch op and must take it back after each;
    while another thread runs Python (Gradio, figures), each taking-back waits out the whole interval.
    A toy step of 4 images took 38 ms alone and 2,743 ms beside one busy Python thread at 5 ms,
    260 ms at 0.5 ms and 103 ms at 0.1 ms, which costs that thread 13 % of its loops
    (`python benchmarks/bench_switch_interval.py --repeats 3 --window 8`)."""
    try:
        interval_ms = float(os.environ.get("CONCEPT_LAB_SWITCH_INTERVAL_MS", SWITCH_INTERVAL_MS))
    except ValueError:
        interval_ms = SWITCH_INTERVAL_MS
    if not 0.001 <= interval_ms <= 100:  # also NaN
        interval_ms = SWITCH_INTERVAL_MS
    sys.setswitchinterval(interval_ms / 1000)
    return sys.getswitchinterval()
