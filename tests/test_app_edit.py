"""The Erase / amplify tab's handler: galleries, chart, top components, and bad input as messages."""

from __future__ import annotations

import math
import re

import gradio as gr
import pytest

import ui.common
import ui.erase


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.getbasetemp() / "app-cad-cache"))


def test_erase_shows_before_after_chart_and_components():
    kept = "a small blue striped circle in the center on a black background"
    concept, others, figure, rows, info = ui.erase.edit_concept("toy-shapes", "red", "erase", 0.01, "fast", "", kept, 0, 2)
    assert [c.split(" · ")[0] for _, c in concept] == ["before", "after", "before", "after"]  # each prompt's pair side by side
    assert len(others) == 2 and others[0][1].startswith("before")
    assert figure.axes and len(rows) == 10 and rows[0][3] >= rows[-1][3]
    assert "zeroed" in info and "judge sees **red**" in info


@pytest.mark.parametrize(
    "concept,action,ratio,mode,images,field",
    [
        ("", "erase", 0.01, "fast", 2, "concept"),
        ("red", "erase", math.nan, "fast", 2, "ratio"),
        ("red", "erase", 0.9, "fast", 2, "ratio"),
        ("red", "forget", 0.01, "fast", 2, "action"),
        ("red", "erase", 0.01, "slow", 2, "mode"),
        ("red", "erase", 0.01, "fast", 50, "images"),
        ("red", "erase", 0.01, "fast", 2, "scope"),
        ("red", "erase", 0.01, "fast", 2, "scenes"),
        ("red circle", "erase", 0.01, "fast", 2, "scenes"),
    ],
)
def test_bad_edit_input_is_a_message(concept, action, ratio, mode, images, field):
    scenes = (9 if concept == "red" else 2) if field == "scenes" else None
    with pytest.raises(gr.Error) as info:
        ui.erase.edit_concept("toy-shapes", concept, action, ratio, mode, "", "", 0, images, "", "everywhere" if field == "scope" else None, scenes)
    assert field in str(info.value.message)


def test_the_scope_radio_reaches_the_plan():
    *_, info = ui.erase.edit_concept("toy-shapes", "red", "erase", 0.004, "fast", "", "", 0, 1, "", "model")
    assert "whole model" in info and f"zeroed {int(0.004 * 233472):,} of 233,472" in info
    ratio, _, scope, keep, scenes = ui.erase.model_edit_defaults("toy-shapes")
    assert scenes["visible"] and scenes["value"] == ui.common.REGISTRY.get("toy-shapes").defaults.edit_scenes
    assert scope["value"] == ui.common.REGISTRY.get("toy-shapes").defaults.edit_scope
    assert keep["value"] == ", ".join(ui.common.REGISTRY.get("toy-shapes").defaults.edit_keep)


def test_the_default_erase_shows_fully_specified_prompts_of_the_concept_and_red_goes():
    """The tab's images of "red" are fully specified toy prompts, the case the README's tables measure
    (an erase fares differently on "a red shape": `python -m concepts.toy.erase_prompt_length`)."""
    ratio, _, scope, keep, scenes = ui.erase.model_edit_defaults("toy-shapes")
    concept, _, _, _, info = ui.erase.edit_concept("toy-shapes", "red", "erase", ratio["value"], "fast", "", "", 0, 4, keep["value"], scope["value"], scenes["value"])
    sides, prompts = zip(*(c.split(" · ") for _, c in concept))
    assert sides == ("before", "after") * 4  # in pairs: in the tab's two columns a row is one prompt
    assert prompts[0::2] == prompts[1::2] and len(set(prompts)) == 4
    assert all(" red " in p and p.endswith("background") for p in prompts)
    rates = re.search(r"judge sees \*\*red\*\* in (\d+)% of the images before and (\d+)% after", info)
    assert rates and int(rates[1]) >= 75 and int(rates[2]) <= 50, info


def test_a_concept_prompt_of_your_own_is_what_the_images_show():
    concept, *_ = ui.erase.edit_concept("toy-shapes", "red", "erase", 0.004, "fast", "a red circle", "", 0, 2)
    assert {c for _, c in concept} == {"before · a red circle", "after · a red circle"}


def test_attribution_over_scenes_is_named_in_the_chart_and_changes_the_top_components():
    by_prompt = ui.erase.edit_concept("toy-shapes", "red", "erase", 0.012, "fast", "", "", 0, 1, "", "matrix", 0)[3]
    _, _, figure, by_scenes, _ = ui.erase.edit_concept("toy-shapes", "red", "erase", 0.012, "fast", "", "", 0, 1, "", "matrix", 2)
    assert "2 scenes of red" in figure.axes[0].get_title()
    assert by_scenes != by_prompt
