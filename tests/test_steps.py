"""Step windows: presets follow the paper's t ranges; ranges are checked against the run."""

from __future__ import annotations

import pytest

from concepts.errors import InvalidInputError
from concepts.steps import StepWindow, nearest_step, stage_of, step_t


def test_t_runs_from_one_to_zero():
    assert step_t(0, 50) == 1.0 and step_t(49, 50) == 0.0 and step_t(0, 1) == 1.0


def test_presets_partition_the_steps_by_t():
    n = 50
    early, middle, final = (StepWindow.parse(s, n) for s in ("early", "middle", "final"))
    assert early.start == 0 and final.end == n - 1
    assert early.end + 1 == middle.start and middle.end + 1 == final.start
    assert step_t(early.end, n) >= 0.6 > step_t(middle.start, n)
    assert step_t(middle.end, n) >= 0.2 > step_t(final.start, n)
    assert stage_of(nearest_step(0.5, n), n) == "middle"


@pytest.mark.parametrize("spec,expected", [("0:3", (0, 3)), (" 2:2 ", (2, 2)), ("all", (0, 24))])
def test_ranges_parse(spec, expected):
    window = StepWindow.parse(spec, 25)
    assert (window.start, window.end) == expected


@pytest.mark.parametrize("spec,words", [("5:2", "inverted"), ("0:25", "outside"), ("x", "not early"), ("a:b", "integers"), ("-1:3", "outside")])
def test_bad_windows_name_the_field(spec, words):
    with pytest.raises(InvalidInputError, match=words) as info:
        StepWindow.parse(spec, 25)
    assert info.value.field == "window"


def test_preset_with_no_step_is_refused():
    with pytest.raises(InvalidInputError, match="holds no step"):
        StepWindow.parse("middle", 2)
