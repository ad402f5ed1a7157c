"""Prompt sources for SAE training: a text file, or a Hugging Face Hub dataset of prompts.

A Hub dataset is streamed file by file: its files are listed (one call), and each readable file is
fetched through the Hub cache only when the reader reaches it (`hub.fetch_file`), so `max_prompts`
stops a 200,000-prompt dataset after the files it needs and nothing is downloaded whole. Offline
(HF_HUB_OFFLINE) the cached snapshot is read instead (`hub._snapshot`). Files are read as `.txt` (one
prompt a line), `.csv`, `.jsonl`, `.json` with the standard library, and `.parquet` through `pyarrow`.

Cleaning, in order: whitespace collapsed, blanks skipped, duplicates dropped (first kept), prompts
longer than the text encoder's context trimmed word by word from the end (or skipped), then the
first `max_prompts` kept. Every step is counted, so a run reports what it did to its prompt set.
"""

from __future__ import annotations

import csv
import json
from fnmatch import fnmatch
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, NamedTuple

from ..errors import CheckpointError, InvalidInputError
from ..hub import Source, _snapshot, fetch_file, hub_offline, list_repo_files, validate_repo_id, validate_revision

READABLE = (".txt", ".csv", ".jsonl", ".json", ".parquet")
"""File types read from a Hub dataset."""
DEFAULT_COLUMNS = ("prompt", "prompts", "text", "caption", "captions", "sentence", "description")
"""Columns tried, in order and case-insensitively, when no column is named."""
METADATA_FILES = {"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"}
"""JSON files a dataset repo holds that are not data."""

Fitter = Callable[[str], "str | None"]
"""Maps a prompt to itself, a trimmed version, or None (skip it)."""


@dataclass
class PromptSpec:
    """Where the prompts come from and how many to keep."""

    file: str | None = None
    """Text file, one prompt per line (blank lines skipped)."""
    hub_dataset: str | None = None
    """Hub dataset id "owner/name" holding the prompts."""
    column: str | None = None
    """Column (csv / jsonl / json / parquet) holding the prompt; None tries prompt, text, caption, ..."""
    file_pattern: str | None = None
    """Glob of the dataset files to fetch and read, e.g. "data/train-*.parquet" (default: every readable file)."""
    revision: str | None = None
    """Branch, tag or commit of the dataset."""
    max_prompts: int | None = None
    """Keep at most this many prompts (after cleaning); None keeps all."""
    overlong: str = "trim"
    """Prompts longer than the text encoder's context: "trim" (drop words from the end) or "skip"."""

    def __post_init__(self) -> None:
        if (self.file is None) == (self.hub_dataset is None):
            raise InvalidInputError("prompts", "give exactly one of a prompt file or --hub-dataset")
        if self.hub_dataset is not None:
            validate_repo_id(self.hub_dataset, field="hub_dataset")
        validate_revision(self.revision)
        if self.file is not None and (self.column or self.file_pattern):
            raise InvalidInputError("dataset_column", "--dataset-column and --dataset-file apply to --hub-dataset only")
        if self.file_pattern is not None and (not self.file_pattern or ".." in self.file_pattern or self.file_pattern.startswith("/")):
            raise InvalidInputError("dataset_file", f"{self.file_pattern!r} must be a relative glob inside the dataset, without '..'")
        if self.max_prompts is not None and (isinstance(self.max_prompts, bool) or not isinstance(self.max_prompts, int) or self.max_prompts < 1):
            raise InvalidInputError("max_prompts", f"must be a positive integer, got {self.max_prompts!r}")
        if self.overlong not in ("trim", "skip"):
            raise InvalidInputError("overlong", f"{self.overlong!r} is not trim or skip")

    def describe(self) -> str:
        if self.file is not None:
            return f"file {self.file}"
        where = f"Hub dataset {self.hub_dataset}"
        if self.file_pattern:
            where += f" ({self.file_pattern})"
        if self.column:
            where += f", column {self.column}"
        return where + (f" @ {self.revision}" if self.revision else "")


