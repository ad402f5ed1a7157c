"""Torch's CPU threads per OS thread: in a served app, only the batcher's worker runs parallel ops.

PyTorch's CPU ops run on an OpenMP team that belongs to the OS thread calling them, and each thread
that once ran an op with two or more threads keeps its team for as long as it lives. On the 2-core
machine, a toy generation (8 images) in a worker thread takes 1.44 s; beside another live thread
that once ran a single op on both cores, even one that now sleeps, 2.35 s (1.63×), and setting that
thread back to one thread does not undo it (2.37 s); beside a thread that ran its op on one thread,
1.62 s (`python benchmarks/bench_threads.py --repeats 3`, `benchmarks/results/threads-toy-shapes-cpu.json`).
Gradio runs every request in a pool of worker threads that live on, so in the app every handler
that touched torch made every later generation slower. The served app therefore gives all cores to the one thread that runs the UNet for everyone
(`concepts.batching`) and one thread to each handler thread (the judge, figures, CAD's gradients).
"""

from __future__ import annotations

import os
import threading

import torch

CORES = max(1, torch.get_num_threads())
"""Torch's threads when this module was first imported (its default: the machine's cores)."""

_here = threading.local()


def one_thread_rule() -> bool:
    """Whether the served app keeps its own threads to one torch thread ($CONCEPT_LAB_ONE_TORCH_THREAD,
    on by default; `benchmarks/bench_solo.py` serves it both ways)."""
    return os.environ.get("CONCEPT_LAB_ONE_TORCH_THREAD", "1") not in ("0", "false", "off")


def use_threads(count: int) -> None:
    """Run the calling OS thread's torch ops on `count` threads. Done once per thread and count:
    every change also clears oneDNN's cache of compiled kernels."""
    if getattr(_here, "count", None) != count:
        torch.set_num_threads(count)
        _here.count = count


def threads_here() -> int | None:
    """The count `use_threads` set for the calling thread, or None if it never did."""
    return getattr(_here, "count", None)
