"""Eight users at once through the served app (gradio_client over HTTP): each gets exactly the
images it gets alone, and the shared model ends as its checkpoint, with no hook left behind.
Throughput and latency are the benchmark's business (`benchmarks/bench_load.py`), not asserted here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bench_load import run  # noqa: E402


def test_eight_concurrent_users_get_what_they_get_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cache"))
    result = run(users=8, rounds=1, steps=8)
    assert result["images_compared"] >= 20  # every panel's images: 3 generated, 3 × 3 steered, 2 edits' galleries
    assert result["mismatches"] == []
    assert result["weights_changed"] == [] and result["hooks_left"] == []
    assert result["mean_requests_in_flight"] > 1.5  # the users really overlapped