class PromptSet(NamedTuple):
    """The cleaned prompts and what cleaning did."""

    prompts: list[str]
    source: str
    files: list[str]
    """Files read (relative to the dataset for a Hub dataset)."""
    read: int
    """Raw lines / rows read (reading stops once `max_prompts` are kept)."""
    blank: int
    duplicates: int
    trimmed: int
    skipped: int
    """Overlong prompts dropped (overlong="skip", or not even one word fits)."""

    def summary(self) -> dict:
        return {"count": len(self.prompts), "source": self.source, "files": self.files, "read": self.read, "blank": self.blank,
                "duplicates": self.duplicates, "trimmed_overlong": self.trimmed, "skipped_overlong": self.skipped}


def load_prompts(spec: PromptSpec, fit: Fitter | None = None) -> PromptSet:
    """Read, clean and count the prompts of `spec`; `fit` handles overlong prompts (see `token_fitter`)."""
    if spec.file is not None:
        files, rows = [spec.file], _read_text_file(Path(spec.file), field="prompts")
    elif hub_offline():
        folder, paths = fetch_dataset(spec)
        files = [str(p.relative_to(folder)) for p in paths]
        rows = (text for path in paths for text in read_prompt_rows(path, spec.column, spec.hub_dataset or "", folder))
    else:
        files = []  # the files actually fetched and read, in order
        rows = stream_dataset(spec, files)
    kept: list[str] = []
    seen: set[str] = set()
    read = blank = duplicates = trimmed = skipped = 0
    for raw in rows:
        if spec.max_prompts is not None and len(kept) >= spec.max_prompts:
            break
        read += 1
        text = " ".join(str(raw).split()) if raw is not None else ""
        if not text:
            blank += 1
            continue
        if text in seen:
            duplicates += 1
            continue
        seen.add(text)
        fitted = fit(text) if fit is not None else text
        if fitted is None or (fitted != text and spec.overlong == "skip"):
            skipped += 1
            continue
        if fitted != text:
            trimmed += 1
        kept.append(fitted)
    if not kept:
        raise InvalidInputError("prompts", f"{spec.describe()} holds no usable prompt ({read} rows read, {blank} blank, {skipped} overlong)")
    return PromptSet(kept, spec.describe(), files, read, blank, duplicates, trimmed, skipped)


def token_fitter(tokenizer, max_tokens: int | None = None) -> Fitter:
    """A `Fitter` for a CLIP tokenizer: prompts within its context (77 tokens with BOS/EOS) pass as
    they are; longer ones lose words from the end until they fit (None if not one word fits).

    The pipeline would silently cut an overlong prompt at the context length anyway; trimming here
    makes the prompt list say what the model saw, and lets the word dictionary use only seen words.
    """
    limit = int(max_tokens or min(int(getattr(tokenizer, "model_max_length", 77) or 77), 77))

    def length(text: str) -> int:
        return len(tokenizer(text, truncation=False)["input_ids"])

    def fit(text: str) -> str | None:
        if length(text) <= limit:
            return text
        words = text.split(" ")
        low, high = 0, len(words) - 1  # the longest prefix that fits has `low` words
        while low < high:
            mid = (low + high + 1) // 2
            if length(" ".join(words[:mid])) <= limit:
                low = mid
            else:
                high = mid - 1
        return " ".join(words[:low]) if low else None

    return fit


def fetch_dataset(spec: PromptSpec) -> tuple[Path, list[Path]]:
    """The dataset's snapshot folder and its readable files (sorted), fetched with only the files needed."""
    assert spec.hub_dataset is not None
    patterns = [spec.file_pattern] if spec.file_pattern else [f"*{ext}" for ext in READABLE]
    source = Source(repo=spec.hub_dataset, revision=spec.revision)
    folder = _snapshot(source, patterns, None, repo_type="dataset")
    # The snapshot folder may hold files of earlier fetches: `dataset_files` keeps those the pattern names.
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return folder, [folder / name for name in dataset_files(names, spec)]


def dataset_files(names: list[str], spec: PromptSpec) -> list[str]:
    """The readable data files among a dataset's `names` (repo paths), in path order, filtered by
    --dataset-file with the Hub's own matching rule (fnmatch on the repo path, "*" crossing folders)."""
    picked = sorted(
        (n for n in names
         if PurePosixPath(n).suffix.lower() in READABLE and PurePosixPath(n).name not in METADATA_FILES
         and not any(part.startswith(".") for part in PurePosixPath(n).parts)
         and (spec.file_pattern is None or fnmatch(n, spec.file_pattern))),
        key=PurePosixPath,
    )
    if not picked:
        which = f"matching {spec.file_pattern!r}" if spec.file_pattern else "at all"
        raise InvalidInputError("hub_dataset", f"Hub dataset {spec.hub_dataset} has no {', '.join(READABLE)} file {which}; name one with --dataset-file")
    return picked


