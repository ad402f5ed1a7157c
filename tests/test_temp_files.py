"""The files the app writes for users are bounded: each session's go when its page closes, and any
left behind (an API client never closes a page) once they are older than the sweep's age."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ui import temp_files


@pytest.fixture(autouse=True)
def own_root(tmp_path, monkeypatch):
    monkeypatch.setattr(temp_files, "ROOT", tmp_path / "files")


def test_a_closed_page_takes_its_files_and_no_one_elses():
    alice, bob = SimpleNamespace(session_hash="alice"), SimpleNamespace(session_hash="bob")
    mine, theirs = temp_files.fresh_folder("evolution-", alice), temp_files.fresh_folder("evolution-", bob)
    (mine / "evolution.gif").write_bytes(b"GIF89a")
    temp_files.release(alice)
    assert not mine.exists() and theirs.exists()


def test_old_folders_are_swept_when_a_new_one_is_made():
    old = temp_files.fresh_folder("experiment-", None)
    past = time.time() - temp_files.MAX_AGE_S - 60
    os.utime(old, (past, past))
    new = temp_files.fresh_folder("experiment-", None)
    assert not old.exists() and new.exists()


def test_a_hostile_session_id_stays_inside_the_root():
    folder = temp_files.fresh_folder("x-", SimpleNamespace(session_hash="../../etc"))
    assert temp_files.ROOT in folder.parents


def test_an_evolution_writes_its_downloads_under_the_root():
    import ui.evolution

    out = ui.evolution.follow_evolution("toy-shapes", "a red circle", 1, 4, 4.0, "mid_block.attentions.0", None,
                                        request=SimpleNamespace(session_hash="class-1"))
    files = out[11]
    assert files and all(temp_files.ROOT / "class-1" in Path(f).parents for f in files)
    temp_files.release(SimpleNamespace(session_hash="class-1"))
    assert not any(Path(f).exists() for f in files)


def test_a_folder_is_made_even_when_another_requests_sweep_removes_the_session_folder(monkeypatch):
    """Two requests of one class: the other's sweep removes this session's empty folder between its
    mkdir and mkdtemp (seen once in a class of 30). The folder is made again, not a traceback."""
    real_mkdtemp = temp_files.tempfile.mkdtemp
    raced = []

    def mkdtemp_after_a_sweep(prefix, dir):
        if not raced:
            raced.append(dir)
            Path(dir).rmdir()  # what sweep() does to an empty session folder
        return real_mkdtemp(prefix=prefix, dir=dir)

    monkeypatch.setattr(temp_files.tempfile, "mkdtemp", mkdtemp_after_a_sweep)
    folder = temp_files.fresh_folder("evolution-", SimpleNamespace(session_hash="carol"))
    assert raced and folder.is_dir() and folder.parent.name == "carol"
