"""The app: its handler makes images and turns bad input into messages; the served app answers a client."""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
import ui.generate


def test_generate_handler_returns_image_and_description():
    image, info = ui.generate.generate_image("toy-shapes", "a red circle", 3, 4, 7.5)
    assert isinstance(image, Image.Image) and image.size == (64, 64)
    assert "seed 3" in info and "4 DDIM steps" in info
    again, _ = ui.generate.generate_image("toy-shapes", "a red circle", 3, 4, 7.5)
    assert np.array_equal(np.asarray(image), np.asarray(again))


@pytest.mark.parametrize(
    "args,field",
    [
        (("toy-shapes", "", 0, 4, 7.5), "prompt"),
        (("toy-shapes", "a" * 20000, 0, 4, 7.5), "prompt"),
        (("toy-shapes", "a", None, 4, 7.5), "seed"),
        (("toy-shapes", "a", math.nan, 4, 7.5), "seed"),
        (("toy-shapes", "a", 1.5, 4, 7.5), "seed"),
        (("toy-shapes", "a", 0, 0, 7.5), "steps"),
        (("toy-shapes", "a", 0, 4, math.inf), "guidance"),
        (("no-such-model", "a", 0, 4, 7.5), "no-such-model"),
    ],
)
def test_bad_input_is_a_message_naming_the_field(args, field):
    with pytest.raises(gr.Error) as info:
        ui.generate.generate_image(*args)
    assert field in str(info.value.message)


def test_offline_hub_model_is_a_message():
    with pytest.raises(gr.Error, match="CompVis/stable-diffusion-v1-4"):
        ui.generate.generate_image("sd14", "a dog", 0, 1, 7.5)


def test_served_app_answers_a_client():
    from gradio_client import Client

    app.demo.queue(default_concurrency_limit=2)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    try:
        client = Client(url, verbose=False)
        image_path, info = client.predict("toy-shapes", "a blue square", 2, 3, 7.5, api_name="/generate")
        served = Image.open(image_path).convert("RGB")
        direct, _ = ui.generate.generate_image("toy-shapes", "a blue square", 2, 3, 7.5)
        assert served.size == (64, 64)
        assert np.array_equal(np.asarray(served), np.asarray(direct))
        assert "seed 2" in info
        with pytest.raises(Exception, match="prompt"):
            client.predict("toy-shapes", "", 2, 3, 7.5, api_name="/generate")
    finally:
        app.demo.close()


def test_on_zerogpu_every_handler_that_runs_the_model_asks_for_the_gpu():
    """With the `spaces` package present (a ZeroGPU Space), the handlers that sample are wrapped in
    spaces.GPU; a fresh interpreter imports the app with a stand-in package that records them."""
    import subprocess
    import sys

    code = (
        "import sys, types\n"
        "spaces = types.ModuleType('spaces'); wrapped = []\n"
        "spaces.GPU = lambda fn: (wrapped.append(fn.__name__), fn)[1]\n"
        "sys.modules['spaces'] = spaces\n"
        "import app\n"
        "print(' '.join(sorted(wrapped)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(Path(app.__file__).parent))
    assert done.returncode == 0, done.stderr[-2000:]
    wrapped = set(done.stdout.split())
    assert {"generate_image", "explore_image", "steer_image", "icon_gallery", "follow_evolution", "edit_concept"} <= wrapped
