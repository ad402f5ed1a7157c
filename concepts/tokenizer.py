"""Build a CLIP tokenizer offline for a small, known vocabulary.

Tiny test models and the toy-shapes world have no Hub tokenizer to download. A CLIP BPE tokenizer
is fully described by a vocabulary and a merge list (docs/pitfalls.md: pass `model_max_length=77`, since
the SD pipeline pads every prompt to it). Every lowercase letter, digit and a little punctuation is
a token, so any text tokenizes; each word in `words` is additionally merged into one
token, so a prompt of known words costs one token a word.
"""

from __future__ import annotations

import string
from typing import Iterable

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BASE_CHARS = string.ascii_lowercase + string.digits + ",.'-!?:;()"


def build_vocab_and_merges(words: Iterable[str] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Character tokens (with and without the end-of-word mark) plus one merge chain per word."""
    vocab: dict[str, int] = {}
    for ch in BASE_CHARS:
        vocab.setdefault(ch, len(vocab))
    for ch in BASE_CHARS:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        if len(word) < 2 or any(c not in BASE_CHARS for c in word):
            continue
        # Join whatever the merges so far make of this word: appended merges rank last, so they
        # never fire inside another word that the earlier merges already join into one token.
        pieces = _apply_bpe(word, ranks)
        left = pieces[0]
        for right in pieces[1:]:
            ranks[(left, right)] = len(merges)
            merges.append((left, right))
            left = left + right
            vocab.setdefault(left, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def _apply_bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Split a word as CLIP's BPE does: repeatedly merge the adjacent pair of lowest rank."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(p, len(ranks) + 1), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_tokenizer(words: Iterable[str] = (), model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIPTokenizer whose vocabulary is the base characters plus `words`, built without the Hub."""
    vocab, merges = build_vocab_and_merges(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
