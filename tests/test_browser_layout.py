"""What a class sees at 1400 × 1000: after each tab's main action, no component's name badge covers
its picture or plot, every table column is in view, no gallery hides pictures below its fold, a
feature chosen in the table is the one steered, and a model that cannot load here says so beside the
menu while the tabs stay on the toy.
Screenshots go to `test-artifacts/browser/layout-*.png`."""

from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, chromium, new_page, served_app  # noqa: F401 (a fixture)

BADGE_OVERLAPS = """
() => {
  const hits = [];
  for (const badge of document.querySelectorAll('label[data-testid="block-label"]')) {
    const b = badge.getBoundingClientRect();
    if (!b.width || !b.height) continue;
    const block = badge.closest('.block');
    if (!block) continue;
    for (const shown of block.querySelectorAll('img, canvas, svg.main-svg, .js-plotly-plot')) {
      const s = shown.getBoundingClientRect();
      if (s.width < 40 || s.height < 40 || badge.contains(shown)) continue;  // icons are not pictures
      const overlap = Math.min(b.right, s.right) - Math.max(b.left, s.left) > 1 && Math.min(b.bottom, s.bottom) - Math.max(b.top, s.top) > 1;
      if (overlap) hits.push((block.id || block.className) + ': ' + badge.innerText.trim());
    }
  }
  return hits;
}
"""

COLUMNS_OUT_OF_VIEW = """
() => {
  const cut = [];
  for (const table of document.querySelectorAll('.block table')) {
    const box = table.closest('.block').getBoundingClientRect();
    if (!box.width) continue;
    for (const th of table.querySelectorAll('thead th')) {
      const r = th.getBoundingClientRect();
      if (r.width && (r.right > box.right + 1 || r.left < box.left - 1)) cut.push((table.closest('.block').id || '?') + ': ' + th.innerText.trim());
    }
  }
  return cut;
}
"""


@pytest.fixture(scope="module")
def page(served_app):  # noqa: F811
    with chromium() as browser:
        yield new_page(browser, height=1000, url=served_app)


GALLERIES_CUT = """
() => [...document.querySelectorAll('.grid-wrap')]
  .filter(g => g.getBoundingClientRect().height > 0 && g.scrollHeight > g.clientHeight + 2)
  .map(g => (g.closest('.block') || {}).id || '?')
"""

UPLOAD_OFFERS = """
() => [...document.querySelectorAll('.block')].filter(b => b.getBoundingClientRect().height > 0 && !b.closest('#painter')
  && /Drop (Media|Image) Here|Click to Upload|Paste from clipboard/.test(b.innerText)).map(b => b.id || '?')
"""

PICTURES_NOT_DRAWN = """
() => { const shown = [...document.querySelectorAll('.block img')].filter(i => i.getBoundingClientRect().width > 0);
  shown.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });  // a full-page screenshot does not scroll to them
  return shown.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.closest('.block') || {}).id + ': ' + (i.src || '').slice(0, 80)); }
"""


def check_layout(page, name: str) -> None:
    for _ in range(120):  # the screenshot shows what a student sees, not pictures still loading
        if not (undrawn := page.evaluate(PICTURES_NOT_DRAWN)):
            break
        page.wait_for_timeout(500)
    assert not undrawn, f"{name}: pictures not drawn after 60 s: {undrawn}"
    page.screenshot(path=str(ARTIFACTS / f"layout-{name}.png"), full_page=True)
    assert page.evaluate(BADGE_OVERLAPS) == [], f"{name}: a name badge covers a picture or plot"
    assert page.evaluate(COLUMNS_OUT_OF_VIEW) == [], f"{name}: a table column is out of view"
    assert page.evaluate(GALLERIES_CUT) == [], f"{name}: a gallery hides pictures below its fold"
    assert page.evaluate(UPLOAD_OFFERS) == [], f"{name}: a result offers an upload (a picture a student drops in would be zipped as the result)"


def test_no_result_offers_an_upload_before_it_is_made(page):
    fresh = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # nothing run in it yet
    fresh.goto(page.url)
    for tab in ("Lessons", "Generate", "Steer", "Evolution", "Erase / amplify"):
        fresh.get_by_role("tab", name=tab).click()
        fresh.wait_for_timeout(500)
        assert fresh.evaluate(UPLOAD_OFFERS) == [], f"{tab}: an empty result offers an upload"
        if tab == "Evolution":
            assert fresh.locator("#evolve-files").bounding_box()["height"] < 120  # the empty downloads box waits small (Gradio's: 270 px)
    fresh.close()


def test_generate_tab_layout(page):
    page.get_by_role("tab", name="Generate").click()  # the page opens on the Lessons tab
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#image img").first.wait_for(state="visible")
    check_layout(page, "generate")
    assert page.locator("#generate-experiment").bounding_box()["height"] < 120  # the empty zip box waits small (Gradio's: 270 px)


def test_the_feature_chosen_in_the_table_is_the_one_steered(page):
    page.get_by_role("tab", name="Steer").click()
    page.locator("#explore").click()
    page.locator("#explored img").first.wait_for(state="visible")
    row = page.locator("#top-features [data-testid=cell-2-0]")
    chosen = row.inner_text().strip()
    row.click()
    page.wait_for_function("want => document.querySelector('#steer-features textarea, #steer-features input').value === want", arg=chosen)
    assert page.locator("#heat-feature input").input_value() == chosen
    page.get_by_text("Top images: where a feature fires most").click()
    assert page.locator("#top-feature input").input_value() == chosen
    page.locator("#steer").click()
    page.locator("#steer-info").get_by_text(f"Steered features [{chosen}]").wait_for()
    page.locator("#difference img").first.wait_for(state="visible")
    check_layout(page, "steer")


def test_evolution_tab_layout(page):
    page.get_by_role("tab", name="Evolution").click()
    page.locator("#follow").click()
    page.locator("#evolve-info").get_by_text("Decided").wait_for()
    for figure in ("curves", "decided", "heatmap-grid", "composition-strip", "step-preview"):
        page.locator(f"#{figure} img").first.wait_for(state="visible")  # an empty plot shows an svg icon: wait for the picture
    check_layout(page, "evolution")


def test_erase_tab_layout(page, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.mktemp("layout-cad")))
    page.get_by_role("tab", name="Erase / amplify").click()
    page.locator("#edit-images input").fill("2")
    page.locator("#edit-mode").get_by_text("fast: one trajectory per image").click()
    page.locator("#edit-run").click()
    page.locator("#edit-info").get_by_text("Erased").wait_for()
    page.locator("#edit-mass img").first.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('#edit-concept-gallery img').length === 4")
    page.locator("#edit-top [data-testid=cell-0-3]").wait_for()
    check_layout(page, "erase")


def test_a_model_that_cannot_load_says_so_beside_the_menu(page):
    page.locator("#model input").click()
    page.get_by_role("option", name="Stable Diffusion v1.4").first.click()
    page.locator("#model-note").get_by_text("cannot load here").wait_for()
    page.wait_for_function("() => document.querySelector('#model input').value.startsWith('toy-shapes')")
    page.wait_for_timeout(1500)  # the menu's return to the toy must not wipe the note
    assert "cannot load here" in page.locator("#model-note").inner_text()
    page.get_by_role("tab", name="Steer").click()
    assert page.locator("#steer-block input").input_value().startswith("mid_block")  # the tabs stayed on the toy
    assert page.locator(".toast-body.error, [data-testid=toast-body]").count() == 0
    check_layout(page, "model-menu")
