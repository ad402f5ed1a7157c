"""A real browser (Debian's chromium, driven by Playwright) uses the running app on toy-shapes:
generate, explore, steer, and see the steered image differ from the baseline; a bad concept shows a
message. Screenshots go to `test-artifacts/browser/` (kept by CI).

Without chromium the test is skipped, unless CONCEPT_LAB_REQUIRE_BROWSER=1 (as in CI), where a
missing browser is a failure.
"""

from __future__ import annotations

import io
import os
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"


def browser_or_skip():
    required = os.environ.get("CONCEPT_LAB_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    return sync_playwright


@pytest.fixture(scope="module")
def served_app():
    import app

    app.demo.queue(default_concurrency_limit=2)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    yield url
    app.demo.close()


@contextmanager
def chromium() -> Iterator:
    """Debian's chromium driven by Playwright, with the screenshot folder ready (every browser test's)."""
    sync_playwright = browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--headless", "--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, height: int = 1800, url: str | None = None):
    """A 1400-px-wide page with the tests' patience (a CPU generation can take a while under load)."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.set_default_timeout(90_000)
    if url:
        page.goto(url)
    return page


@pytest.fixture(scope="module")
def page(served_app):
    with chromium() as browser:
        yield new_page(browser, url=served_app)


def shown_image(page, elem_id: str) -> np.ndarray:
    """Wait for the image component to show a picture and download what the browser shows."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible")
    src = img.get_attribute("src")
    with urllib.request.urlopen(src) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"), dtype=float)


