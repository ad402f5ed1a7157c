"""The app's queue pace (ui/queue_pace.py): set on Gradio's queue, kept through launch, requests still
served through the queue; a bad $CONCEPT_LAB_QUEUE_POLL_MS is refused with one log line."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from ui.queue_pace import POLL_MS, paced, poll_seconds


def test_the_pace_is_set_kept_through_launch_and_requests_are_still_served():
    with gr.Blocks() as demo:
        number = gr.Number()
        doubled = gr.Number()
        number.submit(lambda x: 2 * x, number, doubled, api_name="double")
    demo.queue(default_concurrency_limit=2)
    assert paced(demo) is demo
    assert demo._queue.sleep_when_free == POLL_MS / 1000, "this Gradio's queue has no pace to set: ui/queue_pace.py needs a look"
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        assert demo._queue.sleep_when_free == POLL_MS / 1000, "launch replaced the queue's pace"
        from gradio_client import Client

        client = Client(demo.local_url, verbose=False)
        assert [client.predict(x, api_name="/double") for x in (3, 4, 5)] == [6, 8, 10]
    finally:
        demo.close()


@pytest.mark.parametrize("raw", ["abc", "nan", "0", "-5", "5000", "inf"])
def test_a_bad_pace_is_refused_with_one_log_line(raw, monkeypatch, caplog):
    monkeypatch.setenv("CONCEPT_LAB_QUEUE_POLL_MS", raw)
    with caplog.at_level(logging.WARNING, logger="concept_lab.queue"):
        assert poll_seconds() == POLL_MS / 1000
    assert len(caplog.records) == 1 and "CONCEPT_LAB_QUEUE_POLL_MS" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None


def test_a_good_pace_is_taken(monkeypatch, caplog):
    monkeypatch.setenv("CONCEPT_LAB_QUEUE_POLL_MS", "25")
    with caplog.at_level(logging.WARNING, logger="concept_lab.queue"):
        assert poll_seconds() == 0.025
    assert not caplog.records


def test_a_blocks_without_a_queue_pace_is_left_alone(caplog):
    class Elsewhere:  # a Gradio that keeps its queue under another name
        pass

    with caplog.at_level(logging.WARNING, logger="concept_lab.queue"):
        elsewhere = Elsewhere()
        assert paced(elsewhere) is elsewhere
    assert len(caplog.records) == 1
