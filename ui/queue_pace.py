"""How often Gradio's queue looks for a request it can start: every 10 ms instead of every 1 ms.

Gradio's queue runs one loop on the server's event loop (`gradio.queueing.Queue.start_processing`)
that sleeps `sleep_when_free` seconds whenever it has nothing to start: when no request waits, and,
in a busy class, whenever every waiting request is held back by its panel's places. Gradio sets 1 ms
on Linux, so an idle server wakes a thousand times a second, and a busy one takes the interpreter
lock that often away from the threads doing the work. A request whose place frees then starts at
most this much later: 10 ms, against 0.3 s for the quickest toy image. `python
benchmarks/bench_queue_pace.py` measures the idle server's CPU and a class's throughput both ways
(docs/speed.md); `CONCEPT_LAB_QUEUE_POLL_MS` sets another pace.
"""

from __future__ import annotations

import logging

import gradio as gr

from concepts.settings import number_setting

log = logging.getLogger("concept_lab.queue")
POLL_MS = 10.0
"""The queue's sleep between looks for startable work (Gradio's own: 1 ms on Linux, 50 ms on Windows)."""


def poll_seconds() -> float:
    """$CONCEPT_LAB_QUEUE_POLL_MS in seconds (POLL_MS when unset); a value that is not a positive
    finite number of at most a second is refused with one log line, and POLL_MS is used."""
    ms = number_setting("CONCEPT_LAB_QUEUE_POLL_MS", POLL_MS, float, lambda ms: 0 < ms <= 1000,  # also refuses NaN
                        "a number of milliseconds in (0, 1000]", log)
    return ms / 1000


def paced(demo: gr.Blocks, seconds: float | None = None) -> gr.Blocks:
    """`demo` (after `demo.queue()`) with its queue's pace set; where this Gradio keeps its queue
    elsewhere, one log line says so and the app runs at Gradio's own pace."""
    queue = getattr(demo, "_queue", None)
    if queue is None or not isinstance(getattr(queue, "sleep_when_free", None), (int, float)):
        log.warning("this Gradio has no queue pace to set (Blocks._queue.sleep_when_free); the queue keeps its own")
        return demo
    queue.sleep_when_free = poll_seconds() if seconds is None else seconds
    return demo
