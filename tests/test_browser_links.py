"""Share links in a real browser: a Steer link opens the tab, restores every setting and steers; its
"Copy link" gives a link that, opened in a fresh page, gives the same steered image; a hostile link
shows a message and runs nothing."""

from __future__ import annotations

import time
import urllib.parse

import numpy as np
import pytest
from test_browser import ARTIFACTS, chromium, new_page, served_app, shown_image  # noqa: F401 (a fixture)

PROMPT = "a large red solid square at the top left on a white background"


@pytest.fixture(scope="module")
def browser(served_app):  # noqa: F811
    with chromium() as launched:
        yield launched


def fresh_page(browser):
    return new_page(browser, height=1000)


def test_a_steer_link_restores_runs_and_copies_to_the_same_image(browser, served_app):  # noqa: F811
    mask = np.zeros((32, 32), np.uint8)
    mask[20:30, 20:30] = 1  # bottom right
    query = {"tab": "steer", "model": "toy-shapes", "prompt": PROMPT, "seed": 3, "steps": 10, "window": "early", "features": "63",
             "where": "painted mask", "mask": np.packbits(mask.ravel()).tobytes().hex(), "strength": 8, "branch": "cond"}
    page = fresh_page(browser)
    page.goto(served_app + "?" + urllib.parse.urlencode(query))
    page.locator("#steer-info").get_by_text("Steered features [63]").wait_for()
    info = page.locator("#steer-info").inner_text()
    assert "painted mask" in info and "β 8" in info and "early" in info, info
    steered = shown_image(page, "steered")
    assert page.locator("#steer-prompt textarea, #steer-prompt input").first.input_value() == PROMPT
    page.locator("#steer-copy-link").click()
    box = page.locator("#steer-link textarea, #steer-link input").first
    page.wait_for_function("el => el.value.startsWith('http')", arg=box.element_handle())
    link = box.input_value()
    page.screenshot(path=str(ARTIFACTS / "share-link.png"), full_page=True)
    page.close()
    again = fresh_page(browser)
    again.goto(link)
    again.locator("#steer-info").get_by_text("Steered features [63]").wait_for()
    assert np.array_equal(shown_image(again, "steered"), steered), "the copied link gave another image"
    again.close()


def test_a_hostile_link_shows_a_message_and_runs_nothing(browser, served_app):  # noqa: F811
    page = fresh_page(browser)
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "steer", "prompt": "<script>alert(1)</script>", "seed": "1e400", "mask": "zz"}))
    page.get_by_text("This link cannot be opened: seed").first.wait_for()
    page.wait_for_timeout(1500)
    assert page.locator("#steer-info").inner_text().strip() == ""  # nothing was steered
    page.goto(served_app + "?tab=../../etc&model=x")
    page.get_by_text("This link cannot be opened: tab").first.wait_for()
    page.close()


def test_generate_and_evolution_links_run_their_panels(browser, served_app):  # noqa: F811
    page = fresh_page(browser)
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "generate", "prompt": "a yellow triangle on the left", "seed": 5}))
    page.locator("#info").get_by_text("seed 5").wait_for()
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "evolution", "prompt": "a yellow triangle on the left", "seed": 2, "steps": 8}))
    page.locator("#evolve-info").get_by_text("Decided").wait_for()
    assert page.locator("#evolve-info").inner_text().startswith("8 steps in")
    page.close()


def test_an_evolution_opened_from_a_link_files_its_downloads_in_the_students_session_and_they_go_with_the_page(
        browser, served_app, tmp_path, monkeypatch):  # noqa: F811
    from ui import temp_files

    monkeypatch.setattr(temp_files, "ROOT", tmp_path / "files")  # this test's page is the only one writing here
    page = fresh_page(browser)
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "evolution", "prompt": "a red circle", "seed": 4, "steps": 4}))
    page.locator("#evolve-info").get_by_text("Decided").wait_for()
    sessions = [s.name for s in temp_files.ROOT.iterdir()]
    assert len(sessions) == 1 and sessions[0] != "shared", sessions  # the student's own folder, not the shared one
    assert list((temp_files.ROOT / sessions[0]).glob("evolution-*/evolution.gif"))
    page.close()  # the page's unload takes its files
    for _ in range(120):
        if not (temp_files.ROOT / sessions[0]).exists():
            break
        time.sleep(0.5)
    assert not (temp_files.ROOT / sessions[0]).exists()


def test_an_erase_link_runs_the_erase(browser, served_app, tmp_path_factory, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.mktemp("link-cad")))
    page = fresh_page(browser)
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "erase", "concept": "yellow", "mode": "fast", "images": 2, "keep": ""}))
    page.locator("#edit-info").get_by_text("Erased yellow").wait_for()
    assert page.locator("#erase-copy-link").is_visible()  # the link row sits in the Erase tab
    page.close()
