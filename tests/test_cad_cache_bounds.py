"""The CAD score cache stays under its cap: the least recently used files go first, a file just read
counts as used, and the locks that guard the files are a fixed set however many keys there are."""

from __future__ import annotations

import os
import time

import torch

from concepts.edit import cache


def write(key: str) -> os.PathLike:
    path = cache.score_path({"model": "toy-shapes", "objective": "erase", "mode": "fast", "prompt": key})
    cache.save_scores(path, {"w": torch.zeros(64 * 1024)}, {"prompt": key})  # 256 KiB each
    return path


def test_the_least_recently_used_scores_are_evicted_first(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CONCEPT_LAB_CAD_CACHE_MB", "0.6")  # room for two files
    first = write("a red shape")
    time.sleep(0.05)
    second = write("a blue shape")
    time.sleep(0.05)
    assert cache.load_scores(first) is not None  # reading it makes it the most recently used
    time.sleep(0.05)
    third = write("a green shape")
    assert first.exists() and third.exists() and not second.exists()
    assert sum(p.stat().st_size for p in cache.cache_root().rglob("*.safetensors")) <= 0.6 * 1024 * 1024


def test_nothing_larger_than_the_cap_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CONCEPT_LAB_CAD_CACHE_MB", "0.1")
    old = write("a red shape")
    new = write("a blue shape")
    assert not old.exists() and not new.exists()  # the request that wrote it already holds its scores in memory


def test_the_locks_are_a_fixed_set():
    paths = [cache.score_path({"model": "m", "objective": "erase", "mode": "fast", "prompt": str(i)}) for i in range(1000)]
    locks = {id(cache.lock_for(p)) for p in paths}
    assert len(locks) <= cache.LOCK_STRIPES
    assert cache.lock_for(paths[0]) is cache.lock_for(paths[0])
