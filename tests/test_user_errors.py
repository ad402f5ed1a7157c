"""A user's mistake is one line in the server log and one message on the page, never a traceback;
a real fault still gets its traceback (Gradio prints it)."""

from __future__ import annotations

import logging

import gradio as gr
import pytest
from gradio_client import Client

import app
import ui.generate


def test_a_user_error_is_a_message_and_one_log_line(caplog):
    caplog.set_level(logging.INFO, logger="concept_lab")
    with pytest.raises(gr.Error) as raised:
        ui.generate.generate_image("toy-shapes", "", 0, 2, 4.0)
    assert raised.value.message.startswith("prompt:") and raised.value.print_exception is False
    records = [r for r in caplog.records if r.name.startswith("concept_lab")]
    assert len(records) == 1 and records[0].getMessage().startswith("user error: prompt:") and records[0].exc_info is None


def test_the_served_app_prints_no_traceback_for_a_user_error(capfd):
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    try:
        client = Client(url, verbose=False)
        capfd.readouterr()  # start from a clean console
        with pytest.raises(Exception, match="prompt"):
            client.predict("toy-shapes", "", 2, 3, 7.5, api_name="/generate")
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err, err[-2000:]
    finally:
        app.demo.close()
