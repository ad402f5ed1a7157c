"""The lessons as a student and a teacher use them from the command line: the list, a run's JSON
(the numbers the tab draws), bad names and seeds named in one line, and a run that leaves the
shared model exactly as it found it."""

from __future__ import annotations

import io
import json

import pytest
import torch

from concepts.cli import main
from concepts.lessons import LESSONS, lesson_figure, run_lesson
from concepts.lessons.toy_bench import toy_bench
from concepts.steer.steering import CELLS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_list_prints_the_six_lessons_one_a_line():
    code, out, _ = cli("lesson", "--list")
    assert code == 0
    assert out.split() == list(LESSONS) and len(LESSONS) == 6


@pytest.mark.parametrize("argv, field", [(("lesson", "no-such-lesson"), "lesson"), (("lesson", "concept-maps", "--seed", "-1"), "seed"),
                                          (("lesson",), "name")])
def test_a_bad_lesson_or_seed_is_one_line_naming_it(argv, field):
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and field in err and "Traceback" not in err


def test_json_carries_the_charted_numbers_and_the_counts_behind_them():
    code, out, _ = cli("lesson", "concept-maps", "--seed", "4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["lesson"] == "concept-maps" and data["seed"] == 4 and data["images_per_condition"] <= 8
    measured = {b["group"]: b["value"] for b in data["bars"] if not b["paper"]}
    table = {row["reading"]: row["mean IoU"] for row in data["table"]}
    assert measured["object vs background, first step"] == table["object vs background, first step"]
    assert measured["object vs background, middle window"] == table["object vs background, middle window"]
    assert all(0.0 <= v <= 1.0 for v in measured.values())
    assert any(b["paper"] and b["value"] == 0.26 for b in data["bars"])  # the paper's mIoU beside ours
    assert f"{table['object vs background, middle window']:.2f}" in data["finding"]  # the sentence says the measured number
    assert data["try_it"]["tab"] == "evolution"


def test_another_seed_is_another_draw():
    first, second = run_lesson("concept-maps", seed=1), run_lesson("concept-maps", seed=2)
    assert first.example_note != second.example_note  # other prompts
    assert [b.value for b in first.bars] != [b.value for b in second.bars]


def test_moving_objects_counts_every_trial_and_leaves_the_model_untouched():
    bench = toy_bench()
    weights = {k: v.clone() for k, v in bench.pipe.unet.state_dict().items()}
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in bench.pipe.unet.modules())
    reading = run_lesson("moving-objects", seed=0, cached=False)
    assert all(torch.equal(v, weights[k]) for k, v in bench.pipe.unet.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in bench.pipe.unet.modules()) == hooks_before
    shares = [b for b in reading.bars if not b.paper]
    assert len(shares) == 12 and all(b.count == 8 for b in shares)  # 2 prompt kinds × 3 windows × (moved, clean)
    for row in reading.table:  # a clean move is also a move
        moved, clean = (int(row[k].split("/")[0]) for k in ("object in target cell", "clean scene"))
        assert clean <= moved
    assert len(reading.examples) == 4  # baseline and one steered image per window
    assert reading.try_it["tab"] == "steer" and reading.try_it["window"] == "early"
    assert reading.try_it["where"] in CELLS and reading.try_it["features"]  # the first prompt's own features, into its target cell


def test_the_chart_has_axes_a_legend_and_the_paper():
    reading = run_lesson("concept-maps", seed=0)
    fig = lesson_figure(reading)
    ax = fig.axes[0]
    assert ax.get_ylabel() == reading.y_label and ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "paper" in labels and any("measured" in label for label in labels)
    assert len(ax.get_xticklabels()) == len({b.group for b in reading.bars})


def test_erasing_weights_takes_stripes_away_where_switching_their_labels_off_does_not(tmp_path, monkeypatch):
    """Lesson 6's claim, on its default draw; with an empty cache CAD's scores come from the toy's shipped ones."""
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path))
    reading = run_lesson("labels-weights", seed=0, cached=False)
    counts = {b.group: round(b.value * b.count) for b in reading.bars}
    assert counts["weights erased (CAD)"] < counts["before"]
    assert counts["labelled features off"] >= counts["before"] - 1
    # the labelled features mark stripes: they fire on more striped scenes than on the same scenes with another texture
    assert counts["labelled features fire on striped scenes"] > counts["… and on the same with another texture"]
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing was attributed: the shipped scores were used


def test_a_class_on_the_same_link_shares_one_reading():
    """The teacher's link gives every student the same lesson and seed: it is computed once."""
    import threading

    readings = []
    threads = [threading.Thread(target=lambda: readings.append(run_lesson("concept-maps", seed=11))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(readings) == 3 and all(r is readings[0] for r in readings)
    fresh = run_lesson("concept-maps", seed=11, cached=False)
    assert fresh is not readings[0] and [b.value for b in fresh.bars] == [b.value for b in readings[0].bars]  # the same draw again


@pytest.mark.parametrize("name", list(LESSONS))
def test_runs_progress_bar_counts_each_denoising_step_to_the_end(name):
    """Run's bar moves with every denoising step of the lesson's generations and ends full, so its
    declared length is the lesson's real count (another seed draws other prompts, not more)."""
    reports: list[tuple[float, str]] = []
    run_lesson(name, seed=3, cached=False, progress=lambda fraction, what: reports.append((fraction, what)))
    steps = LESSONS[name].denoising_steps
    assert len(reports) == steps
    assert [f for f, _ in reports] == sorted(f for f, _ in reports) and reports[-1][0] == 1.0
    assert reports[-1][1] == f"the lesson's generations: {steps} of {steps} denoising steps"
