"""Prompts from a Hub dataset are streamed file by file (issue 28): a run that needs 150 prompts of a
three-file dataset fetches two files, never the third. The Hub's two calls (listing, file download)
are stood in for by a local folder that records what was asked; everything else is the real path."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest

import concepts.training.prompt_sources as prompt_sources
from concepts.errors import HubUnavailableError
from concepts.training.prompt_sources import PromptSpec, load_prompts


class LocalHub:
    """A dataset repo served from a folder; `fetched` lists the files downloaded, in order."""

    def __init__(self, root: Path) -> None:
        self.root, self.fetched, self.fail_on = root, [], None

    def list_repo_files(self, repo_id, repo_type=None, revision=None):
        assert repo_type == "dataset"
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def hf_hub_download(self, repo_id, filename, repo_type=None, revision=None, **_):
        if filename == self.fail_on:
            import httpx

            raise httpx.ConnectError("connection refused")
        self.fetched.append(filename)
        return str(self.root / filename)


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    for part in range(3):
        (root / "data" / f"train-{part:05d}.txt").write_text("\n".join(f"prompt {part} {i}" for i in range(100)) + "\n")
    (root / "README.md").write_text("# prompts\n")
    hub = LocalHub(root)
    monkeypatch.setattr(prompt_sources, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", hub.list_repo_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    return hub


def test_reading_stops_fetching_once_it_has_the_prompts_it_needs(local_hub):
    got = load_prompts(PromptSpec(hub_dataset="someone/big-prompts", max_prompts=150))
    assert len(got.prompts) == 150 and got.prompts[100] == "prompt 1 0"
    assert local_hub.fetched == ["data/train-00000.txt", "data/train-00001.txt"]
    assert got.summary()["files"] == local_hub.fetched


def test_a_pattern_picks_the_files_and_every_file_is_read_without_a_cap(local_hub):
    got = load_prompts(PromptSpec(hub_dataset="someone/big-prompts", file_pattern="data/train-0000[12].txt"))
    assert len(got.prompts) == 200 and local_hub.fetched == ["data/train-00001.txt", "data/train-00002.txt"]


def test_the_hub_failing_mid_stream_is_one_clear_error(local_hub):
    local_hub.fail_on = "data/train-00001.txt"
    with pytest.raises(HubUnavailableError, match="could not reach the Hub for Hub dataset someone/big-prompts"):
        load_prompts(PromptSpec(hub_dataset="someone/big-prompts", max_prompts=150))
