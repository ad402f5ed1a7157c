"""Checkpoint safety: no pickle except `torch.load(weights_only=True)`, no remote code, and no name
read from a user or from a third-party checkpoint can point outside its folder or the Hub cache."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from test_top_images import KEY, table

from concepts.errors import CheckpointError, InvalidInputError
from concepts.hub import member_path, validate_repo_id, validate_subfolder
from concepts.steer.top_images import INDEX, load_top_images, save_top_images

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([ROOT / "app.py", *(ROOT / "concepts").rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def call_name(node: ast.Call) -> str:
    return ast.unparse(node.func)


def test_the_source_tree_is_scanned():
    assert ROOT / "concepts" / "sae" / "unbox_format.py" in SOURCES  # the one place .pth files are read
    assert len(SOURCES) > 40


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in SOURCES:
        for node in calls(path):
            if call_name(node) == "torch.load":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
                if not safe:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_no_pickle_and_no_remote_code():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports a pickle library")
            if isinstance(node, ast.keyword) and node.arg in ("trust_remote_code", "allow_pickle"):
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno} {node.arg}")
    assert offenders == []


# -- user-typed repo ids and folders ---------------------------------------------------------------
@pytest.mark.parametrize("repo", ["CompVis/stable-diffusion-v1-4", "bcywinski/SAeUron", "surokpro2/sdxl-saes", "a/b.c_d-e"])
def test_real_repo_ids_pass(repo):
    assert validate_repo_id(repo) == repo


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab./\\~:%-_ \x00")), max_size=16))
def test_a_repo_id_that_passes_names_one_cache_folder(repo):
    """Whatever is typed, an accepted id is exactly owner/name with no component that moves up or away."""
    try:
        validate_repo_id(repo)
    except InvalidInputError as exc:
        assert str(exc).startswith("repo:")
        return
    owner, name = repo.split("/")
    for part in (owner, name):
        assert part not in ("", ".", "..") and not part.startswith(".") and "\\" not in part and "\x00" not in part


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "~", "c:", "x\\y"]), min_size=1, max_size=4).map("/".join))
def test_an_accepted_subfolder_stays_below_its_repo(sub):
    try:
        checked = validate_subfolder(sub)
    except InvalidInputError:
        return
    if checked is None:
        return
    base = Path("/cache/repo")
    resolved = (base / checked).resolve()
    assert resolved == base or base in resolved.parents


# -- names read from a third-party checkpoint ------------------------------------------------------
@pytest.mark.parametrize("name", ["../secret.safetensors", "/etc/passwd", "a/../../b", "a\\..\\b", "", "a//b", None, 7])
def test_member_names_that_leave_the_folder_are_refused(tmp_path, name):
    with pytest.raises(CheckpointError, match="index.json"):
        member_path(tmp_path, name, "index.json entry")


def test_member_path_accepts_plain_relative_names(tmp_path):
    assert member_path(tmp_path, "tops/mid.safetensors", "x") == tmp_path / "tops" / "mid.safetensors"


def test_a_crafted_top_image_index_cannot_read_outside_its_folder(tmp_path):
    cache = tmp_path / "cache"
    save_top_images(cache, table(), {"seed": 0}, top=3)
    outside = tmp_path / "outside.safetensors"  # a valid file the index tries to reach
    save_file({"ids": torch.zeros(6, 3, dtype=torch.int32), "values": torch.ones(6, 3)}, str(outside))
    index = json.loads((cache / INDEX).read_text())
    index["saes"]["/".join(KEY)] = "../outside.safetensors"
    (cache / INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        load_top_images(cache).for_feature(KEY, 0)


def test_a_corrupt_top_image_file_is_named_not_a_traceback(tmp_path):
    save_top_images(tmp_path, table(), {"seed": 0}, top=3)
    name = json.loads((tmp_path / INDEX).read_text())["saes"]["/".join(KEY)]
    (tmp_path / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_top_images(tmp_path).for_feature(KEY, 0)


def test_pickled_objects_in_pth_files_are_refused(tmp_path):
    """The one third-party pickle format (sdxl-unbox) goes through weights_only: code objects are refused."""
    from concepts.sae.unbox_format import load_unbox

    (tmp_path / "config.json").write_text(json.dumps({"n_dirs_local": 4, "d_model": 2, "k": 1}))
    torch.save({"bad": np.ones(2)}, tmp_path / "state_dict.pth")  # a numpy array needs the full unpickler
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        load_unbox(tmp_path)
