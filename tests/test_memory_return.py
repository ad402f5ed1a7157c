"""Freed memory goes back to the system (`ui/memory.py`, issue 27): a handler thread that built
300 MB of small buffers and kept a few of them leaves the process far larger until malloc_trim
returns the free pages between them.
Measured in a fresh interpreter, so nothing else in the test session moves its RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRELUDE = """
import gc, json, sys, threading
sys.path.insert(0, sys.argv[1])
from ui import memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
"""
PROBE = """
pinned = []

def churn():
    made = [bytes(3000) for _ in range(100_000)]  # small blocks: they live in this thread's arena
    pinned.extend(made[::250])  # a few stay alive, spread over the heap, as a server's caches do:
    del made                    # the heap cannot shrink from its top, so only a trim returns the rest

start = rss_mb()
worker = threading.Thread(target=churn)
worker.start(); worker.join()
churned = rss_mb()
trimmed = memory.trim()
print(json.dumps({"start": start, "churned": churned, "trimmed": trimmed, "after": rss_mb(),
                  "started": memory.keep_memory_returned(interval_s=3600), "again": memory.keep_memory_returned()}))
"""


def run_probe(code: str) -> dict:
    """Run a probe after PRELUDE in a fresh interpreter and return the JSON it prints."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + code, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_trimming_returns_what_a_finished_handler_freed():
    got = run_probe(PROBE)
    if not got["trimmed"]:
        pytest.skip("not glibc: malloc_trim is unavailable and the app leaves memory to the C library")
    kept = got["churned"] - got["start"]
    assert kept > 20, got  # without trimming the freed buffers stay in the process
    assert got["after"] - got["start"] < 0.25 * kept, got
    assert got["started"] is True and got["again"] is False  # one trimming thread per process


CYCLES = """
class Node:
    pass

def build():
    for _ in range(30_000):  # 90 MB that only the garbage collector can free: each node refers to itself
        node = Node()
        node.me, node.data = node, bytes(3000)

gc.disable()
start = rss_mb()
build()
built = rss_mb()
memory.trim()
trimmed = rss_mb()
returned = memory.return_freed()
print(json.dumps({"start": start, "built": built, "trimmed": trimmed, "returned": returned, "after": rss_mb()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_return_freed_collects_cycles_before_trimming():
    """The benchmarks read RSS after `return_freed`: garbage in reference cycles is still counted after
    a trim alone, and is gone after it."""
    got = run_probe(CYCLES)
    if not got["returned"]:
        pytest.skip("not glibc: malloc_trim is unavailable")
    garbage = got["built"] - got["start"]
    assert garbage > 60, got
    assert got["trimmed"] - got["start"] > 0.75 * garbage, got  # a trim cannot free what is still referenced
    assert got["after"] - got["start"] < 0.25 * garbage, got
