"""Checks on prompts typed by a user, shared by the CLI and the app.

A prompt past `MAX_PROMPT_CHARS` is refused outright (a 20,000-character paste is a mistake, not a
prompt). A prompt that fits but is longer than the text encoder's 77 tokens is accepted and the
truncation is reported as a warning, since CLIP silently drops the rest.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import InvalidInputError

MAX_PROMPT_CHARS = 1000


class CheckedPrompt(NamedTuple):
    text: str
    warnings: list[str]


def check_prompt(prompt: object, tokenizer: object | None = None, allow_empty: bool = False, field: str = "prompt") -> CheckedPrompt:
    """Strip and validate a prompt; with a tokenizer, warn when CLIP will truncate it."""
    if not isinstance(prompt, str):
        raise InvalidInputError(field, f"must be text, got {type(prompt).__name__}")
    text = prompt.strip()
    if not text and not allow_empty:
        raise InvalidInputError(field, "is empty: type what the image should show")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(field, f"is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    if "\x00" in text:
        raise InvalidInputError(field, "contains a NUL character")
    warnings = []
    if tokenizer is not None and text:
        limit = int(getattr(tokenizer, "model_max_length", 77))
        count = len(tokenizer(text, truncation=False).input_ids)
        if count > limit:
            warnings.append(f"prompt is {count} tokens; the text encoder reads only the first {limit} (the rest is ignored)")
    return CheckedPrompt(text, warnings)


def unknown_words(text: str, tokenizer: object) -> list[str]:
    """Words a closed-vocabulary tokenizer (toy-shapes) does not hold whole: its text encoder never
    saw them and reads them letter by letter, as noise."""
    words = dict.fromkeys(re.findall(r"[^\W_]+", text.lower()))
    # Single letters are tokens of every CLIP vocabulary, but only the article is a word of it.
    return [w for w in words if (len(w) < 2 and w != "a") or tokenizer.tokenize(w) != [f"{w}</w>"]]  # type: ignore[attr-defined]


def known_words_message(world_name: str, words: list[str]) -> str:
    shown = ", ".join(repr(w) for w in words[:5]) + (" ..." if len(words) > 5 else "")
    return f"{world_name} does not know the word{'s' if len(words) > 1 else ''} {shown}: its text encoder was trained on its own small vocabulary"
