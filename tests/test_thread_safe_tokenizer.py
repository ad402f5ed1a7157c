"""Concurrent users share one pipeline, so they share its tokenizer: each must get the encoding it
would get alone (the race this guards against once changed an image under load in CI)."""

from __future__ import annotations

import sys
import threading

import torch

from concepts.pipeline import DeviceChoice, load_pipeline_from_folder
from concepts.prompts import check_prompt, unknown_words
from concepts.thread_safe_tokenizer import shared_safely
from concepts.tokenizer import build_tokenizer

SHORT = "a blue circle on the left"
LONG = " ".join(["a red square on the right"] * 30)


def padded_ids(tokenizer, prompt: str) -> list[int]:
    """What diffusers' `encode_prompt` asks for: the prompt padded and truncated to the context."""
    return tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


def test_two_users_encoding_at_once_each_get_their_own_encoding(tiny_folder):
    tokenizer = load_pipeline_from_folder(tiny_folder, DeviceChoice(torch.device("cpu"), torch.float32)).tokenizer
    expected_ids = padded_ids(tokenizer, SHORT)
    expected_warnings = check_prompt(LONG, tokenizer).warnings
    assert len(expected_ids) == tokenizer.model_max_length and expected_warnings  # the long prompt is over the limit
    wrong: list[str] = []
    done = threading.Event()

    def generating_user() -> None:  # encodes as the pipeline does
        for _ in range(1500):
            if padded_ids(tokenizer, SHORT) != expected_ids:
                wrong.append("padded encoding")
        done.set()

    def typing_user() -> None:  # the prompt checks run for every request: unpadded, untruncated
        while not done.is_set():
            if check_prompt(LONG, tokenizer).warnings != expected_warnings:
                wrong.append("length warning")
            if unknown_words("red circle", tokenizer):
                wrong.append("known words")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a race shows within a second
    try:
        users = [threading.Thread(target=generating_user), threading.Thread(target=typing_user)]
        for user in users:
            user.start()
        for user in users:
            user.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


def test_a_shared_tokenizer_encodes_and_saves_as_before(tmp_path):
    plain, shared = build_tokenizer(["square"], model_max_length=24), shared_safely(build_tokenizer(["square"], model_max_length=24))
    assert shared_safely(shared) is shared and type(shared).__name__ == type(plain).__name__
    assert padded_ids(shared, SHORT) == padded_ids(plain, SHORT) and shared.tokenize("square") == ["square</w>"]
    shared.save_pretrained(tmp_path)
    assert '"tokenizer_class": "CLIPTokenizer"' in (tmp_path / "tokenizer_config.json").read_text()
