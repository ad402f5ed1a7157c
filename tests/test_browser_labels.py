"""A published world labelled by `python -m concepts label` shows its labels and top images in the
Steer tab of a real browser: the app runs as a user starts it (`python app.py`), on a registry whose
`sdxl-turbo-unbox` entry is the shipped one with tiny stand-in repos and a `labels` folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from standins import build_stand_ins, write_prompts
from test_browser import ARTIFACTS, chromium, new_page
from test_label import LABEL_ARGS, run_cli

ROOT = Path(__file__).resolve().parent.parent
WORLD = "sdxl-turbo-unbox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def labelled_app(hub_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled-app")
    registry = build_stand_ins(hub_cache, root, default=WORLD)
    out = root / "labels"
    code, report, err = run_cli("--registry", str(registry), "label", "--model", WORLD, "--prompts", str(write_prompts(root / "prompts.txt")),
                                "--out", str(out), *LABEL_ARGS)
    assert code == 0, err
    data = json.loads(registry.read_text())
    data["models"][WORLD].update(report["registry_entry"])
    registry.write_text(json.dumps(data))
    mid = json.loads((out / "concepts" / "mid_block.attentions.0" / "all" / "cond" / "concepts.json").read_text())
    port = free_port()
    env = {**os.environ, "CONCEPT_LAB_REGISTRY": str(registry), "GRADIO_SERVER_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"the app exited: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield url, mid
    server.terminate()
    server.wait(timeout=30)


def test_labels_and_top_images_of_a_labelled_published_world(labelled_app):
    url, mid = labelled_app
    label, ids = next(iter(mid["concepts"].items()))
    with chromium() as browser:
        page = new_page(browser, url=url)
        page.get_by_role("tab", name="Steer").click()
        page.locator("#concept-query textarea, #concept-query input").first.fill(label)
        page.locator("#concept-search").click()
        found = page.locator("#concepts-found [data-testid=cell-0-0]")
        found.wait_for()
        assert found.inner_text().strip() == label
        assert page.locator("#concepts-found [data-testid=cell-0-1]").inner_text().strip().startswith(str(ids[0]))
        page.locator("#steer-concept input").click()
        page.get_by_role("option", name=label).wait_for()  # the concept picker lists the world's labels
        page.keyboard.press("Escape")
        page.get_by_text("Top images: where a feature fires most").click()
        found.click()  # a search hit's first feature lands in the top images' field, set by the app
        page.wait_for_function("id => document.querySelector('#top-feature input').value === id", arg=str(ids[0]))
        page.locator("#show-top").click()
        page.locator("#top-images img").first.wait_for(state="visible")
        assert page.locator("#top-images img").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "labelled-published-world.png"), full_page=True)
