"""A request whose student has gone stops at the next denoising step (issue 27): in the core, in the
batcher, in a handler that holds steering hooks, and in the served app when a client cancels."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import ui.cancellation
import ui.generate
import ui.steer
from concepts.batching import GenerationBatcher
from concepts.errors import RequestCancelled
from concepts.hooks import any_active
from concepts.progress import cancellable
from concepts.sampling import GenerationRequest, generate
from ui.common import DEVICE, REGISTRY, SHARED_PIPELINES

MODEL, MID = "toy-shapes", "mid_block.attentions.0"
PROMPT = "a large red solid circle at the center on a black background"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cache"))


def toy_pipe():
    return SHARED_PIPELINES.get(REGISTRY.get(MODEL), DEVICE)


class UNetCalls:
    """Counts (and optionally slows) the toy UNet's forward calls, and removes its hook afterwards."""

    def __init__(self, unet: torch.nn.Module, sleep_s: float = 0.0) -> None:
        self.count, self.sleep_s = 0, sleep_s
        self._handle = unet.register_forward_pre_hook(self._called)

    def _called(self, *_):
        self.count += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)

    def close(self) -> None:
        self._handle.remove()

    def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def after(self, stop, settle_s: float = 2.0) -> tuple[int, int]:
        """Call `stop`; returns the call count then and `settle_s` later (many steps' worth, had the
        work gone on), and checks that no call comes in the second after that."""
        stop()
        at_stop = self.count
        time.sleep(settle_s)
        stopped_at = self.count
        time.sleep(1.0)
        assert self.count == stopped_at, "the UNet is still being called after the stop"
        return at_stop, stopped_at


def test_a_generation_stops_at_the_step_where_it_stops_being_wanted():
    seen: list[int] = []
    with pytest.raises(RequestCancelled), cancellable(lambda: len(seen) < 3):
        generate(toy_pipe(), GenerationRequest(prompt=PROMPT, steps=25, guidance=4.0), on_step=lambda s: seen.append(s.index))
    assert seen == [0, 1, 2]


def test_outside_a_request_nothing_is_ever_cancelled():
    result = generate(toy_pipe(), GenerationRequest(prompt=PROMPT, steps=3, guidance=4.0))
    assert result.pixels.shape[0] == 1


def test_the_batcher_drops_a_waiting_request_whose_page_closed_and_serves_the_others():
    batcher, pipe = GenerationBatcher(wait_s=0.3), toy_pipe()
    results: dict[str, object] = {}

    def ask(name: str, wanted: bool) -> None:
        try:
            with cancellable(lambda: wanted):
                results[name] = batcher.generate(pipe, GenerationRequest(prompt=PROMPT, steps=4, guidance=4.0, seed=1))
        except RequestCancelled as exc:
            results[name] = exc

    threads = [threading.Thread(target=ask, args=(name, wanted)) for name, wanted in (("gone", False), ("here", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(results["gone"], RequestCancelled)
    alone = generate(pipe, GenerationRequest(prompt=PROMPT, steps=4, guidance=4.0, seed=1))
    assert np.abs(results["here"].pixels.numpy() - alone.pixels.numpy()).max() <= 1 / 255


def test_a_cancelled_steering_leaves_no_hook_and_the_next_steering_is_unchanged(monkeypatch):
    args = (MODEL, PROMPT, 0, 10, 4.0, MID, "middle", "dotted", "", "global", None, 8.0, "cond")
    before = ui.steer.steer_image(*args)
    calls = UNetCalls(toy_pipe().unet)
    monkeypatch.setattr(ui.cancellation, "still_wanted", lambda: (lambda: calls.count < 3))  # stop at its third UNet call
    try:
        with pytest.raises(Exception, match="cancelled"):
            ui.steer.steer_image(*args)
    finally:
        calls.close()
    assert calls.count == 3 and not any_active()
    monkeypatch.undo()
    again = ui.steer.steer_image(*args)
    assert np.array_equal(np.asarray(before[1]), np.asarray(again[1]))


def test_a_served_generation_stops_soon_after_its_client_cancels():
    """A slowed UNet (0.1 s a call) makes a 60-step generation take 6 s; the client cancels after a
    few steps and the server's UNet stops within about a step, and still serves the next request."""
    import app
    from gradio_client import Client

    calls = UNetCalls(toy_pipe().unet, sleep_s=0.1)
    app.demo.queue(default_concurrency_limit=2)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    try:
        client = Client(url, verbose=False)
        job = client.submit(MODEL, PROMPT, 0, 60, 4.0, api_name="/generate")
        calls.wait_for(5)
        at_cancel, stopped_at = calls.after(job.cancel)  # 2 s: 20 more steps, had it gone on
        assert stopped_at <= at_cancel + 3, (at_cancel, stopped_at)
        calls.close()
        image_path, info = client.predict(MODEL, PROMPT, 0, 3, 4.0, api_name="/generate")
        assert "seed 0" in info
    finally:
        calls.close()
        app.demo.close()
    assert not toy_pipe().unet._forward_pre_hooks
