"""The CAD scores the toy ships (`checkpoints/toy-shapes/cad-scores/`) are what attribution computes
(to float rounding, zeroing the same weights), and are used only for the very request they were
computed for."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import concepts.edit.service as service
from concepts.edit.ablation import plan_ablation
from concepts.edit.cache import load_shipped, shipped_path
from concepts.generation import SHARED_PIPELINES
from concepts.registry import load_registry
from concepts.toy.ship_scores import SHIPPED_CONCEPTS, key_for


@pytest.fixture(scope="module")
def toy():
    world = load_registry().get("toy-shapes")
    return world, SHARED_PIPELINES.get(world, "cpu")


def test_every_shipped_concept_has_its_file(toy):
    world, pipe = toy
    for concept in SHIPPED_CONCEPTS:
        assert shipped_path(world, key_for(world, pipe, concept)).is_file(), concept


def test_shipped_red_equals_a_fresh_attribution(toy, tmp_path, monkeypatch):
    world, pipe = toy
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(service, "load_shipped", lambda world, key: None)
    fresh = service.scores_for(world, pipe, world.defaults.concept_template.format(concept="red"), "erase", None)
    assert not fresh.cached
    shipped = load_file(str(shipped_path(world, key_for(world, pipe, "red"))))
    assert fresh.scores.keys() == shipped.keys()
    # Equal to float rounding (torch splits CPU sums by thread count), and the same weights zeroed.
    assert all((fresh.scores[k] - shipped[k]).abs().max() <= 1e-4 * shipped[k].abs().max() for k in shipped)
    ours, theirs = (plan_ablation(pipe.unet, s, world.defaults.edit_ratio, scope="matrix") for s in (fresh.scores, shipped))
    assert all(torch.equal(ours.removed[k] != 0, theirs.removed[k] != 0) for k in ours.removed)


def test_a_shipped_file_is_not_used_for_another_request(toy):
    world, pipe = toy
    key = key_for(world, pipe, "red")
    assert load_shipped(world, key) is not None
    assert load_shipped(world, {**key, "images": key["images"] + 1}) is None  # other settings, other file name
    assert load_shipped(world, {**key, "weights": "retrained"}) is None
