"""The student closes the tab while their image is being made: the server stops making it within
about a step (Gradio marks the request dead when the page's event stream closes; `ui.cancellation`)."""

from __future__ import annotations

from test_browser import chromium, new_page, served_app  # noqa: F401 (a fixture)
from test_cancellation import UNetCalls, toy_pipe


def test_closing_the_tab_stops_the_generation(served_app):  # noqa: F811
    calls = UNetCalls(toy_pipe().unet, sleep_s=0.2)  # 25 steps now take 5 s
    try:
        with chromium() as browser:
            page = new_page(browser, url=served_app)
            page.get_by_role("tab", name="Generate").click()
            page.get_by_role("button", name="Generate", exact=True).click()
            calls.wait_for(3)
            at_close, stopped_at = calls.after(page.close)  # 2 s: 10 more steps, had it gone on
        assert 3 <= at_close and stopped_at <= at_close + 3 and stopped_at < 25, (at_close, stopped_at)
    finally:
        calls.close()
