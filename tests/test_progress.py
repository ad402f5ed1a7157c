"""Long requests say how far they are: the core reports through a callback, the app shows it as
Gradio's progress bar (here a recorder stands in for `gr.Progress`)."""

from __future__ import annotations

from collections import OrderedDict

import pytest

import concepts.steer.icons
import ui.erase
import ui.evolution
import ui.features
import ui.steer


class Recorder:
    """Called like gr.Progress: progress(fraction, desc=...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, desc: str | None = None, **_: object) -> None:
        self.calls.append((fraction, desc or ""))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cache"))


def test_following_a_generation_reports_every_step():
    progress = Recorder()
    ui.evolution.follow_evolution("toy-shapes", "a red circle", 0, 5, 4.0, "mid_block.attentions.0", None, progress=progress)
    fractions = [f for f, _ in progress.calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 5
    assert progress.calls[0][1] == "denoising step 1 of 5"


def test_exploring_reports_every_step():
    progress = Recorder()
    ui.steer.explore_image("toy-shapes", "a red circle", 0, 5, 4.0, "mid_block.attentions.0", "middle", progress=progress)
    assert [w for _, w in progress.calls] == [f"denoising step {i} of 5" for i in range(1, 6)]
    assert progress.calls[-1][0] == 1.0


def test_icons_report_their_generations_steps_once(monkeypatch):
    monkeypatch.setattr(concepts.steer.icons, "_ICONS", OrderedDict())  # none kept by an earlier test in this process
    progress = Recorder()
    ui.features.icon_gallery("toy-shapes", "mid_block.attentions.0", "middle", 25, 3, progress=progress)
    assert [w for _, w in progress.calls][-1] == "the icons: 25 of 25 denoising steps" and len(progress.calls) == 25
    again = Recorder()
    ui.features.icon_gallery("toy-shapes", "mid_block.attentions.0", "middle", 25, 3, progress=again)
    assert again.calls == []  # kept: nothing to make


def test_an_edit_reports_attribution_then_images():
    progress = Recorder()
    ui.erase.edit_concept("toy-shapes", "red", "erase", 0.02, "fast", "", "", 0, 1, "", progress=progress)
    whats = [w for _, w in progress.calls]
    assert whats[0].startswith("attribution scores") and whats[-1] == "done"
    assert [f for f, _ in progress.calls] == sorted(f for f, _ in progress.calls)
    # then every denoising step of the images: the concept's and the kept prompts', before and after (25 steps each)
    assert whats[-2] == "the images before and after: 100 of 100 denoising steps" and progress.calls[-2][0] == 1.0
    assert sum(w.startswith("the images before and after") for w in whats) == 100
