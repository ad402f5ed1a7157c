"""`python -m concepts.toy.evaluate stability`: the seed-stability report, small (one image per
attribution, a few judged prompts). Two runs with the same seed must agree exactly, two seeds not."""

from __future__ import annotations

import pytest

from concepts.errors import InvalidInputError
from concepts.toy.evaluate import main
from concepts.toy.evaluate_stability import StabilityEvalConfig, evaluate_stability


def test_the_same_seed_agrees_exactly_and_another_seed_does_not():
    report = evaluate_stability(StabilityEvalConfig(concept="red", settings=(("faithful", 1),), score_seeds=(0, 0, 1), prompts=2))
    row = report["settings"][0]
    assert report["before"]["concept_rate"] == 1.0  # the judge sees red on red prompts before any edit
    assert row["mode"] == "faithful" and row["zeroed_weights"] > 0
    # pairs (0, 0), (0, 1), (0, 1): one identical pair, two that differ
    assert row["pearson"]["max"] == pytest.approx(1.0) and row["selection_jaccard"]["max"] == 1.0
    assert row["selection_jaccard"]["min"] < 1.0 and row["spearman"]["min"] < 0.999
    after = row["after_erase"][0]
    assert after["ratio"] == 0.056 and 0.0 <= after["concept_rate"]["mean"] <= 1.0


def test_a_concept_that_is_not_a_toy_value_is_named():
    with pytest.raises(InvalidInputError, match="concepts"):
        evaluate_stability(StabilityEvalConfig(concept="dog", prompts=2))


def test_the_cli_names_the_bad_concept_in_one_line(capsys):
    assert main(["stability", "--concepts", "dog", "--prompts", "2", "--settings", "fast:1", "--score-seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dog" in err[0]
