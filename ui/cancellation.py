"""Stop the work of a request whose student has gone. Gradio drops a closed page's queued requests
itself; a running one is marked no longer alive when the page's event stream closes, and taken off
the running set when a client calls /cancel; a page's unload marks its whole session closed.
`still_wanted()` binds a check of all three to the request, and `common.user_errors` runs every
handler under it (`concepts.progress.cancellable`), so the model stops at the next denoising step or
progress report instead of finishing an image nobody will see."""

from __future__ import annotations

import threading
import time
from typing import Callable

import gradio as gr
from gradio.context import LocalContext

CLOSED_KEEP_S = 3600
"""A closed session is remembered this long (its running requests finish or stop well before)."""
_closed: dict[str, float] = {}
_lock = threading.Lock()


def session_closed(request: gr.Request | None = None) -> None:
    """The page's unload: every request of its session still running is no longer wanted."""
    session = getattr(request, "session_hash", None)
    if not session:
        return
    now = time.monotonic()
    with _lock:
        _closed[session] = now
        for old in [s for s, at in _closed.items() if now - at > CLOSED_KEEP_S]:
            del _closed[old]


def _queued_event(blocks, event_id: str | None):
    """The running event in Gradio's queue (None when absent: not queued, finished or cancelled)."""
    for jobs in getattr(getattr(blocks, "_queue", None), "active_jobs", None) or ():
        for event in jobs or ():
            if getattr(event, "_id", None) == event_id:
                return event
    return None


def still_wanted() -> Callable[[], bool]:
    """The check for the request this thread serves, bound now (the batcher's worker thread calls it
    later, outside the request's context): True outside a queued Gradio event."""
    try:
        request = LocalContext.request.get(None)
        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    except Exception:  # Gradio's internals moved: never stop a request by mistake
        return lambda: True
    session = getattr(request, "session_hash", None)
    queued = event_id is not None and _queued_event(blocks, event_id) is not None
    # A queued event that leaves the running set before its handler returns was cancelled (/cancel
    # removes it); one marked not alive lost its page's stream. Unqueued calls only follow unload.

    def check() -> bool:
        try:
            if session in _closed:
                return False
            if not queued:
                return True
            event = _queued_event(blocks, event_id)
            return event is not None and bool(getattr(event, "alive", True))
        except Exception:
            return True

    return check
