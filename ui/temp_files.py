"""Files the app writes for a user (evolution GIFs and strips, experiment zips): one folder per
session, deleted when the session ends (`release`, on the page's unload) and in any case once older
than MAX_AGE_S (a sweep on every new folder: API clients never unload). Gradio copies what a handler
returns into its own cache, which `app.py` bounds with `delete_cache`."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

ROOT = Path(tempfile.gettempdir()) / "concept-lab-files"
MAX_AGE_S = 900
"""Fifteen minutes: far longer than Gradio needs to copy a returned file."""


def _session(request: gr.Request | None) -> str:
    hash_ = getattr(request, "session_hash", None) or "shared"
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(hash_))[:64]


def sweep(max_age_s: float = MAX_AGE_S, now: float | None = None) -> int:
    """Delete every folder older than `max_age_s`; returns how many went."""
    now = time.time() if now is None else now
    gone = 0
    for session in ROOT.glob("*") if ROOT.is_dir() else ():
        for folder in session.glob("*"):
            try:
                if now - folder.stat().st_mtime > max_age_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    gone += 1
            except OSError:
                continue
        try:
            session.rmdir()  # only when empty
        except OSError:
            pass
    return gone


def fresh_folder(prefix: str, request: gr.Request | None = None, tries: int = 5) -> Path:
    """A new folder for one result of this session (old folders of every session are swept first).

    Another request's sweep removes empty session folders, and may do so between this one's mkdir and
    mkdtemp (a class of 30 hit it once in 210 requests): the folder is then made again."""
    sweep()
    parent = ROOT / _session(request)
    for _ in range(tries):
        parent.mkdir(parents=True, exist_ok=True)
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except FileNotFoundError:
            continue
    raise OSError(f"could not make a folder under {parent}: it kept being removed")


def release(request: gr.Request | None = None) -> None:
    """The session ended (its page closed): delete its files now."""
    if request is not None and getattr(request, "session_hash", None):
        shutil.rmtree(ROOT / _session(request), ignore_errors=True)
