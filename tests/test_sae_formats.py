"""SAE checkpoint formats: our native (sparsify) layout and sdxl-unbox, and every way they break."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from concepts.errors import CheckpointError
from concepts.sae import SAEConfig, TopKSAE, load_concepts, load_native, load_unbox, save_native


def saved_sae(folder: Path) -> TopKSAE:
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=8, k=3, block="mid_block.attentions.0", window="early", stats={"explained_variance": 0.5}, extra={"signed": False})
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.encoder.bias.uniform_(-0.1, 0.1)
        sae.b_dec.normal_()
    save_native(sae, folder, concepts={"features": {"3": {"label": "red"}}})
    return sae


def test_native_round_trip_is_exact(tmp_path):
    sae = saved_sae(tmp_path)
    loaded = load_native(tmp_path)
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.cfg == sae.cfg
    assert load_concepts(tmp_path) == {"features": {"3": {"label": "red"}}}
    x = torch.randn(5, 8)
    assert torch.equal(sae.encode_dense(x), loaded.encode_dense(x))


def test_sparsify_written_folder_loads(tmp_path):
    cfg = {"expansion_factor": 2, "normalize_decoder": True, "num_latents": 0, "k": 2, "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": 4}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": torch.randn(8, 4), "encoder.bias": torch.zeros(8), "W_dec": torch.randn(8, 4), "b_dec": torch.zeros(4)}
    save_file(tensors, str(tmp_path / "sae.safetensors"))
    sae = load_native(tmp_path)
    assert sae.num_latents == 8 and sae.cfg.k == 2 and sae.cfg.extra["multi_topk"] is False
    assert torch.equal(sae.W_dec, tensors["W_dec"])
    assert load_concepts(tmp_path) is None


def break_cfg(folder: Path, text: str) -> None:
    (folder / "cfg.json").write_text(text)


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda f: break_cfg(f, "{not json"), "cfg.json"),
        (lambda f: break_cfg(f, json.dumps({"k": 3, "num_latents": 32})), "d_in"),
        (lambda f: break_cfg(f, json.dumps({"d_in": 8, "num_latents": 32, "k": 3, "skip_connection": True})), "skip_connection"),
        (lambda f: break_cfg(f, json.dumps({"d_in": 8, "num_latents": 32, "k": 99})), "k"),
        (lambda f: (f / "sae.safetensors").unlink(), "sae.safetensors"),
        (lambda f: (f / "cfg.json").unlink(), "cfg.json"),
        (lambda f: (f / "sae.safetensors").write_bytes((f / "sae.safetensors").read_bytes()[:200]), "sae.safetensors"),
        (lambda f: save_file({"encoder.weight": torch.zeros(32, 8), "W_dec": torch.zeros(32, 8), "b_dec": torch.zeros(8)}, str(f / "sae.safetensors")), "encoder.bias"),
        (lambda f: save_file({"encoder.weight": torch.zeros(32, 8), "encoder.bias": torch.zeros(32), "W_dec": torch.zeros(32, 9), "b_dec": torch.zeros(8)}, str(f / "sae.safetensors")), "W_dec"),
    ],
)
def test_broken_native_checkpoints_are_named(tmp_path, damage, words):
    saved_sae(tmp_path)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=words):
        load_native(tmp_path)


def write_unbox(folder: Path, n: int = 5120, d: int = 1280, state: dict | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"n_dirs_local": n, "d_model": d, "k": 10, "auxk": 256, "dead_steps_threshold": 2000}))
    torch.manual_seed(0)
    raw = state or {
        "encoder.weight": torch.randn(n, d) / d**0.5,
        "decoder.weight": torch.randn(d, n) / d**0.5,
        "pre_bias": torch.randn(d),
        "latent_bias": torch.randn(n) * 0.01,
        "stats_last_nonzero": torch.zeros(n, dtype=torch.long),
    }
    torch.save({"state_dict": raw}, folder / "state_dict.pth")
    torch.save(torch.rand(n), folder / "mean.pt")
    torch.save(torch.rand(n), folder / "std.pt")
    return raw


def test_unbox_loads_with_the_real_shapes_and_maps_weights(tmp_path):
    raw = write_unbox(tmp_path)
    unboxed = load_unbox(tmp_path, block="down_blocks.2.attentions.1")
    sae = unboxed.sae
    assert (sae.d_in, sae.num_latents, sae.cfg.k) == (1280, 5120, 10)
    assert unboxed.feature_mean.shape == (5120,) and unboxed.feature_std.shape == (5120,)
    x = torch.randn(3, 1280)
    # by hand, from the raw tensors: relu(W_enc (x − pre_bias) + latent_bias), top 10, decode + pre_bias
    pre = torch.relu((x - raw["pre_bias"]) @ raw["encoder.weight"].T + raw["latent_bias"])
    values, indices = pre.topk(10, dim=-1)
    expected = torch.stack([raw["decoder.weight"][:, indices[i]] @ values[i] for i in range(3)]) + raw["pre_bias"]
    top = sae.encode(x)
    torch.testing.assert_close(top.top_acts, values)
    torch.testing.assert_close(sae.decode(*top), expected, rtol=1e-4, atol=1e-4)


class NotATensor:
    pass


def test_unbox_refuses_pickled_objects_and_bad_shapes(tmp_path):
    write_unbox(tmp_path / "evil", n=16, d=4)
    torch.save({"state_dict": {"encoder.weight": NotATensor()}}, tmp_path / "evil" / "state_dict.pth")
    with pytest.raises(CheckpointError, match="state_dict.pth"):
        load_unbox(tmp_path / "evil")
    write_unbox(tmp_path / "shape", n=16, d=4, state={"encoder.weight": torch.zeros(16, 4), "decoder.weight": torch.zeros(16, 4), "pre_bias": torch.zeros(4), "latent_bias": torch.zeros(16)})
    with pytest.raises(CheckpointError, match="decoder.weight"):
        load_unbox(tmp_path / "shape")
    write_unbox(tmp_path / "nomean", n=16, d=4)
    (tmp_path / "nomean" / "mean.pt").unlink()
    with pytest.raises(CheckpointError, match="mean.pt"):
        load_unbox(tmp_path / "nomean")


@pytest.mark.parametrize("damage, named", [
    ({"groups": {"triangle": [1, 2]}}, "'groups'"),
    ({"groups": {"triangle": {"features": ["1"]}}}, "'groups'"),
    ({"concepts": {"red": "3"}}, "'concepts'"),
    ({"places": {"top left": [-1]}}, "'places'"),
    ({"meta": {"region_cut": {"region": "object", "share": 1.5}}}, "region_cut"),
    ({"readouts": {"circle": {"features": [4, 5], "weights": [1.0]}}}, "'readouts'"),
    ({"readouts": {"circle": {"features": [4], "weights": [1.0], "against": [6], "against_weights": [float("nan")]}}}, "'readouts'"),
    ([1, 2], "not a JSON object"),
])
def test_a_damaged_dictionary_is_named_not_searched(tmp_path, damage, named):
    """A concepts.json whose searchable names are malformed fails to load with the field named (the
    concept search would otherwise crash on it)."""
    saved_sae(tmp_path)
    (tmp_path / "concepts.json").write_text(json.dumps(damage))
    with pytest.raises(CheckpointError, match=named):
        load_concepts(tmp_path)
    good = {"concepts": {"red": [3]}, "places": {"top left": [0, 1]}, "groups": {"triangle": {"features": [4, 5], "threshold": 1.0}},
            "readouts": {"circle": {"features": [7], "weights": [0.5], "against": [8], "against_weights": [-0.25], "threshold": 0.1}}}
    (tmp_path / "concepts.json").write_text(json.dumps(good))
    assert load_concepts(tmp_path) == good
