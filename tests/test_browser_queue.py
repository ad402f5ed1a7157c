"""A student who presses Run while the long requests' places are taken sees their place in the queue
and an estimate, then their own request's denoising steps counting up; a generation, a lesson and
a teacher's opened link count their steps too (Gradio's status tracker on the outputs;
`ui.common.HEAVY` gives explore, steer, evolution and erase two places). Every request here runs
through the batcher's worker, which reports each step in its caller's context (`concepts.batching`).
Screenshots:
`test-artifacts/browser/queue-waiting.png`, `generate-steps.png`, `lesson-steps.png`."""

from __future__ import annotations

import re
import urllib.parse

from test_browser import ARTIFACTS, chromium, new_page, served_app, set_slider  # noqa: F401 (a fixture)
from test_cancellation import UNetCalls, toy_pipe

STEPS = 10


def test_a_waiting_student_sees_their_place_an_estimate_and_then_the_steps(served_app):  # noqa: F811
    calls = UNetCalls(toy_pipe().unet, sleep_s=0.2)  # an evolution of 10 steps now takes over 2 s
    try:
        with chromium() as browser:
            pages = [new_page(browser, height=1100, url=served_app) for _ in range(3)]
            for page in pages:
                page.get_by_role("tab", name="Evolution").click()
                set_slider(page, "evolve-steps", STEPS)
            first, second, waiting = pages
            first.locator("#follow").click()  # one evolution ends first: the queue has timed one, so it can estimate
            first.locator("#evolve-info").get_by_text("Decided").wait_for()
            first.locator("#follow").click()
            second.locator("#follow").click()
            for running in (first, second):  # both places are taken once both count their steps
                running.get_by_text(re.compile(rf"denoising step \d+ of {STEPS}")).first.wait_for(timeout=30_000)
            waiting.locator("#follow").click()
            # "queue: 1/1 | 0.3/7.7s": first of one waiting, 0.3 s waited of about 7.7 s
            waiting.get_by_text(re.compile(r"queue: 1/1 \| \d+\.\d/\d+\.\ds")).first.wait_for(timeout=10_000)
            waiting.screenshot(path=str(ARTIFACTS / "queue-waiting.png"))
            waiting.get_by_text(re.compile(rf"denoising step \d+ of {STEPS}")).first.wait_for(timeout=30_000)
            waiting.locator("#evolve-info").get_by_text("Decided").wait_for()
            assert waiting.locator("#evolve-info").inner_text().startswith(f"{STEPS} steps in")
    finally:
        calls.close()


def test_a_generation_counts_its_denoising_steps(served_app):  # noqa: F811
    calls = UNetCalls(toy_pipe().unet, sleep_s=0.1)
    try:
        with chromium() as browser:
            page = new_page(browser, height=1100, url=served_app)
            page.get_by_role("tab", name="Generate").click()
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text(re.compile(r"denoising step \d+ of 25")).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "generate-steps.png"))
            page.locator("#image img").first.wait_for(state="visible")  # and then the image
    finally:
        calls.close()


def test_a_lesson_counts_its_generations_denoising_steps(served_app):  # noqa: F811
    with chromium() as browser:
        page = new_page(browser, height=1100, url=served_app)
        page.locator("#lesson-seed input").fill("4242")  # a reading no test has kept yet
        page.locator("#lesson-seed input").press("Tab")
        page.locator("#lesson-run").click()
        page.get_by_text(re.compile(r"the lesson's generations: \d+ of \d+ denoising steps")).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "lesson-steps.png"))
        page.locator("#lesson-finding").get_by_text("seed 4242").wait_for()


def test_an_opened_link_counts_its_denoising_steps(served_app):  # noqa: F811
    calls = UNetCalls(toy_pipe().unet, sleep_s=0.1)
    try:
        with chromium() as browser:
            link = served_app + "?" + urllib.parse.urlencode({"tab": "generate", "prompt": "a blue star on the right", "seed": 8})
            page = new_page(browser, height=1100, url=link)
            page.get_by_text(re.compile(r"denoising step \d+ of 25")).first.wait_for(timeout=30_000)
            page.locator("#image img").first.wait_for(state="visible")
    finally:
        calls.close()
