"""Top-image cache: images and per-feature rankings survive a save and load, bad caches are named."""

from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import CheckpointError, UnknownNameError
from concepts.steer.feature_table import FeatureTable
from concepts.steer.top_images import load_top_images, save_top_images

KEY = ("mid_block.attentions.0", "middle", "cond")


def table(images: int = 10, features: int = 6) -> FeatureTable:
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, size=(images, 8, 8, 3), dtype=np.uint8)
    acts = rng.random((images, features)).astype(np.float32)
    acts[:, 5] = 0.0  # a dead feature
    return FeatureTable([f"prompt {i}" for i in range(images)], {KEY: acts}, pictures)


def test_top_images_round_trip_in_order(tmp_path):
    t = table()
    save_top_images(tmp_path, t, {"seed": 0}, top=3)
    cache = load_top_images(tmp_path)
    tops = cache.for_feature(KEY, 2)
    best = np.argsort(-t.activations[KEY][:, 2])[:3]
    assert [x.prompt for x in tops] == [f"prompt {i}" for i in best]
    assert [x.value for x in tops] == sorted((x.value for x in tops), reverse=True)
    assert np.array_equal(np.asarray(tops[0].image), t.images[best[0]])
    assert cache.for_feature(KEY, 5) == []  # never fired: nothing to show
    with pytest.raises(UnknownNameError, match="feature"):
        cache.for_feature(KEY, 6)
    with pytest.raises(UnknownNameError, match="mid_block.attentions.0/middle/cond"):
        cache.for_feature(("mid_block.attentions.0", "early", "cond"), 0)


def test_missing_or_foreign_cache_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="missing or unreadable"):
        load_top_images(tmp_path)
    save_top_images(tmp_path, table(), {})
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="format"):
        load_top_images(tmp_path)


def test_a_models_cache_can_live_on_the_hub(hub_cache, tmp_path):
    from hubcache import add_folder_to_hub_cache

    from concepts.registry import Registry
    from concepts.steer.top_images import world_top_images

    t = table()
    save_top_images(tmp_path / "cache", t, {"model": "sd14-like"})
    add_folder_to_hub_cache(hub_cache, "concept-lab/top-images-test", tmp_path / "cache", prefix="sd14")
    registry = Registry.from_dict({"models": {"hub-top": {
        "pipeline": {"repo": "concept-lab/not-needed"},
        "top_images": {"repo": "concept-lab/top-images-test", "subfolder": "sd14"},
    }}})
    tops = world_top_images(registry.get("hub-top")).for_feature(KEY, 0, 2)
    best = int(np.argmax(t.activations[KEY][:, 0]))
    assert tops[0].prompt == f"prompt {best}"


def test_top_images_cli_caches_every_sae_of_a_model(tmp_path):
    import io
    import json

    from concepts.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["top-images", "--prompts", str(prompts), "--steps", "3", "--top", "2", "--out", str(tmp_path / "cache")], out, err)
    assert code == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["images"] == 2 and report["saes"] == 18
    cache = load_top_images(tmp_path / "cache")
    assert cache.index["count"] == 2 and cache.image(1).size == (64, 64)
    assert main(["top-images", "--prompts", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")], io.StringIO(), err) == 2
    assert "prompts" in err.getvalue()
