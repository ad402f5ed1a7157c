"""The CPU time each UNet call costs, for the benchmarks that ask how much of a class batching can save.

Batching can only make the UNet's calls cheaper: decoding, SAE codes, the judge, figures and the web
server cost what they cost either way. So what a class's server spends inside the UNet bounds what
batching can gain (`benchmarks/bench_classroom.py` sums this log in both modes). With
$CONCEPT_LAB_UNET_LOG set to a file, every UNet call appends one JSON line: when it ended, its CPU
time on the calling thread, its wall time, its images (rows before CFG's doubling) and torch's thread
count. The CPU time is the calling thread's own (`time.thread_time`), so it is the whole call's only
when torch runs on one thread, as it does in each request's thread and in a busy class's workers
(`concepts.torch_threads`); `threads` says when it did not. Unset, the clock costs nothing.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Iterator

import torch

LOG_VARIABLE = "CONCEPT_LAB_UNET_LOG"


@contextmanager
def clocked_unet(images: int) -> Iterator[None]:
    """Around one UNet call of `images` images: appends its line to $CONCEPT_LAB_UNET_LOG when set.
    A log that cannot be written is skipped: it must not fail the users' step."""
    path = os.environ.get(LOG_VARIABLE)
    if not path:
        yield
        return
    cpu, wall = time.thread_time(), time.perf_counter()
    yield
    line = {"end": round(time.time(), 4), "cpu_ms": round(1000 * (time.thread_time() - cpu), 3),
            "wall_ms": round(1000 * (time.perf_counter() - wall), 3), "images": images, "threads": torch.get_num_threads()}
    try:
        with open(path, "a") as log:
            log.write(json.dumps(line) + "\n")
    except OSError:
        pass
