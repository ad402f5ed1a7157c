"""The Lessons tab in a real browser, as a class meets it: the page opens on it; every lesson's Run
draws a chart, a table and a "try it yourself" link, with no name badge over a picture; the link of
lesson 3 opens the Steer tab set up and steered; a lesson's share link runs it; a hostile one is
refused with a message."""

from __future__ import annotations

import urllib.parse

import pytest
from test_browser import ARTIFACTS, chromium, new_page, served_app  # noqa: F401 (a fixture)
from test_browser_layout import check_layout

from concepts.lessons import LESSONS


@pytest.fixture(scope="module")
def browser(served_app):  # noqa: F811
    with chromium() as launched:
        yield launched


def test_every_lesson_runs_and_its_try_it_link_opens_the_panel(browser, served_app):  # noqa: F811
    page = new_page(browser, height=1000, url=served_app)
    page.locator("#lesson-run").wait_for(state="visible")  # the first tab a visitor sees
    choices = page.locator("#lesson-choice label")
    assert choices.count() == len(LESSONS)
    try_links = {}
    for i, (name, lesson) in enumerate(LESSONS.items()):
        choices.nth(i).click()
        page.locator("#lesson-story").get_by_text(lesson.title).wait_for()
        page.locator("#lesson-run").click()
        page.locator("#lesson-finding").get_by_text("What the judge measured").wait_for()
        page.locator("#lesson-chart img, #lesson-chart svg, #lesson-chart canvas").first.wait_for(state="visible")
        page.locator("#lesson-table [data-testid=cell-1-0]").wait_for()  # every count behind the chart (two rows at least)
        assert page.locator("#lesson-examples img").count() >= 1, name
        try_links[name] = page.locator("#lesson-try-it a").get_attribute("href")
        check_layout(page, f"lesson-{i + 1}")
    page.close()
    steer = new_page(browser, height=1000, url=urllib.parse.urljoin(served_app, try_links["moving-objects"]))
    steer.locator("#steer-info").get_by_text("Steered features").wait_for()
    assert "early" in steer.locator("#steer-info").inner_text()
    steer.close()


def test_a_lesson_link_runs_the_lesson_and_a_hostile_one_is_refused(browser, served_app):  # noqa: F811
    page = new_page(browser, height=1000, url=served_app + "?" + urllib.parse.urlencode({"tab": "lessons", "lesson": "concept-maps", "seed": 3}))
    page.locator("#lesson-finding").get_by_text("seed 3").wait_for()
    page.goto(served_app + "?" + urllib.parse.urlencode({"tab": "lessons", "lesson": "<img src=x onerror=alert(1)>", "seed": 3}))
    page.get_by_text("This link cannot be opened: lesson").first.wait_for()
    page.wait_for_timeout(1500)
    assert page.locator("#lesson-finding").inner_text().strip() == ""  # nothing ran
    page.close()
