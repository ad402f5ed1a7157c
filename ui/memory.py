"""Give freed memory back to the system, so a Space's RSS follows its live data, not its peak.

glibc's malloc keeps the pages a thread frees in that thread's arena (up to 8 per core), and a
server whose handlers run on many threads (Gradio's worker pool, the batcher) leaves most of its
freed image and activation buffers there: the process grows though nothing is leaked. Two settings
fix that: at most two arenas (`mallopt(M_ARENA_MAX)`), and a `malloc_trim(0)` every 10 s that
returns free pages (a few ms each: `benchmarks/bench_trim.py`). bench_classroom.py measures RSS
with and without (docs/speed.md). A no-op where the C library is not glibc;
`CONCEPT_LAB_MALLOC_TRIM=0` turns it off.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time

log = logging.getLogger("concept_lab.memory")
M_ARENA_MAX = -8
INTERVAL_S = 10.0
"""Seconds between trims. Until a trim, the pages freed since the last one still count in RSS: a
busy class's readings then sit above what the server holds (docs/speed.md, the soaks)."""
_started = threading.Event()


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def enabled() -> bool:
    return os.environ.get("CONCEPT_LAB_MALLOC_TRIM", "1") not in ("0", "false", "off")


def trim() -> bool:
    """Return the heap's free pages to the system now; True where that was possible."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0) >= 0)


def return_freed() -> bool:
    """Collect garbage, then trim: RSS read just after counts only memory something still holds
    (how the memory benchmarks read it). True where the trim was possible."""
    gc.collect()
    return trim()


def keep_memory_returned(arenas: int = 2, interval_s: float = INTERVAL_S) -> bool:
    """Cap malloc's arenas and start the trimming thread (once per process); True when started."""
    libc = _libc()
    if libc is None or not enabled() or _started.is_set():
        return False
    _started.set()
    libc.mallopt(M_ARENA_MAX, arenas)

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            libc.malloc_trim(0)

    threading.Thread(target=loop, name="concept-lab-malloc-trim", daemon=True).start()
    return True
