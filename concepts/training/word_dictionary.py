"""A concept dictionary from the prompts alone: which prompt words each SAE feature co-occurs with.

The paper labels features with segmentation masks (docs/paper.md); that needs a segmentation model
per image. This is the lightweight substitute: each prompt's words stand for what its image shows.

1. Per-prompt activations. Shards hold rows in generation order (`collect.py`): chunk by chunk,
   batch by batch (`prompts_per_batch` prompts), and inside a batch step by step, each step holding
   the batch's prompts one after another, each prompt's `positions` rows in a row. With one recorded
   step per window (the paper's "representative" steps) this is simply prompt after prompt. The
   manifest's config gives the batching, so rows are regrouped exactly, one shard in memory at a
   time, with no per-row prompt index stored. A prompt's activation of a feature = its maximum over
   positions (and recorded steps), as `dictionary.build_dictionary` expects.
2. Words. Lowercase alphabetic tokens, minus a built-in list of function words, verbs, generic
   adjectives and prompt boilerplate ("highly detailed", "4k"); a plural joins its singular when the
   singular also occurs. Colour words are kept: they name visual concepts this project steers. With
   a `vocabulary` (e.g. `--nouns FILE`) only its words are kept. Words in fewer than
   `min_word_prompts` prompts (chance co-occurrence) or in more than `max_word_share` of them (no
   information, e.g. "photo" in "a photo of ...") are dropped.
3. Labels. One binary attribute per word (attribute = value = the word), so a prompt carries several
   labels and a feature's label is a plain word that `concept_features(dictionary, "dog")` finds.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..dictionary import DictionaryConfig, build_dictionary
from ..errors import CheckpointError, InvalidInputError
from ..sae import TopKSAE
from ..sae.native_format import CONCEPTS_FILE
from .collect import CollectConfig
from .ranks import rank_folders
from .shards import ShardReader

METHOD = "prompt-word co-occurrence"

STOPWORDS = frozenset("""
a an the and or but nor so yet for of to in on at by with without from into onto upon over under above below
behind beside besides between among through across along around about against toward towards near far off out
up down inside outside within before after during while until since as than then there here where when why how
what which who whom whose this that these those it its it's he she they them their theirs his her hers him we us
our ours you your yours i me my mine one ones some any all each every both either neither no not none only
very really quite too also just more most less least much many few several such same other another own
is are was were be been being am do does did doing done have has had having will would shall should can could
may might must get gets got getting make makes made making take takes took taken show shows showing shown
look looks looking see seen seeing feature featuring featured use using used let lets go goes going went come
comes coming came stand stands standing sit sits sitting lie lies lying hold holds holding wear wears
wearing walk walks walking run runs running fly flies flying play plays playing set sets
big small large little tiny huge giant long short tall high low wide narrow old new young good bad great best
better nice beautiful pretty cute ugly lovely amazing awesome stunning gorgeous fine fancy simple plain
detailed highly hyper ultra super extremely intricate realistic photorealistic hyperrealistic cinematic epic
dramatic professional quality resolution sharp focus focused hd uhd hdr k trending artstation featured
render rendered rendering octane unreal engine style styled concept art artwork illustration image picture photo
photograph photography shot closeup close view scene background foreground front side top bottom left right
center centre middle full half lot lots kind type sort part piece pair group bunch number
first second third next last other like
""".split())
"""Words that never label a feature: function words, verbs, generic adjectives, prompt boilerplate."""

_TOKEN = re.compile(r"[a-z]+")


@dataclass
class WordDictionaryConfig:
    """How prompt words become feature labels."""

    min_word_prompts: int = 3
    """A word must occur in at least this many prompts (fewer: any co-occurrence is chance)."""
    max_word_share: float = 0.5
    """Words in more than this share of the prompts carry no information and are dropped."""
    min_word_length: int = 2
    """Shorter tokens are dropped."""
    vocabulary: frozenset[str] | None = None
    """If set, only these words (lowercase) label features; the built-in stoplist is then not used."""
    fire_fraction: float = 0.1
    """A feature fires on a prompt above this share of its peak (the paper's 0.1)."""
    min_fires: int = 10
    """Features firing on fewer prompts get no label."""
    labelled_precision: float = 0.8
    """Precision (share of the prompts it fires on that contain the word) from which a label counts."""

    def __post_init__(self) -> None:
        for name in ("min_word_prompts", "min_word_length", "min_fires"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(name, f"must be a positive integer, got {value!r}")
        for name in ("max_word_share", "fire_fraction", "labelled_precision"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise InvalidInputError(name, f"must be in (0, 1], got {value!r}")
        if self.vocabulary is not None:
            self.vocabulary = frozenset(w.strip().lower() for w in self.vocabulary if w.strip())
            if not self.vocabulary:
                raise InvalidInputError("nouns", "the vocabulary is empty")

    def dictionary_config(self) -> DictionaryConfig:
        return DictionaryConfig(fire_fraction=self.fire_fraction, min_fires=self.min_fires, labelled_precision=self.labelled_precision)


def read_vocabulary(path: str | Path) -> frozenset[str]:
    """A `--nouns` file: one word per line (blank lines and # comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError("nouns", f"cannot read {path}: {exc}") from None
    words = frozenset(line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not words:
        raise InvalidInputError("nouns", f"{path} lists no words (one per line)")
    return words


def _singular(word: str, known: set[str]) -> str:
    """The singular of a plural when that singular is itself a known word ("dogs" → "dog")."""
    candidates = []
    if word.endswith("ies"):
        candidates.append(word[:-3] + "y")
    if word.endswith("es"):
        candidates.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        candidates.append(word[:-1])
    return next((c for c in candidates if c in known), word)


def prompt_words(prompts: Sequence[str], cfg: WordDictionaryConfig) -> list[set[str]]:
    """Each prompt's label words after every filter of the module docstring."""
    tokens = [set(_TOKEN.findall(p.lower())) for p in prompts]
    if cfg.vocabulary is not None:
        known = set(cfg.vocabulary)
        keep = lambda w: w in known  # noqa: E731
    else:
        known = set().union(*tokens) if tokens else set()
        keep = lambda w: len(w) >= cfg.min_word_length and w not in STOPWORDS  # noqa: E731
    words = [{_singular(w, known) for w in row} for row in tokens]
    words = [{w for w in row if keep(w)} for row in words]
    counts = Counter(w for row in words for w in row)
    limit = cfg.max_word_share * len(prompts)
    good = {w for w, c in counts.items() if c >= cfg.min_word_prompts and c <= limit}
    return [row & good for row in words]


class _Rows:
    """Rows of a shard folder in stored order, `take(n)` at a time, one shard in memory."""

    def __init__(self, reader: ShardReader) -> None:
        self.reader, self.next_shard, self.buffer = reader, 0, torch.zeros(0, reader.d)

    def take(self, n: int) -> torch.Tensor:
        parts, have = [], 0
        while have < n:
            if not self.buffer.shape[0]:
                if self.next_shard >= len(self.reader.shards):
                    raise CheckpointError(f"{self.reader.folder}: fewer rows than the prompt layout needs; collect again")
                self.buffer = self.reader.load_shard(self.next_shard)
                self.next_shard += 1
            part = self.buffer[: n - have]
            self.buffer = self.buffer[part.shape[0]:]
            parts.append(part)
            have += part.shape[0]
        return torch.cat(parts) if len(parts) > 1 else parts[0]


@torch.no_grad()
def prompt_activations(sae: TopKSAE, folder: str | Path, n_prompts: int, max_rows: int = 16384) -> np.ndarray:
    """[n_prompts, n_latents]: each prompt's maximum activation of each feature over its rows."""
    reader = ShardReader(folder)
    meta = reader.meta
    if int(meta.get("prompts_done", -1)) != n_prompts:
        raise CheckpointError(f"{reader.folder}: holds {meta.get('prompts_done')} prompts, not {n_prompts}; finish the collection first")
    try:
        collect = CollectConfig(**meta["config"])
        steps = len(collect.window_steps()[meta["window"]])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{reader.folder}: manifest lacks the collection config ({exc}); collect again") from None
    positions, rest = divmod(reader.rows, n_prompts * steps)
    if rest or not positions:
        raise CheckpointError(f"{reader.folder}: {reader.rows} rows do not split into {n_prompts} prompts × {steps} steps")
    device, dtype = sae.device, sae.dtype
    out = torch.zeros(n_prompts, sae.cfg.num_latents)
    group = max(1, max_rows // positions)  # prompts encoded together
    for rank_folder, part in rank_folders(reader.folder, meta):  # several under accelerate launch
        rows = _Rows(ShardReader(rank_folder))
        for _, start, count in part.batches(n_prompts, collect.chunk_prompts, collect.prompts_per_batch):
            for _ in range(steps):  # inside a batch: step after step, each the batch's prompts in order
                for first in range(0, count, group):
                    size = min(group, count - first)
                    x = rows.take(size * positions).to(device, dtype)
                    z = sae.encode_dense(x).float().cpu().view(size, positions, -1).amax(dim=1)
                    span = slice(start + first, start + first + size)
                    out[span] = torch.maximum(out[span], z)
    return out.numpy()


def word_dictionary(activations: np.ndarray, prompts: Sequence[str], cfg: WordDictionaryConfig, meta: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The concept dictionary of per-prompt `activations` [prompts, features]; None when no word survives."""
    words = prompt_words(prompts, cfg)
    if not any(words):
        return None
    labels = [{w: w for w in sorted(row)} for row in words]
    vocabulary = sorted(set().union(*words))
    info = {"method": METHOD, "prompts": len(prompts), "words": len(vocabulary), "word_config": {k: v for k, v in asdict(cfg).items() if k != "vocabulary"},
            "vocabulary": "given (--nouns)" if cfg.vocabulary is not None else "built-in stoplist", **(meta or {})}
    return build_dictionary(activations, labels, cfg.dictionary_config(), meta=info)


def save_concepts(dictionary: dict[str, Any], sae_folder: str | Path) -> Path:
    """Write `concepts.json` beside the SAE atomically (where `concepts.sae.load_concepts` reads it)."""
    path = Path(sae_folder) / CONCEPTS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dictionary, indent=1))
    os.replace(tmp, path)
    return path
