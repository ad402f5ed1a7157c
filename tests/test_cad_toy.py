"""Erase / amplify on the toy model through the CLI and the service: before/after images, measured
rates, the score cache, and bad input as one-line messages."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from concepts.cli import main
from concepts.edit.cache import cache_root
from concepts.edit.service import EditSpec, run_edit
from concepts.errors import InvalidInputError


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.getbasetemp() / "cad-cache"))


def cli(*args: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out, err)
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


def test_erase_cli_reports_images_rates_and_where(tmp_path):
    code, report, err = cli("erase", "--concept", "blue", "--images", "4", "--out", str(tmp_path))
    assert code == 0, err
    assert len(report["before"]) == len(report["after"]) == 4 and report["kept_prompts"]
    assert all("blue" not in p for p in report["kept_prompts"])
    assert report["zeroed_weights"] > 0 and sum(report["zeroed_by_block"].values()) == report["zeroed_weights"]
    assert set(report["measured"]) == {"concept_rate_before", "concept_rate_after", "kept_attributes_unchanged"}
    assert report["measured"]["concept_rate_after"] <= report["measured"]["concept_rate_before"]
    before = [np.asarray(Image.open(p), float) for p in report["before"]]
    after = [np.asarray(Image.open(p), float) for p in report["after"]]
    assert np.mean([np.abs(a - b).mean() for a, b in zip(before, after)]) > 1.0
    assert not report["scores_cached"]  # blue is not among the scores the toy ships
    code, again, _ = cli("erase", "--concept", "blue", "--images", "1", "--out", str(tmp_path / "2"))
    assert code == 0 and again["scores_cached"]  # the second request reuses the scores on disk
    assert report["mode"] == "faithful"  # the toy's default attribution (registry: seed-stable)
    assert list(cache_root().rglob("erase-faithful-*.safetensors"))


def test_generate_with_erase_differs_from_plain(tmp_path):
    code, plain, err = cli("generate", "--prompt", "a red circle", "--seed", "1", "--out", str(tmp_path / "plain"))
    assert code == 0, err
    code, erased, err = cli("generate", "--prompt", "a red circle", "--seed", "1", "--erase", "red", "--out", str(tmp_path / "erased"))
    assert code == 0, err
    assert erased["edit"]["action"] == "erase" and erased["edit"]["zeroed_weights"] > 0
    a, b = (np.asarray(Image.open(r["images"][0]), float) for r in (plain, erased))
    assert np.abs(a - b).mean() > 1.0


@pytest.mark.parametrize(
    "args,field",
    [
        (["erase", "--concept", "  "], "concept"),
        (["erase", "--concept", "red", "--ratio", "nan"], "ratio"),
        (["amplify", "--concept", "red", "--ratio", "2"], "ratio"),
        (["erase", "--concept", "x" * 20000], "concept"),
        (["erase", "--concept", "red", "--images", "0"], "images"),
        (["generate", "--prompt", "a red circle", "--erase", "red", "--amplify", "blue"], "erase"),
        (["erase", "--concept", "red", "--scope", "rows"], "scope"),
        (["generate", "--prompt", "a red circle", "--erase", "red", "--scope", "everything"], "scope"),
        (["erase", "--concept", "red", "--scenes", "9"], "scenes"),
        (["erase", "--concept", "red circle", "--scenes", "2"], "scenes"),
        (["generate", "--prompt", "a red circle", "--erase", "red", "--scenes", "-1"], "scenes"),
        (["erase", "--concept", "red", "--scenes", "2", "--keep", "circle shape"], "keep"),
    ],
)
def test_bad_edit_input_is_one_line(tmp_path, args, field):
    code, _, err = cli(*args, "--out", str(tmp_path))
    assert code == 2 and field in err and "Traceback" not in err and err.count("\n") == 1


def test_corrupt_cached_scores_are_recomputed():
    existing = set(cache_root().rglob("*.safetensors"))
    outcome = run_edit(None, EditSpec("blue", mode="fast"), prompts=["a blue shape"], kept_prompts=[])
    (path,) = set(cache_root().rglob("*.safetensors")) - existing
    path.write_bytes(b"not a safetensors file")
    again = run_edit(None, EditSpec("blue", mode="fast"), prompts=["a blue shape"], kept_prompts=[])
    assert not again.attribution.cached and path.stat().st_size > 100
    assert np.array_equal(np.asarray(outcome.concept_after[0]), np.asarray(again.concept_after[0]))
    with pytest.raises(InvalidInputError, match="action"):
        run_edit(None, EditSpec("blue", action="forget"))


def test_keeping_other_concepts_changes_which_weights_are_zeroed():
    plain = run_edit(None, EditSpec("red", ratio=0.02), prompts=["a red shape"], kept_prompts=[])
    kept = run_edit(None, EditSpec("red", ratio=0.02, keep=("blue", "green")), prompts=["a red shape"], kept_prompts=[])
    differ = sum(int((plain.plan.removed[n] != kept.plan.removed[n]).sum()) for n in plain.plan.removed)
    assert differ > 0
    with pytest.raises(InvalidInputError, match="min_per_row"):
        run_edit(None, EditSpec("red", min_per_row=-1), prompts=["a red shape"], kept_prompts=[])


def test_the_scope_decides_where_the_weights_are_taken():
    matrix = run_edit(None, EditSpec("red", ratio=0.005, scope="matrix"), prompts=["a red shape"], kept_prompts=[])
    assert matrix.plan.scope == "matrix"
    assert all(n <= int(0.005 * r.numel()) for n, r in zip(matrix.plan.zeroed.values(), matrix.plan.removed.values()))
    whole = run_edit(None, EditSpec("red", ratio=0.005, scope="model"), prompts=["a red shape"], kept_prompts=[])
    assert whole.plan.scope == "model" and whole.plan.count == int(0.005 * whole.plan.total_weights)
    with pytest.raises(InvalidInputError, match="scope"):
        run_edit(None, EditSpec("red", scope="layer"), prompts=["a red shape"], kept_prompts=[])
    with pytest.raises(InvalidInputError, match="min_per_row"):
        run_edit(None, EditSpec("red", scope="matrix", min_per_row=1), prompts=["a red shape"], kept_prompts=[])


def test_erase_cli_reports_its_scope(tmp_path):
    code, report, err = cli("erase", "--concept", "red", "--scope", "model", "--ratio", "0.004", "--images", "1", "--out", str(tmp_path))
    assert code == 0, err
    assert report["scope"] == "model" and report["zeroed_weights"] == int(0.004 * report["of_weights"])


def test_the_max_contrast_spares_what_any_kept_concept_needs():
    keep = ("blue", "green")
    mean = run_edit(None, EditSpec("red", ratio=0.004, scope="matrix", keep=keep), prompts=["a red shape"], kept_prompts=[])
    most = run_edit(None, EditSpec("red", ratio=0.004, scope="matrix", keep=keep, contrast="max"), prompts=["a red shape"], kept_prompts=[])
    differ = sum(int((mean.plan.removed[n] != most.plan.removed[n]).sum()) for n in mean.plan.removed)
    assert differ > 0 and all(torch.all(s <= mean.attribution.scores[n] + 1e-6) for n, s in most.attribution.scores.items())
    with pytest.raises(InvalidInputError, match="contrast"):
        run_edit(None, EditSpec("red", keep=keep, contrast="median"), prompts=["a red shape"], kept_prompts=[])


def test_erasing_red_at_the_models_default_takes_red_away_and_random_weights_do_not():
    from concepts.registry import load_registry
    from concepts.toy.evaluate_edit import EditEvalConfig, evaluate_edit

    d = load_registry().get().defaults  # the Erase tab's defaults: scope, ratio, and the kept concepts' mean subtracted if it lists any
    cfg = EditEvalConfig(concepts=("red",), prompts=8, scopes=(d.edit_scope,), ratios=(d.edit_ratio,), scope_ratios={}, variants=("mean" if d.edit_keep else "plain",),
                         random_baseline=True, amplify=False, suppression=False, prediction=False)
    red = evaluate_edit(cfg)["concepts"]["red"]["erase"]
    (row,) = red["by_ratio"]
    assert red["before"]["concept_rate_on_its_prompts"] >= 0.75
    assert row["after"]["concept_rate_on_its_prompts"] <= 0.5, row
    assert row["random_same_count"]["concept_rate_on_its_prompts"] >= 0.75, row  # as many random weights leave red
    read_as = row["after"]["concept_prompts_read_as"]  # what the red prompts' objects became instead
    assert sum(read_as.values()) == 8 and round(read_as.get("red", 0) / 8, 3) == row["after"]["concept_rate_on_its_prompts"]
    kept = row["after"]["others_right_by_value"]
    assert "red" not in kept and sum(int(v.split("/")[1]) for v in kept.values()) == 8


@pytest.mark.parametrize("args,message", [(["--concept", "teal"], "teal"), (["--images", "0"], "--images")])
def test_erase_by_prompt_length_refuses_bad_input_in_one_line(capsys, args, message):
    from concepts.toy.erase_prompt_length import main as erase_by_prompt_main

    assert erase_by_prompt_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
