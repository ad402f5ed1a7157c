"""`python -m concepts.train`: prompts → disk plan → activations → SAEs → word dictionaries → card → push.

One end-to-end run on the tiny pipeline (one block, two windows, two DDIM steps, 32 px) is shared
by the module; the Hub (datasets and pushes) is exercised offline through the Hub cache layout and a
monkeypatched `HfApi`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from concepts.dictionary import concept_features
from concepts.errors import HubUnavailableError, InvalidInputError
from concepts.registry import Registry
from concepts.sae import SAEConfig, TopKSAE, load_concepts, load_native
from concepts.train import main
from concepts.training import ShardReader, ShardWriter
from concepts.training.collect import CollectConfig
from concepts.training.prompt_sources import PromptSpec, load_prompts, token_fitter
from concepts.training.word_dictionary import WordDictionaryConfig, prompt_activations, prompt_words, word_dictionary
from hubcache import add_to_hub_cache

MID = "mid_block.attentions.0"
PROMPTS = ["a red circle", "a blue square", "", "a red circle", "a green triangle on the left", "a red square",
           "a blue circle", "a green circle", "a red triangle", "a blue triangle"]
FAST = ["--blocks", MID, "--windows", "early", "final", "--steps", "2", "--height", "32", "--width", "32", "--batch-size", "128",
        "--min-fires", "2", "--min-word-prompts", "2", "--label-precision", "0.5", "--device", "cpu", "--train-device", "cpu"]


def run_cli(*argv: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def trained_run(tiny_folder, prompt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-run")
    code, result, err = run_cli("--prompts", str(prompt_file), "--pipeline", str(tiny_folder), *FAST, "--out", str(out))
    assert code == 0, err
    return out, result


def test_prompt_file_run_writes_loadable_saes_and_word_dictionaries(trained_run, tiny_folder):
    out, result = trained_run
    assert result["prompts"]["count"] == 8 and result["prompts"]["duplicates"] == 1 and result["prompts"]["blank"] == 1
    assert (out / "prompts.txt").read_text().splitlines()[0] == "a red circle"
    assert [(r["block"], r["window"], r["branch"]) for r in result["saes"]] == [(MID, "early", "cond"), (MID, "final", "cond")]
    words = {w for p in PROMPTS for w in p.split()}
    for row in result["saes"]:
        sae = load_native(row["folder"])
        assert (sae.cfg.block, sae.cfg.window, sae.cfg.branch, sae.cfg.k) == (MID, row["window"], "cond", 10)
        assert sae.cfg.d_in == 64 and sae.cfg.num_latents == 256 and sae.cfg.base_model == tiny_folder.name
        assert 0 < sae.cfg.stats["explained_variance"] <= 1
        concepts = load_concepts(row["folder"])
        assert concepts["meta"]["method"] == "prompt-word co-occurrence" and concepts["summary"]["images"] == 8
        assert len(concepts["features"]) == 256
        assert set(concepts["concepts"]) <= words - {"a", "on", "the", "left"}  # plain words, stopwords out
        for label in concepts["concepts"]:
            assert concept_features(concepts, label)  # what steering looks up
        assert row["dictionary"]["labelled"] == concepts["summary"]["labelled"]


def test_disk_plan_matches_what_the_run_wrote(trained_run):
    out, result = trained_run
    plan = {(f["block"], f["window"], f["branch"]): f for f in result["plan"]["per_sae"]}
    written = 0
    for row in result["saes"]:
        key = (row["block"], row["window"], row["branch"])
        shards = out / "activations" / row["block"] / row["window"] / row["branch"]
        assert plan[key]["rows"] == ShardReader(shards).rows == 8 * 8 * 8  # mid block: 8x8 at 32 px
        on_disk = sum(p.stat().st_size for p in shards.rglob("*") if p.is_file())
        assert on_disk <= plan[key]["activation_bytes"] < 1.5 * on_disk
        written += on_disk + sum(p.stat().st_size for p in Path(row["folder"]).rglob("*") if p.is_file())
    assert written <= result["plan"]["total_bytes"] < 3 * written
    assert result["plan"]["fits"] and result["plan"]["needed_bytes"] == result["plan"]["total_bytes"]


def test_card_and_registry_entry_describe_the_run(trained_run):
    out, result = trained_run
    card = (out / "README.md").read_text()
    assert "OWNER/NAME" in card and MID in card and "8 from file" in card and "explained variance" in card
    entry = json.loads((out / "registry-entry.json").read_text())
    registry = Registry.from_dict({"models": entry}, base_dir=out)
    world = registry.get(result["model"])
    assert world.sae(MID, "final").source.path == str((out / "saes" / MID / "final" / "cond").resolve())
    assert world.defaults.steps == 2 and world.defaults.height == 32


def test_rerun_resumes_without_sampling_and_pushes(trained_run, tiny_folder, prompt_file, monkeypatch):
    import concepts.training.collect as collect_module
    from huggingface_hub import HfApi

    out, first = trained_run

    def no_sampling(*args, **kwargs):
        raise AssertionError("a finished collection must not sample again")

    calls: dict[str, dict] = {}
    monkeypatch.setattr(collect_module, "sample", no_sampling)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create_repo", {"repo_id": repo_id, **kw}))
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, **kw: calls.setdefault("create_branch", {"repo_id": repo_id, **kw}))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.setdefault("upload_folder", kw) and "https://hub/commit/1")
    code, result, err = run_cli("--prompts", str(prompt_file), "--pipeline", str(tiny_folder), *FAST, "--out", str(out),
                                "--push-to-hub", "me/tiny-saes", "--private", "--revision", "v1")
    assert code == 0, err
    assert [r["explained_variance"] for r in result["saes"]] == [r["explained_variance"] for r in first["saes"]]
    assert calls["create_repo"] == {"repo_id": "me/tiny-saes", "private": True, "exist_ok": True, "repo_type": "model"}
    assert calls["create_branch"]["branch"] == "v1"
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "me/tiny-saes" and upload["revision"] == "v1" and Path(upload["folder_path"]) == out
    expected = ["README.md", "registry-entry.json"] + [f"saes/{MID}/{w}/cond/{f}" for w in ("early", "final") for f in ("cfg.json", "concepts.json", "sae.safetensors")]
    assert sorted(upload["allow_patterns"]) == sorted(expected) == sorted(result["pushed"]["files"])
    assert all((out / f).is_file() for f in expected)
    entry = json.loads((out / "registry-entry.json").read_text())
    sae = next(iter(entry.values()))["saes"][0]
    assert (sae["repo"], sae["subfolder"], sae["revision"]) == ("me/tiny-saes", f"saes/{MID}/early/cond", "v1")
    assert '"repo": "me/tiny-saes"' in (out / "README.md").read_text()


def test_resume_with_other_collection_settings_is_refused(trained_run, tiny_folder, prompt_file):
    out, _ = trained_run
    fast = list(FAST)
    fast[fast.index("--steps") + 1] = "3"
    code, result, err = run_cli("--prompts", str(prompt_file), "--pipeline", str(tiny_folder), *fast, "--out", str(out))
    assert code == 2 and result is None
    assert err.startswith("error: steps:") and "steps=2" in err and "new --out" in err


def test_hub_dataset_through_the_cli(hub_cache, tiny_folder, tmp_path):
    _dataset(hub_cache, "someone/cli-prompts", {"data/p.jsonl": b'{"text": "a dog"}\n{"text": "a cat"}\n{"text": "a dog"}\n'})
    code, result, err = run_cli("--hub-dataset", "someone/cli-prompts", "--pipeline", str(tiny_folder), "--blocks", MID,
                                "--out", str(tmp_path / "x"), "--dry-run")
    assert code == 0, err
    assert result["prompts"]["count"] == 2 and result["prompts"]["files"] == ["data/p.jsonl"]
    assert result["prompts"]["source"] == "Hub dataset someone/cli-prompts"
    assert result["plan"]["rows"] == 2 * 3 * 16 * 16


def test_dry_run_plans_without_writing(tiny_folder, prompt_file, tmp_path):
    out = tmp_path / "never"
    code, result, err = run_cli("--prompts", str(prompt_file), "--pipeline", str(tiny_folder), "--blocks", MID, "up_blocks.1.attentions.0",
                                "--branches", "cond", "uncond", "--steps", "10", "--steps-per-window", "all", "--dtype", "float32",
                                "--out", str(out), "--dry-run")
    assert code == 0, err
    assert result["dry_run"] and not out.exists()
    per = {(f["block"], f["window"], f["branch"]): f for f in result["plan"]["per_sae"]}
    assert len(per) == 2 * 3 * 2
    # 10 steps: early t ∈ [0.6, 1] holds steps 0-3, middle 4-7, final 8-9
    assert [per[(MID, w, "cond")]["steps"] for w in ("early", "middle", "final")] == [4, 4, 2]
    assert per[(MID, "early", "uncond")]["rows"] == 8 * 16 * 16 * 4
    assert per[("up_blocks.1.attentions.0", "final", "cond")]["rows"] == 8 * 32 * 32 * 2
    assert per[(MID, "final", "cond")]["activation_bytes"] >= 8 * 256 * 2 * 64 * 4
    assert result["plan"]["rows"] == sum(f["rows"] for f in per.values())


def test_too_little_free_space_is_refused_before_sampling(tiny_folder, prompt_file, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    code, result, err = run_cli("--prompts", str(prompt_file), "--pipeline", str(tiny_folder), *FAST, "--out", str(tmp_path / "run"))
    assert code == 2 and result is None
    assert err.startswith("error: out: the run needs") and "--no-disk-check" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- Hub datasets


def _dataset(hub_cache: Path, repo: str, files: dict[str, bytes]) -> None:
    add_to_hub_cache(hub_cache, repo, files, repo_type="dataset")


def test_hub_dataset_csv_and_jsonl_read_offline(hub_cache):
    csv_rows = "id,prompt_text\n1,a dog on a beach\n2,\"a cat, sleeping\"\n3,a dog on a beach\n4,   \n"
    jsonl = "\n".join(json.dumps({"prompt": p, "n": i}) for i, p in enumerate(["a fox", "a dog on a beach", "an owl"]))
    _dataset(hub_cache, "someone/prompts", {"data/a.csv": csv_rows.encode(), "data/b.jsonl": jsonl.encode(), "README.md": b"# prompts"})
    got = load_prompts(PromptSpec(hub_dataset="someone/prompts", column="prompt_text", file_pattern="data/*.csv"))
    assert got.prompts == ["a dog on a beach", "a cat, sleeping"] and (got.duplicates, got.blank) == (1, 1)
    assert got.files == ["data/a.csv"]
    jsonl_only = load_prompts(PromptSpec(hub_dataset="someone/prompts", file_pattern="*.jsonl", max_prompts=2))
    assert jsonl_only.prompts == ["a fox", "a dog on a beach"]  # the "prompt" column is found by itself


def test_hub_dataset_parquet(hub_cache, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"caption": ["a red bus", "a yellow taxi", None], "width": [1, 2, 3]}), path)
    _dataset(hub_cache, "someone/parquet-prompts", {"data/train-00000.parquet": path.read_bytes()})
    got = load_prompts(PromptSpec(hub_dataset="someone/parquet-prompts"))
    assert got.prompts == ["a red bus", "a yellow taxi"] and got.blank == 1


def test_wrong_column_lists_the_columns(hub_cache, tiny_folder, tmp_path):
    _dataset(hub_cache, "someone/cols", {"p.csv": b"id,prompt_text,score\n1,a dog,3\n"})
    code, result, err = run_cli("--hub-dataset", "someone/cols", "--dataset-column", "prompt", "--pipeline", str(tiny_folder), "--blocks", MID,
                                "--out", str(tmp_path / "x"), "--dry-run")
    assert code == 2 and result is None
    assert "someone/cols/p.csv has no column 'prompt'" in err and "id, prompt_text, score" in err


def test_missing_dataset_names_it_and_the_fix():
    with pytest.raises(HubUnavailableError, match=r"Hub dataset someone/absent .*--repo-type dataset"):
        load_prompts(PromptSpec(hub_dataset="someone/absent"))


def test_bad_prompt_specs_name_the_field(tmp_path):
    with pytest.raises(InvalidInputError, match="exactly one"):
        PromptSpec()
    with pytest.raises(InvalidInputError, match="max_prompts"):
        PromptSpec(file="x.txt", max_prompts=0)
    with pytest.raises(InvalidInputError) as info:
        PromptSpec(hub_dataset="../etc")
    assert info.value.field == "hub_dataset"


def test_overlong_prompts_are_trimmed_or_skipped(tiny_pipe, tmp_path):
    fit = token_fitter(tiny_pipe.tokenizer)
    long = " ".join(["red circle"] * 60)  # two tokens a repeat in the tiny vocabulary: 120 + BOS/EOS
    trimmed = fit(long)
    assert trimmed is not None and long.startswith(trimmed) and len(tiny_pipe.tokenizer(trimmed)["input_ids"]) <= 77
    assert len(trimmed.split()) == 75
    path = tmp_path / "p.txt"
    path.write_text(f"a red circle\n{long}\n")
    assert load_prompts(PromptSpec(file=str(path)), fit).trimmed == 1
    skipped = load_prompts(PromptSpec(file=str(path), overlong="skip"), fit)
    assert skipped.prompts == ["a red circle"] and skipped.skipped == 1


# ---------------------------------------------------------------- word dictionary


def test_word_dictionary_labels_the_dog_feature():
    rng = np.random.default_rng(0)
    animals = ["dog", "cat", "horse", "bird"]
    prompts = [f"a photo of a {'dogs' if i % 8 == 0 else animals[i % 4]} in a {['park', 'field', 'room'][i % 3]}" for i in range(48)]
    acts = rng.uniform(0, 0.05, size=(48, 8))
    acts[:, 5] = rng.uniform(0.5, 1.0, size=48)  # a feature firing everywhere
    dog = np.array(["dog" in p for p in prompts])
    acts[:, 3] = np.where(dog, rng.uniform(0.6, 1.0, size=48), 0.0)  # fires only with a dog
    cfg = WordDictionaryConfig()
    words = prompt_words(prompts, cfg)
    assert words[0] == {"dog", "park"}  # "dogs" joins "dog"; "photo", "a", "of", "in" are dropped
    dictionary = word_dictionary(acts, prompts, cfg)
    feature = dictionary["features"][3]
    assert (feature["label"], feature["labelled"], feature["precision"], feature["recall"]) == ("dog", True, 1.0, 1.0)
    assert concept_features(dictionary, "dog") == [3]
    assert not dictionary["features"][5]["labelled"]  # firing on every prompt names no word


def test_vocabulary_restricts_the_words():
    prompts = ["a dog in a park", "a dog in a field", "a cat in a park", "a cat in a field"] * 2
    cfg = WordDictionaryConfig(vocabulary=frozenset({"dog", "cat"}), min_word_prompts=1)
    assert prompt_words(prompts, cfg)[0] == {"dog"}


def test_prompt_activations_regroup_rows_by_prompt(tmp_path):
    """Every step of a window recorded, two prompts a batch: rows are step-major inside a batch."""
    n_prompts, positions = 5, 3
    collect = CollectConfig(blocks=(MID,), windows=("early",), steps=5, prompts_per_batch=2, chunk_prompts=4, steps_per_window="all")
    steps = sorted(collect.window_steps()["early"])
    assert len(steps) == 2
    rows = []
    for chunk_start in (0, 4):
        for start in range(chunk_start, min(chunk_start + 4, n_prompts), 2):
            batch = range(start, min(start + 2, chunk_start + 4, n_prompts))
            for step in steps:
                for prompt in batch:
                    for pos in range(positions):  # value: prompt id in column 0, the step in column 1
                        rows.append([prompt + 1.0, step + pos / 10, 0.0, 0.0])
    from dataclasses import asdict

    meta = {"config": asdict(collect), "window": "early", "prompts_done": n_prompts}
    with ShardWriter(tmp_path, 4, rows_per_shard=7, dtype=torch.float32, meta=meta) as writer:
        writer.add(torch.tensor(rows))
    sae = TopKSAE(SAEConfig(d_in=4, num_latents=4, k=4))
    with torch.no_grad():  # encoder = identity, so an activation is the row itself (ReLU'd)
        sae.encoder.weight.copy_(torch.eye(4))
        sae.encoder.bias.zero_()
        sae.b_dec.zero_()
    acts = prompt_activations(sae, tmp_path, n_prompts, max_rows=positions)
    assert acts[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert np.allclose(acts[:, 1], max(steps) + (positions - 1) / 10)
