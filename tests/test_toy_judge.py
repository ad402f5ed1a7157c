"""The shipped judge reads every attribute of fresh rendered images at ≥ 0.99 accuracy."""

from __future__ import annotations

import json

import pytest

from concepts.errors import CheckpointError
from concepts.registry import CHECKPOINTS_DIR
from concepts.toy.judge import accuracy, load_judge, render_dataset

JUDGE = CHECKPOINTS_DIR / "toy-shapes" / "judge"


def test_shipped_judge_is_accurate_on_unseen_renders():
    judge = load_judge(JUDGE)
    test = render_dataset(400, seed=20261124)  # a seed neither training nor its test set used
    scores = accuracy(judge, test)
    assert set(scores) == {"shape", "colour", "size", "position", "background", "texture"}
    for name, value in scores.items():
        assert value >= 0.99, (name, value)


def test_judge_reads_held_out_combinations_too():
    judge = load_judge(JUDGE)
    scores = accuracy(judge, render_dataset(200, seed=7, split="held_out"))
    assert min(scores.values()) >= 0.98, scores


def test_broken_judge_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_judge(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"widths": [16, 32, 64], "hidden": 128, "attributes": {"shape": ["blob"]}}))
    (tmp_path / "model.safetensors").write_bytes((JUDGE / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="other attribute values"):
        load_judge(tmp_path)