def stream_dataset(spec: PromptSpec, read: list[str]) -> Iterator[str]:
    """The prompt of every row of the dataset, fetching each file only when it is reached (its name
    is appended to `read` then): a reader that stops early never downloads the rest."""
    assert spec.hub_dataset is not None
    source = Source(repo=spec.hub_dataset, revision=spec.revision)
    for name in dataset_files(list_repo_files(source, repo_type="dataset"), spec):
        path = fetch_file(source, name, repo_type="dataset")
        read.append(name)
        yield from read_prompt_rows(path, spec.column, spec.hub_dataset, root=None, name=name)


def read_prompt_rows(path: Path, column: str | None, dataset: str, root: Path | None = None, name: str | None = None) -> Iterator[str]:
    """The prompt of every row of one dataset file, lazily."""
    name = name or (str(path.relative_to(root)) if root is not None else path.name)
    where = f"{dataset}/{name}" if dataset else name
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield from _read_text_file(path, field="hub_dataset")
    elif suffix == ".csv":
        yield from _read_csv(path, column, where)
    elif suffix == ".jsonl":
        yield from _read_jsonl(path, column, where)
    elif suffix == ".json":
        yield from _read_json(path, column, where)
    elif suffix == ".parquet":
        yield from _read_parquet(path, column, where)
    else:
        raise InvalidInputError("dataset_file", f"{where}: cannot read {suffix} files; use one of {', '.join(READABLE)}")


def pick_column(columns: list[str], wanted: str | None, where: str) -> str:
    """`wanted` if present, else the first usual prompt column; the error lists the columns there are."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InvalidInputError("dataset_column", f"{where} has no column {wanted!r}; its columns: {', '.join(map(str, columns)) or '(none)'}")
    lower = {str(c).lower(): c for c in columns}
    for candidate in DEFAULT_COLUMNS:
        if candidate in lower:
            return lower[candidate]
    if len(columns) == 1:
        return columns[0]
    raise InvalidInputError("dataset_column", f"{where}: name the prompt column with --dataset-column; its columns: {', '.join(map(str, columns)) or '(none)'}")


def _read_text_file(path: Path, field: str) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            yield from (line.rstrip("\n") for line in handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(field, f"cannot read {path}: {exc}") from None


def _read_csv(path: Path, column: str | None, where: str) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            name = pick_column(list(reader.fieldnames or []), column, where)
            for row in reader:
                yield row.get(name) or ""
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CheckpointError(f"{where}: unreadable CSV ({exc})") from None


def _row_text(row: object, column: str | None, where: str, line: int) -> str:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict):
        raise CheckpointError(f"{where}: row {line} is a {type(row).__name__}, not an object or a string")
    value = row[pick_column(list(row), column, f"{where} (row {line})")]
    return value if isinstance(value, str) else ""


def _read_jsonl(path: Path, column: str | None, where: str) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, 1):
                if text.strip():
                    yield _row_text(json.loads(text), column, where, line)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: unreadable JSON lines ({exc})") from None


def _read_json(path: Path, column: str | None, where: str) -> Iterator[str]:
    """A list of strings, a list of objects, or an object of columns (lists)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: unreadable JSON ({exc})") from None
    if isinstance(data, dict):
        columns = [k for k, v in data.items() if isinstance(v, list)]
        name = pick_column(columns, column, where)
        yield from (v if isinstance(v, str) else "" for v in data[name])
    elif isinstance(data, list):
        yield from (_row_text(row, column, where, i) for i, row in enumerate(data, 1))
    else:
        raise CheckpointError(f"{where}: expected a list of prompts or rows, found a {type(data).__name__}")


def _read_parquet(path: Path, column: str | None, where: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("hub_dataset", f"{where} is a Parquet file: `pip install pyarrow` to read it, or pick .txt/.csv/.jsonl files with --dataset-file") from None
    try:
        handle = pq.ParquetFile(path)
        name = pick_column(list(handle.schema_arrow.names), column, where)
        for batch in handle.iter_batches(columns=[name], batch_size=8192):
            yield from (v if isinstance(v, str) else "" for v in batch.column(0).to_pylist())
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise CheckpointError(f"{where}: unreadable Parquet ({exc})") from None
