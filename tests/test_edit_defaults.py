"""The Erase / amplify defaults a world chooses from its measured tables: the attribution mode and
images (seed-stable on toy-shapes), amplify's own ratio, and amplify's images on prompts that leave
the concept open (a prompt that already asks for the concept cannot show it amplified)."""

from __future__ import annotations

import json

import pytest

import ui.erase
from concepts.edit.service import EditSpec, concept_image_prompts, run_edit
from concepts.errors import CheckpointError, InvalidInputError
from concepts.registry import Defaults, Registry, load_registry
from concepts.toy.prompts import attribute_of
from concepts.toy.world import ATTRIBUTES


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path / "cad-cache"))


def toy():
    return load_registry().get("toy-shapes")


def test_the_toy_attributes_faithfully_with_six_images_and_sd_worlds_stay_fast():
    d = toy().defaults
    assert d.edit_mode == "faithful" and d.attribution_images == {"fast": 2, "faithful": 6}
    assert load_registry().get("sd14").defaults.edit_mode == "fast"


def test_amplify_has_its_own_ratio_and_the_tab_follows_the_action():
    d = toy().defaults
    assert d.ratio_for("amplify") == 0.006 and d.ratio_for("erase") == d.edit_ratio == 0.056
    assert ui.erase.action_ratio("toy-shapes", "amplify")["value"] == 0.006
    assert ui.erase.action_ratio("toy-shapes", "erase")["value"] == 0.056
    assert ui.erase.model_edit_mode("toy-shapes")["value"] == "faithful"
    sd = load_registry().get("sd14").defaults
    assert sd.ratio_for("amplify") == sd.edit_ratio  # no amplify ratio of its own: the erase one


def test_amplify_images_leave_the_concept_open_and_erase_images_name_it():
    world = toy()
    open_prompts = concept_image_prompts(world, EditSpec("red", "amplify"), "a red shape", 4, 0)
    named = concept_image_prompts(world, EditSpec("red", "erase"), "a red shape", 4, 0)
    assert all(not any(f" {c} " in f" {p} " for c in ATTRIBUTES["colour"]) for p in open_prompts), open_prompts
    assert all(" red " in f" {p} " for p in named)
    # the same scenes, only the colour word left out
    assert [p.replace(" red ", " ") for p in named] == open_prompts
    striped = concept_image_prompts(world, EditSpec("striped", "amplify"), "a striped shape", 3, 1)
    assert all(attribute_of(w) is None or attribute_of(w)[0] != "texture" for p in striped for w in p.split())


def test_a_default_amplify_request_runs_faithfully_at_amplifys_ratio():
    outcome = run_edit(None, EditSpec("red", "amplify"), images=1, kept_prompts=[])
    assert outcome.spec.mode == "faithful" and outcome.ratio == 0.006
    assert outcome.attribution.prompt == "a red shape" and " red " not in f" {outcome.concept_prompts[0]} "
    assert 0 < outcome.plan.count < 0.01 * outcome.plan.total_weights


@pytest.mark.parametrize("field,value", [
    ("edit_mode", "slow"),
    ("attribution_images", {"fast": 2}),
    ("attribution_images", {"fast": 2, "faithful": 0}),
    ("amplify_ratio", 0.9),
    ("amplify_ratio", -1),
])
def test_bad_defaults_are_named(tmp_path, field, value):
    with pytest.raises(InvalidInputError, match=f"defaults.{field}"):
        Defaults(**{field: value})
    path = tmp_path / "registry.json"  # and in a registry file: one message naming the field
    path.write_text(json.dumps({"models": {"m": {"pipeline": {"path": "x"}, "defaults": {field: value}}}}))
    with pytest.raises((CheckpointError, InvalidInputError), match=field):
        Registry.from_file(path)


def test_steering_edits_the_branch_each_world_edits_by_default():
    """SAeUron applies its SAE edits to both guidance halves; the paper (and our SAEs) the cond one."""
    import ui.steer
    from concepts.generation import SHARED_PIPELINES
    from concepts.sampling import GenerationRequest
    from concepts.steer.service import SteerSpec, plan_steering

    registry = load_registry()
    assert registry.get("sd14-saeuron").defaults.steer_branch == "both"
    assert registry.get("toy-shapes").defaults.steer_branch == registry.get("sdxl-turbo-unbox").defaults.steer_branch == "cond"
    assert ui.steer.model_branch("sd14-saeuron")["value"] == "both" and ui.steer.model_branch("toy-shapes")["value"] == "cond"
    world = toy()
    pipe = SHARED_PIPELINES.get(world, "cpu")
    request = GenerationRequest("a red square", steps=25, guidance=4.0, height=64, width=64)
    for asked, applied in ((None, "cond"), ("both", "both")):
        plan, _, _ = plan_steering(world, SteerSpec("mid_block.attentions.0", "early", 8.0, features=(3,), branch=asked), request, pipe.unet)
        assert plan.branch == applied
    with pytest.raises(InvalidInputError, match="defaults.steer_branch"):
        Defaults(steer_branch="uncond")
