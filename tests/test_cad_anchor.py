"""CAD's erase objective anchored on neighbouring concepts (J = Σ‖ε(x,c) − stopgrad mean_a ε(x,a)‖²):
zero against itself, different from CAD's unconditional anchor, kept apart in the score cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from concepts.edit import AttributionConfig, attribute, objective_value
from concepts.edit.cache import load_scores, save_scores, score_key, score_path
from concepts.edit.service import EditSpec, anchor_prompts, scores_for
from concepts.errors import InvalidInputError

CFG = AttributionConfig(steps=3, guidance=5.0, height=32, width=32, images=1)
PROMPT = "a red square"


def with_anchor(*anchor: str, **changes) -> AttributionConfig:
    return AttributionConfig(**{**CFG.__dict__, "anchor": anchor, **changes})


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cad-cache"))


@pytest.fixture(scope="module")
def plain_scores(tiny_pipe):
    return attribute(tiny_pipe, PROMPT, CFG)


@pytest.fixture(scope="module")
def world():
    """A stand-in for a registry entry: what scores_for and score_key read."""
    defaults = SimpleNamespace(edit_mode="fast", attribution_images={"fast": 2, "faithful": 2}, steps=3, guidance=5.0, height=32, width=32, concept_template="a {concept} square")
    return SimpleNamespace(name="tiny", pipeline=SimpleNamespace(describe=lambda: "tiny-random"), defaults=defaults)


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_anchor_equal_to_the_concept_gives_exactly_zero(tiny_pipe, mode):
    cfg = with_anchor(PROMPT, mode=mode)
    assert objective_value(tiny_pipe, PROMPT, cfg) == 0.0
    scores = attribute(tiny_pipe, PROMPT, cfg)
    assert scores and all(torch.count_nonzero(s) == 0 for s in scores.values())


@pytest.mark.parametrize("anchor", [("a blue square",), ("a blue square", "a green circle")])
def test_anchored_scores_differ_from_cads(tiny_pipe, plain_scores, anchor):
    anchored = attribute(tiny_pipe, PROMPT, with_anchor(*anchor))
    assert set(anchored) == set(plain_scores)
    assert all(torch.isfinite(s).all() for s in anchored.values()) and any(s.abs().sum() > 0 for s in anchored.values())
    assert any(not torch.allclose(anchored[n], plain_scores[n]) for n in plain_scores)
    assert objective_value(tiny_pipe, PROMPT, with_anchor(*anchor)) != pytest.approx(objective_value(tiny_pipe, PROMPT, CFG))


def test_several_anchors_compare_with_their_mean_prediction(tiny_pipe):
    """Σ_a‖p − t_a‖² = K‖p − t̄‖² + const: the mean-target J is the sum's minus a constant, over K."""
    a, b = "a blue square", "a green circle"
    both = objective_value(tiny_pipe, PROMPT, with_anchor(a, b))
    assert 0 < both <= (objective_value(tiny_pipe, PROMPT, with_anchor(a)) + objective_value(tiny_pipe, PROMPT, with_anchor(b))) / 2


def test_empty_anchor_is_cads_objective(tiny_pipe, plain_scores):
    assert with_anchor("").anchor == () and with_anchor().anchor == ()
    same = attribute(tiny_pipe, PROMPT, with_anchor(""))
    assert all(torch.equal(same[n], plain_scores[n]) for n in plain_scores)


def test_anchor_is_for_erase_only():
    with pytest.raises(InvalidInputError, match="anchor"):
        with_anchor("a blue square", objective="amplify")


def test_the_cache_keeps_anchored_scores_apart(world, tiny_pipe, plain_scores):
    keys = [score_key(world, tiny_pipe.unet, PROMPT, cfg) for cfg in (CFG, with_anchor("a blue square"), with_anchor("a blue square", "a green circle"))]
    assert "anchor" not in keys[0]  # CAD's keys (and the files cached under them) are as before
    assert keys[1]["anchor"] == ["a blue square"]
    paths = [score_path(k) for k in keys]
    assert len(set(paths)) == 3
    save_scores(paths[0], plain_scores, keys[0])
    assert load_scores(paths[1]) is None and load_scores(paths[2]) is None

    first = scores_for(world, tiny_pipe, PROMPT, "erase", "fast")
    anchored = scores_for(world, tiny_pipe, PROMPT, "erase", "fast", ("a blue square",))
    plain_again = scores_for(world, tiny_pipe, PROMPT, "erase", "fast")
    anchored_again = scores_for(world, tiny_pipe, PROMPT, "erase", "fast", ("a blue square",))
    assert not first.cached and not anchored.cached and plain_again.cached and anchored_again.cached
    assert all(torch.equal(plain_again.scores[n], first.scores[n]) and torch.equal(anchored_again.scores[n], anchored.scores[n]) for n in plain_scores)
    assert any(not torch.equal(anchored.scores[n], first.scores[n]) for n in plain_scores)


def test_edit_spec_anchor_names_become_prompts(world):
    assert anchor_prompts(world, EditSpec("red")) == ()
    assert anchor_prompts(world, EditSpec("red", anchor=("orange", " orange ", "blue"))) == ("a orange square", "a blue square")
    with pytest.raises(InvalidInputError, match="anchor"):
        anchor_prompts(world, EditSpec("red", anchor=("red",)))
    with pytest.raises(InvalidInputError, match="anchor"):
        anchor_prompts(world, EditSpec("red", action="amplify", anchor=("orange",)))


def test_cli_erase_takes_repeated_anchors_and_amplify_none(tmp_path):
    from concepts.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["erase", "--concept", "red", "--anchor", "orange", "--anchor", "yellow", "--out", str(tmp_path)])
    assert args.anchor == ["orange", "yellow"]
    assert parser.parse_args(["erase", "--concept", "red", "--out", str(tmp_path)]).anchor is None
    assert not hasattr(parser.parse_args(["amplify", "--concept", "red", "--out", str(tmp_path)]), "anchor")