def set_slider(page, elem_id: str, value: int) -> None:
    """Type the value, then wait until the slider's track shows it and leave the box (which commits
    it), as a user does. Once in CI a Follow clicked at once ran with the old 25 steps."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f"#{elem_id} input[type=number]")
    track = page.locator(f"#{elem_id} input[type=range]")
    for _ in range(3):
        box.fill(str(value))
        box.press("Enter")
        try:
            page.wait_for_function("([el, v]) => el.value === v", arg=[track.element_handle(), str(value)], timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    box.press("Tab")
    assert track.input_value() == box.input_value() == str(value), f"slider {elem_id} did not take {value}"


def test_generate_then_steer_in_a_browser(page):
    page.get_by_role("tab", name="Generate").click()  # the page opens on the Lessons tab
    page.get_by_role("button", name="Generate", exact=True).click()
    assert shown_image(page, "image").shape == (64, 64, 3)
    page.screenshot(path=str(ARTIFACTS / "generate.png"), full_page=True)

    page.get_by_role("tab", name="Steer").click()
    set_slider(page, "steer-steps", 10)
    page.locator("#explore").click()
    assert shown_image(page, "explored").shape == (64, 64, 3)
    shown_image(page, "heatmap")
    first_feature = page.locator("#top-features [data-testid=cell-0-0]").inner_text().strip()
    assert first_feature.isdigit()
    second = page.locator("#top-features [data-testid=cell-1-0]")
    second.click()  # a row click shows that feature's heatmap
    page.wait_for_function(
        "want => document.querySelector('#heat-feature input').value === want", arg=second.inner_text().strip()
    )

    page.locator("#steer-features textarea").fill(first_feature)
    assert float(page.locator("#steer-strength input").input_value()) > 0  # the model's default β
    page.locator("#steer-branch").get_by_label("both").check()
    page.locator("#steer").click()
    page.locator("#steer-info").get_by_text("Steered").wait_for()
    baseline, steered = shown_image(page, "baseline"), shown_image(page, "steered")
    page.screenshot(path=str(ARTIFACTS / "steer.png"), full_page=True)
    assert baseline.shape == steered.shape == (64, 64, 3)
    assert np.abs(baseline - steered).mean() > 1.0, "the steered image looks like the baseline"


def test_unknown_concept_shows_a_message(page):
    page.get_by_role("tab", name="Steer").click()
    page.locator("#steer-features textarea").fill("")
    concept = page.locator("#steer-concept input")
    concept.fill("purple elephant")
    concept.press("Enter")
    page.locator("#steer").click()
    page.get_by_text("unknown concept").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "error.png"), full_page=True)


def test_a_pasted_novel_is_refused_with_a_message(page):
    page.get_by_role("tab", name="Generate").click()
    prompt = page.locator("#prompt textarea")
    prompt.fill("a red square " * 1600)  # 20,800 characters
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("characters long; the limit is").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "error-long-prompt.png"), full_page=True)
    prompt.fill("a red dog")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("does not know the word 'dog'").first.wait_for()  # a warning, and the image still comes
    assert shown_image(page, "image").shape == (64, 64, 3)


def test_evolution_tab_shows_previews_and_plots(page):
    page.get_by_role("tab", name="Evolution").click()
    set_slider(page, "evolve-steps", 8)
    page.locator("#follow").click()
    page.locator("#evolve-info").get_by_text("Decided").wait_for()
    assert page.locator("#evolve-info").inner_text().startswith("8 steps in"), page.locator("#evolve-info").inner_text()
    assert shown_image(page, "step-preview").shape == (256, 256, 3)
    page.wait_for_function("() => document.querySelectorAll('#previews img').length >= 8")
    assert page.locator("#previews img").count() == 8
    page.locator("#curves img, #curves svg, #curves canvas").first.wait_for(state="visible")
    page.locator("#decided img, #decided svg, #decided canvas").first.wait_for(state="visible")
    last = shown_image(page, "step-preview")
    set_slider(page, "evolve-step", 0)
    page.locator("#step-legend").get_by_text("Step 0").wait_for()
    assert np.abs(shown_image(page, "step-preview") - last).mean() > 1.0, "scrubbing did not change the preview"
    page.screenshot(path=str(ARTIFACTS / "evolution.png"), full_page=True)


def test_erase_tab_shows_before_after_and_a_chart(page, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.mktemp("browser-cad")))
    page.get_by_role("tab", name="Erase / amplify").click()
    page.locator("#edit-images input").fill("2")
    page.locator("#edit-run").click()
    page.locator("#edit-info").get_by_text("zeroed").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#edit-concept-gallery img').length >= 4")  # the gallery may render after the info
    assert page.locator("#edit-concept-gallery img").count() == 4
    page.locator("#edit-mass img, #edit-mass svg, #edit-mass canvas").first.wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "erase.png"), full_page=True)
    page.locator("#edit-keep textarea, #edit-keep input").first.fill("orange, yellow, green, blue, purple")
    page.locator("#edit-mode").get_by_text("fast: one trajectory per image").click()  # five identity attributions: fast keeps this check quick
    page.locator("#edit-protect").get_by_text("identity").click()
    page.locator("#edit-contrast").get_by_text("max").click()
    page.locator("#edit-run").click()
    page.locator("#edit-info").get_by_text("sparing what tells orange, yellow, green, blue, purple apart (the max of their identity scores)").wait_for()
    concept = page.locator("#edit-concept textarea, #edit-concept input").first
    concept.fill("")
    page.locator("#edit-run").click()
    page.get_by_text("concept: is empty").first.wait_for()


def test_erase_tab_erases_with_uce(page, tmp_path_factory, monkeypatch):
    """The method radio switches to UCE: CAD's settings hide and the action stays erase, the scenes
    slider follows (8 on the toy), the info says what was edited, and the chart shows where; back on
    CAD the settings return."""
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.mktemp("browser-uce")))
    page.get_by_role("tab", name="Erase / amplify").click()
    page.locator("#edit-concept textarea, #edit-concept input").first.fill("red")
    page.locator("#edit-keep textarea, #edit-keep input").first.fill("")
    page.locator("#edit-method").get_by_text("UCE: closed-form").click()  # the radio, not the info line naming both methods
    page.wait_for_function("() => document.querySelector('#edit-scenes input[type=number]').value === '8'")
    page.locator("#edit-ratio").wait_for(state="hidden")
    assert page.locator("#edit-action input[value=amplify]").is_disabled()
    page.locator("#edit-run").click()
    page.locator("#edit-info").get_by_text("with UCE").wait_for()
    info = page.locator("#edit-info").inner_text()
    assert "keeping orange, yellow, green, blue, purple" in info and "The judge sees red in 100% of the images before and 0% after" in info, info
    page.locator("#edit-mass img, #edit-mass svg, #edit-mass canvas").first.wait_for(state="visible")
    page.get_by_text("Edit size per block").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "erase-uce.png"), full_page=True)
    page.locator("#edit-method").get_by_text("CAD: zero the top-attributed").click()
    page.locator("#edit-ratio").wait_for(state="visible")
    page.get_by_text("Attribution mass per block").first.wait_for()
