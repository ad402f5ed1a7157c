"""Attribution over scenes: the concept's scores averaged over fully specified toy scenes, kept
concepts scored on the same scenes with their value swapped in."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from concepts.edit.scenes import (
    SCENE_SEED,
    check_scenes,
    kept_scene_prompts,
    scene_prompts,
)
from concepts.edit.service import (
    EditSpec,
    contrasted,
    kept_scores,
    scores_for,
    target_scores,
    with_scenes,
)
from concepts.errors import InvalidInputError
from concepts.toy.knowledge import ToyKnowledge
from concepts.toy.prompts import prompts_showing


def a_world(concept_images: str = "toy-world", edit_scenes: int = 0):
    """A stand-in registry entry at the tiny pipeline's size: what the service and score cache read."""
    defaults = SimpleNamespace(edit_mode="fast", attribution_images={"fast": 2, "faithful": 2}, steps=2, guidance=5.0, height=32, width=32, concept_template="a {concept} shape",
                               concept_images=concept_images, toy_scenes=concept_images == "toy-world", edit_scenes=edit_scenes)
    return SimpleNamespace(name="tiny-toy", pipeline=SimpleNamespace(describe=lambda: "tiny-random"), defaults=defaults, knowledge=ToyKnowledge())


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cad-cache"))


def test_kept_colours_are_scored_on_the_same_scenes_with_their_colour():
    red = scene_prompts(a_world(), "red", 3)
    blue = kept_scene_prompts(a_world(), "red", "blue", 3)
    assert red == prompts_showing("red", 3, SCENE_SEED) and all(" red " in p for p in red)
    assert blue == [p.replace(" red ", " blue ") for p in red]
    striped = kept_scene_prompts(a_world(), "red", "striped", 3)  # another attribute: scenes that show it
    assert all(" striped " in p for p in striped) and striped != red


@pytest.mark.parametrize("call,field", [
    (lambda: scene_prompts(a_world(), "a red dog", 2), "scenes"),
    (lambda: kept_scene_prompts(a_world(), "red", "dog", 2), "keep"),
    (lambda: check_scenes(a_world(), 9), "scenes"),
    (lambda: check_scenes(a_world(), 1.5), "scenes"),
    (lambda: check_scenes(a_world(concept_images="template"), 2), "scenes"),
])
def test_bad_scene_requests_name_the_field(call, field):
    with pytest.raises(InvalidInputError) as error:
        call()
    assert error.value.field == field


def test_the_models_default_number_of_scenes_fills_an_unset_spec():
    assert with_scenes(a_world(edit_scenes=3), EditSpec("red")).scenes == 3
    assert with_scenes(a_world(edit_scenes=3), EditSpec("red", scenes=0)).scenes == 0
    with pytest.raises(InvalidInputError, match="scenes"):
        with_scenes(a_world(concept_images="template"), EditSpec("red", scenes=2))
    assert with_scenes(a_world(edit_scenes=3), EditSpec("red", concept_prompt="a red circle")).scenes == 0  # what the user typed is attributed
    with pytest.raises(InvalidInputError, match="scenes"):
        with_scenes(a_world(), EditSpec("red", concept_prompt="a red circle", scenes=2))


def test_scene_scores_are_the_mean_of_each_scenes_scores_and_contrast_like_for_like(tiny_pipe):
    world = a_world()
    spec = EditSpec("red", keep=("blue",), scenes=2)
    each = [scores_for(world, tiny_pipe, p, "erase", "fast").scores for p in scene_prompts(a_world(), "red", 2)]
    mean = target_scores(world, tiny_pipe, spec, "a red shape")
    assert mean.cached and mean.prompt == "2 scenes of red"  # read back from what `each` cached
    assert all(torch.allclose(mean.scores[n], (each[0][n] + each[1][n]) / 2) for n in each[0])
    assert any(not torch.allclose(each[0][n], each[1][n]) for n in each[0])  # two scenes, two different score sets
    blue = kept_scores(world, tiny_pipe, spec, "blue")
    blue_each = [scores_for(world, tiny_pipe, p, "erase", "fast").scores for p in kept_scene_prompts(a_world(), "red", "blue", 2)]
    assert all(torch.allclose(blue.scores[n], (blue_each[0][n] + blue_each[1][n]) / 2) for n in blue_each[0])
    kept = contrasted(world, tiny_pipe, spec, mean)
    assert all(torch.allclose(kept.scores[n], mean.scores[n] - blue.scores[n]) for n in mean.scores)
    template = target_scores(world, tiny_pipe, EditSpec("red", scenes=0), "a red shape")
    assert template.prompt == "a red shape" and any(not torch.allclose(template.scores[n], mean.scores[n]) for n in mean.scores)
