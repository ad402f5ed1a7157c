"""Hostile input, property-based: whatever a person or an API client sends to the app's handlers or
the CLI, the answer is a result or ONE clear message naming the bad field (`gr.Error` in the app,
one line and exit 2 in the CLI), never a traceback, and the shared model is left exactly as it was:
same weights, no hook left on any module."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math

import gradio as gr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ui.common
import ui.erase
import ui.evolution
import ui.generate
import ui.steer
from concepts.cli import main as cli_main
from concepts.generation import SHARED_PIPELINES
from concepts.prompts import MAX_PROMPT_CHARS
from concepts.sampling import MAX_SEED

MODEL = "toy-shapes"
MID = "mid_block.attentions.0"
PROMPT = "a large red solid square at the top left on a white background"
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONCEPT_LAB_CACHE", str(tmp_path_factory.getbasetemp() / "hostile-cad-cache"))


def shared_pipe():
    return SHARED_PIPELINES.get(ui.common.REGISTRY.get(MODEL), ui.common.DEVICE)


def model_fingerprint(pipe) -> str:
    digest = hashlib.sha1()
    for part in (pipe.unet, pipe.text_encoder, pipe.vae):
        for name, tensor in part.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def leftover_hooks(pipe) -> list[str]:
    return [
        name
        for part in (pipe.unet, pipe.text_encoder, pipe.vae)
        for name, m in part.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]


@contextlib.contextmanager
def model_left_alone():
    pipe = shared_pipe()
    before = model_fingerprint(pipe)
    yield
    assert leftover_hooks(pipe) == []
    assert model_fingerprint(pipe) == before


def message_or_none(fn, *args) -> str | None:
    """None when the handler answered; its message when it refused. Anything else fails the test."""
    try:
        fn(*args)
    except gr.Error as exc:
        message = str(exc.message)
        assert message and "Traceback" not in message and len(message) < 600
        return message
    return None


def names(message: str, *fields: str) -> bool:
    """The message is about one of `fields` ("field: ..." or "unknown field ...")."""
    return any(message.startswith((f"{f}:", f"unknown {f} ")) for f in fields)


# -- what people and API clients type --------------------------------------------------------------
any_text = st.text(max_size=60)
long_text = st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(300, 7000))
prompts = st.one_of(any_text, long_text, st.sampled_from(["", "   ", "\n\t", "a\x00b", "a" * (MAX_PROMPT_CHARS + 1), "a" * 20000]))
bad_numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**80), 2**80),
    st.sampled_from(["", "abc", "1e999", "nan", "-inf", "12", [1], {"a": 1}]),
)


@FAST
@given(prompt=prompts)
def test_any_prompt_gives_an_image_or_a_prompt_message(prompt):
    with model_left_alone():
        try:
            image, info = ui.generate.generate_image(MODEL, prompt, 0, 2, 4.0)
        except gr.Error as exc:
            assert names(str(exc.message), "prompt")
            assert not prompt.strip() or len(prompt.strip()) > MAX_PROMPT_CHARS or "\x00" in prompt
            return
    assert isinstance(image, Image.Image) and image.size == (64, 64)
    assert len(prompt.strip()) <= MAX_PROMPT_CHARS


@FAST
@given(field=st.sampled_from(["seed", "steps", "guidance"]), value=bad_numbers)
def test_any_number_gives_an_image_or_names_its_field(field, value):
    args = {"seed": 0, "steps": 2, "guidance": 4.0} | {field: value}
    if field == "steps" and isinstance(value, (int, float)) and not isinstance(value, bool) and 2 < value < 1e6:
        args["steps"] = value % 3 + 1 if math.isfinite(value) and value == int(value) else value  # keep valid runs short
    with model_left_alone():
        message = message_or_none(ui.generate.generate_image, MODEL, PROMPT, args["seed"], args["steps"], args["guidance"])
    if message is not None:
        assert names(message, field), message
    else:  # accepted: it must have been a sensible value
        number = float(args[field])
        assert math.isfinite(number)
        if field == "seed":
            assert number == int(number) and 0 <= number <= MAX_SEED


windows = st.one_of(
    st.sampled_from(["early", "middle", "final", "all", "EARLY", " middle "]),
    st.builds(lambda a, b: f"{a}:{b}", st.integers(-50, 60), st.integers(-50, 60)),
    any_text,
)
feature_texts = st.one_of(
    st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=4).map(lambda ids: ", ".join(map(str, ids))),
    any_text,
)
masks = st.builds(
    lambda shape, fill, dtype: np.full(shape, fill, dtype=dtype),
    st.lists(st.integers(0, 70), min_size=1, max_size=3).map(tuple),
    st.sampled_from([0, 1, 255, np.nan, np.inf]),
    st.sampled_from([np.float32, np.float64]),
)


@FAST
@given(strength=bad_numbers)
def test_steering_strength_is_used_or_named(strength):
    with model_left_alone():
        message = message_or_none(ui.steer.steer_image, MODEL, PROMPT, 0, 4, 4.0, MID, "middle", None, "3", "global", None, strength, "cond")
    if message is not None:
        assert names(message, "strength"), message
    else:
        assert math.isfinite(float(strength)) and abs(float(strength)) <= 1e4


@FAST
@given(window=windows)
def test_steering_window_is_used_or_named(window):
    with model_left_alone():
        message = message_or_none(ui.steer.steer_image, MODEL, PROMPT, 0, 4, 4.0, MID, window, None, "3", "global", None, 10.0, "cond")
    if message is not None:
        assert names(message, "window", "steps"), message


@FAST
@given(features=feature_texts, concept=st.one_of(st.none(), any_text, st.sampled_from(["red", "dotted", "top left"])))
def test_steering_features_and_concepts_are_used_or_named(features, concept):
    with model_left_alone():
        message = message_or_none(ui.steer.steer_image, MODEL, PROMPT, 0, 4, 4.0, MID, "middle", concept, features, "global", None, 10.0, "cond")
    if message is not None:
        assert names(message, "features", "concept"), message


@FAST
@given(mask=masks)
def test_a_painted_mask_of_any_size_or_content_is_used_or_named(mask):
    painting = {"background": None, "layers": [mask], "composite": None}
    with model_left_alone():
        message = message_or_none(ui.steer.steer_image, MODEL, PROMPT, 0, 4, 4.0, MID, "middle", None, "3", ui.steer.PAINTED, painting, 10.0, "cond")
    if message is not None:
        assert names(message, "mask"), message
    else:  # used: it had something painted and nothing non-finite
        assert mask.ndim in (2, 3) and np.isfinite(mask).all() and mask.any()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(field=st.sampled_from(["ratio", "images", "seed"]), value=bad_numbers)
def test_edit_numbers_are_named_before_any_model_work(field, value):
    args = {"ratio": 0.02, "images": 1, "seed": 0} | {field: value}
    with model_left_alone():
        message = message_or_none(ui.erase.edit_concept, MODEL, "red", "erase", args["ratio"], "fast", "", "", args["seed"], args["images"])
    if message is not None:
        assert names(message, field), message


@settings(max_examples=15, deadline=None, derandomize=True)
@given(concept=st.one_of(st.sampled_from(["", "  ", "dog", "Van Gogh", "r\x00d", "red" * 400]), st.text(alphabet="xyzq", min_size=1, max_size=8)),
       keep=st.sampled_from(["", "dog", ",,,", "a, b, c, d, e, f, g, h, i"]))
def test_unknown_or_malformed_concepts_are_named(concept, keep):
    with model_left_alone():
        message = message_or_none(ui.erase.edit_concept, MODEL, concept, "erase", 0.02, "fast", "", "", 0, 1, keep)
    assert message is not None and names(message, "concept", "keep"), message


@settings(max_examples=20, deadline=None, derandomize=True)
@given(steps=st.one_of(bad_numbers, st.integers(1, 3)), block=st.one_of(st.just(MID), any_text),
       concepts=st.one_of(st.none(), st.lists(st.one_of(any_text, st.sampled_from(["large", "dotted"])), max_size=3)))
def test_the_evolution_tab_answers_or_names_the_field(steps, block, concepts):
    with model_left_alone():
        message = message_or_none(ui.evolution.follow_evolution, MODEL, PROMPT, 0, steps, 4.0, block, concepts)
    if message is not None:
        assert names(message, "steps", "block", "concept"), message


@settings(max_examples=20, deadline=None, derandomize=True)
@given(step=bad_numbers, feature=bad_numbers)
def test_scrubbing_or_picking_before_any_result_is_a_message(step, feature):
    assert names(message_or_none(ui.evolution.scrub_evolution, None, step), "step")
    assert names(message_or_none(ui.steer.feature_heatmap, None, feature), "feature")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):  # argparse writes usage there
        try:
            code = cli_main(argv, stdout=out, stderr=err)
        except SystemExit as exc:  # argparse's own exit for --help and the like
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    command=st.sampled_from(["generate", "steer", "erase"]),
    flag=st.sampled_from(["--prompt", "--seed", "--steps", "--guidance", "--strength", "--window", "--feature", "--region", "--mask", "--concept", "--ratio", "--keep", "--model"]),
    value=st.one_of(st.sampled_from(["", "nan", "inf", "-1", "1e999", "99999999999999999999", "../../etc", "a" * 20000, "5:2"]), any_text),
)
def test_the_cli_answers_any_bad_flag_with_one_line(tmp_path_factory, command, flag, value):
    base = {
        "generate": ["generate", "--prompt", PROMPT, "--steps", "2"],
        "steer": ["steer", "--prompt", PROMPT, "--steps", "2", "--feature", "3"],
        "erase": ["erase", "--concept", "zzz"],
    }[command]
    argv = [*base, flag, value, "--out", str(tmp_path_factory.mktemp("cli"))]
    with model_left_alone():
        code, out, err = run_cli(argv)
    if code == 0:
        assert out.count("\n") == 1 and err.strip() == ""
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert len(lines[0]) < 600


# -- damaged checkpoints and an unreachable Hub ----------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True)
@given(file=st.sampled_from(["sae.safetensors", "cfg.json", "concepts.json"]), data=st.data())
def test_a_truncated_or_scribbled_sae_file_is_a_checkpoint_error(tmp_path_factory, file, data):
    """Cut any SAE file at any byte, or overwrite a stretch of it: loading names the file, or (when
    the damage left a valid file) loads; it never raises anything else."""
    from test_sae_formats import saved_sae

    from concepts.errors import CheckpointError
    from concepts.sae import load_concepts, load_native

    folder = tmp_path_factory.mktemp("damaged")
    saved_sae(folder)
    raw = (folder / file).read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        damaged = raw[: data.draw(st.integers(0, len(raw) - 1), label="keep bytes")]
    else:
        start = data.draw(st.integers(0, len(raw) - 1), label="at")
        damaged = raw[:start] + data.draw(st.binary(min_size=1, max_size=16), label="scribble") + raw[start + 16 :]
    (folder / file).write_bytes(damaged)
    try:
        load_native(folder) if file != "concepts.json" else load_concepts(folder)
    except CheckpointError as exc:
        assert file in str(exc) or str(folder) in str(exc)


def test_an_unreachable_hub_is_one_line_in_a_real_process(tmp_path):
    """Not offline mode: the Hub is asked and does not answer (a closed local port)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    done = subprocess.run(
        [sys.executable, "-m", "concepts", "generate", "--model", "sd14", "--prompt", "a dog", "--steps", "1", "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "CompVis/stable-diffusion-v1-4" in lines[0] and "unreachable" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
