"""$CONCEPT_LAB_UNET_LOG (summed by the classroom benchmark): one line per UNet call, alone and shared,
with its images and the CPU it cost the calling thread; nothing is written without it."""

from __future__ import annotations

import json

import pytest
import torch

from concepts.batching import GenerationBatcher
from concepts.generation import SHARED_PIPELINES
from concepts.registry import load_registry
from concepts.sampling import GenerationRequest, generate
from concepts.torch_threads import use_threads
from test_batching import PROMPTS, request, together


@pytest.fixture(scope="module")
def toy():
    world = load_registry().get("toy-shapes")
    return world, SHARED_PIPELINES.get(world, "cpu")


@pytest.fixture
def one_thread():
    """Torch on one thread, as in each request's thread: the calling thread's CPU is the whole call's."""
    before = torch.get_num_threads()
    use_threads(1)
    yield
    use_threads(before)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_call_alone_is_logged_with_its_images_and_cpu(toy, tmp_path, monkeypatch, one_thread):
    world, pipe = toy
    log = tmp_path / "unet.jsonl"
    d = world.defaults
    two = GenerationRequest(["a red circle", "a blue square"], seed=3, steps=10, guidance=d.guidance, height=d.height, width=d.width)
    generate(pipe, two)
    assert not log.exists()
    monkeypatch.setenv("CONCEPT_LAB_UNET_LOG", str(log))
    generate(pipe, two)
    calls = lines(log)
    assert [c["images"] for c in calls] == [2] * 10, "not one line of 2 images per step"
    assert all(c["threads"] == 1 for c in calls)
    assert all(0 < c["cpu_ms"] <= c["wall_ms"] + 1.0 for c in calls), "a call's CPU is not the calling thread's"
    assert sum(c["cpu_ms"] for c in calls) > 0.5 * sum(c["wall_ms"] for c in calls), "the UNet's own work was not counted"


def test_shared_calls_are_logged_once_with_every_request_s_images(toy, tmp_path, monkeypatch):
    world, pipe = toy
    log = tmp_path / "unet.jsonl"
    monkeypatch.setenv("CONCEPT_LAB_UNET_LOG", str(log))
    batcher = GenerationBatcher(wait_s=0.2)
    together(batcher, pipe, [request(world, p, seed=i) for i, p in enumerate(PROMPTS[:3])])
    calls = lines(log)
    assert len(calls) == batcher.calls
    assert sum(c["images"] for c in calls) == 3 * 10, "each of 3 images was not counted at each of its 10 steps"
    assert max(c["images"] for c in calls) > 1, "no call was shared"
