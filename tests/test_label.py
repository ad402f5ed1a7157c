"""`python -m concepts label` on tiny stand-ins of the published worlds (their real hook names and
checkpoint formats, through a Hub cache): dictionaries and top images for every SAE, resumable,
sized up front, and read back by the registry's `labels` entry from a folder or a Hub repo."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hubcache import add_to_hub_cache
from standins import PROMPTS, WORLDS, build_stand_ins, write_prompts

from concepts.cli import main
from concepts.registry import Registry
from concepts.saes import load_entry
from concepts.steer import top_images as top_images_module
from concepts.steer.top_images import world_top_images

LABEL_ARGS = ["--min-fires", "3", "--chunk-prompts", "8", "--device", "cpu"]


def run_cli(*args: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, (json.loads(out.getvalue()) if out.getvalue().strip() else None), err.getvalue()


@pytest.fixture(scope="module")
def stand_ins(hub_cache, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stand-ins")
    registry = build_stand_ins(hub_cache, root)
    prompts = write_prompts(root / "prompts.txt")
    runs = {}
    for world in WORLDS:
        out = root / f"labels-{world}"
        code, report, err = run_cli("--registry", str(registry), "label", "--model", world, "--prompts", str(prompts), "--out", str(out), *LABEL_ARGS)
        assert code == 0, err
        runs[world] = (out, report)
    return {"root": root, "registry": registry, "prompts": prompts, "runs": runs}


@pytest.mark.parametrize("world", WORLDS)
def test_every_sae_of_the_world_gets_a_dictionary_and_top_images(stand_ins, world):
    out, report = stand_ins["runs"][world]
    entries = Registry.from_file(stand_ins["registry"]).get(world).saes
    assert report["prompts"] == len(PROMPTS) and report["plan"]["fits"] and report["plan"]["unet_passes"] > 0
    index = json.loads((out / "top_images" / "index.json").read_text())
    assert index["count"] == len(PROMPTS) and max(index["tile"]) <= 128
    labelled = 0
    for e in entries:
        key = f"{e.block}/{e.window}/{e.branch}"
        dictionary = json.loads((out / "concepts" / e.block / e.window / e.branch / "concepts.json").read_text())
        assert dictionary["meta"]["method"] == "prompt-word co-occurrence" and dictionary["summary"]["alive"] > 0
        assert key in index["saes"] and report["dictionaries"][key]["alive"] == dictionary["summary"]["alive"]
        labelled += dictionary["summary"]["labelled"]
    assert labelled > 0, "no feature of any SAE got a word"
    assert report["registry_entry"] == {"labels": {"path": str(out.resolve())}}


def labelled_registry(stand_ins, labels: dict) -> Registry:
    data = json.loads(stand_ins["registry"].read_text())
    for spec in data["models"].values():
        spec["labels"] = labels
    path = stand_ins["root"] / f"registry-{abs(hash(json.dumps(labels)))}.json"
    path.write_text(json.dumps(data))
    top_images_module._LOADED.clear()  # the cache is per process and world name
    return Registry.from_file(path)


@pytest.mark.parametrize("world", WORLDS)
def test_the_registry_labels_entry_feeds_dictionaries_and_top_images(stand_ins, world):
    out, _ = stand_ins["runs"][world]
    registry = labelled_registry(stand_ins, {"path": str(out)})
    world_ = registry.get(world)
    for entry in world_.saes:
        loaded = load_entry(world_, entry)
        written = json.loads((out / "concepts" / entry.block / entry.window / entry.branch / "concepts.json").read_text())
        assert loaded.concepts == written
    entry = world_.saes[0]
    first = int(next(f["id"] for f in loaded.concepts["features"] if f["fires"] > 0))
    tops = world_top_images(world_).for_feature((entry.block, entry.window, entry.branch), first)
    assert tops and all(t.prompt in PROMPTS for t in tops) and tops[0].value >= tops[-1].value


def test_labels_from_a_hub_repo(stand_ins, hub_cache):
    out, _ = stand_ins["runs"]["sdxl-turbo-unbox"]
    files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file() and p.parts[len(out.parts)] != "work"}
    add_to_hub_cache(hub_cache, "lab/unbox-labels", files)  # what --push-to-hub uploads
    world = labelled_registry(stand_ins, {"repo": "lab/unbox-labels"}).get("sdxl-turbo-unbox")
    loaded = load_entry(world, world.saes[0])
    assert loaded.concepts is not None and loaded.concepts["meta"]["block"] == world.saes[0].block
    assert world_top_images(world).has((world.saes[0].block, "all", "cond"))


def test_a_rerun_resumes_and_gives_the_same_labels(stand_ins, tmp_path):
    registry, prompts = str(stand_ins["registry"]), str(stand_ins["prompts"])
    out = tmp_path / "resumed"
    args = ["--registry", registry, "label", "--model", "sdxl-turbo-unbox", "--prompts", prompts, "--out", str(out), *LABEL_ARGS]
    assert run_cli(*args)[0] == 0
    first = {p.relative_to(out): p.read_bytes() for p in (out / "concepts").rglob("concepts.json")}
    (out / "work" / "chunk-00002.npz").unlink()  # as if the run had stopped before its last chunk
    kept = (out / "work" / "chunk-00000.npz").stat().st_mtime_ns
    code, _, err = run_cli(*args[:2], "-v", *args[2:])
    assert code == 0 and err.count("chunk ") == 1, err  # only the missing chunk was generated again
    assert (out / "work" / "chunk-00000.npz").stat().st_mtime_ns == kept
    assert {p.relative_to(out): p.read_bytes() for p in (out / "concepts").rglob("concepts.json")} == first
    code, _, err = run_cli(*args, "--seed", "5")
    assert code == 2 and "other settings" in err and "seed" in err


def test_dry_run_sizes_the_run_and_writes_nothing(stand_ins, tmp_path):
    out = tmp_path / "planned"
    code, report, _ = run_cli("--registry", str(stand_ins["registry"]), "label", "--model", "sd14-saeuron", "--prompts", str(stand_ins["prompts"]),
                              "--out", str(out), "--dry-run", *LABEL_ARGS)
    assert code == 0 and report["dry_run"] and not (out / "work").exists()
    plan = report["plan"]
    assert plan["chunks"] == 3 and plan["unet_passes"] == 3 * 4 * 2  # 3 batches of 8 × 4 steps × both CFG halves
    assert plan["total_bytes"] > len(PROMPTS) * 128 * 4 * 2 and plan["free_bytes"] > 0


@pytest.mark.parametrize("args, field", [
    (["--prompts-per-batch", "0"], "prompts_per_batch"),
    (["--tile", "4"], "tile"),
    (["--push-to-hub", "not a repo!"], "push_to_hub"),
    (["--model", "no-such-world"], "model"),
])
def test_bad_arguments_name_the_field(stand_ins, tmp_path, args, field):
    base = ["--registry", str(stand_ins["registry"]), "label", "--prompts", str(stand_ins["prompts"]), "--out", str(tmp_path / "x")]
    code, _, err = run_cli(*base, *args)
    assert code == 2 and field in err and "Traceback" not in err


def test_push_without_the_hub_is_a_clear_error(stand_ins):
    out, _ = stand_ins["runs"]["sdxl-turbo-unbox"]
    from concepts.errors import HubUnavailableError
    from concepts.steer.label import push_labels, release_files

    files = release_files(out)
    assert "top_images/index.json" in files and not any(f.startswith("work/") for f in files)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_labels(out, "lab/unbox-labels")
