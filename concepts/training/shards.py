"""Activations on disk as sharded safetensors, so a collection never has to fit in memory.

A shard folder holds `shard_00000.safetensors`, `shard_00001.safetensors`, ... (each one tensor
`"activations"` [rows, d]) and `manifest.json`:
`{"d", "dtype", "rows", "shards": [{"file", "rows"}], "meta"}`. Every shard and the manifest are
written to a temporary name and renamed, and the manifest is rewritten after every shard, so a run
killed mid-collection leaves a folder that reads back consistently (the rows of the last, unfinished
shard are lost) and that a new `ShardWriter` appends to.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from concepts.errors import CheckpointError, InvalidInputError

MANIFEST = "manifest.json"
TENSOR_KEY = "activations"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _dtype_name(dtype: torch.dtype) -> str:
    for name, value in _DTYPES.items():
        if value == dtype:
            return name
    raise InvalidInputError("dtype", f"{dtype} is not supported; use one of {sorted(_DTYPES)}")


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The parsed, checked manifest of a shard folder; CheckpointError if missing or corrupt."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: no shard manifest here; collect activations into this folder first")
    try:
        man = json.loads(path.read_text())
        d, rows, shards = int(man["d"]), int(man["rows"]), list(man["shards"])
        if man["dtype"] not in _DTYPES or d <= 0 or rows != sum(int(s["rows"]) for s in shards):
            raise ValueError("inconsistent fields")
        for s in shards:
            str(s["file"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt shard manifest ({exc}); delete the folder and collect again") from exc
    man.setdefault("meta", {})
    return man


class ShardWriter:
    """Buffers rows and writes them in shards of `rows_per_shard`; reopening a folder appends to it.

    Use as a context manager (or call `close()`), which flushes the last partial shard.
    """

    def __init__(
        self,
        folder: str | Path,
        d: int,
        rows_per_shard: int = 65536,
        dtype: torch.dtype = torch.float16,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if int(d) <= 0:
            raise InvalidInputError("d", f"width must be positive, got {d}")
        if int(rows_per_shard) <= 0:
            raise InvalidInputError("rows_per_shard", f"must be positive, got {rows_per_shard}")
        self.folder = Path(folder)
        self.d, self.rows_per_shard, self.dtype = int(d), int(rows_per_shard), dtype
        dtype_name = _dtype_name(dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / MANIFEST).exists():  # resume: append after the last recorded shard
            man = read_manifest(self.folder)
            if man["d"] != self.d:
                raise InvalidInputError(
                    "d", f"{self.folder} holds activations of width {man['d']}, not {self.d}; "
                    "use a new folder for a different block or model")
            if man["dtype"] != dtype_name:
                raise InvalidInputError(
                    "dtype", f"{self.folder} is stored as {man['dtype']}, not {dtype_name}; "
                    "pass the same dtype or use a new folder")
            self._shards: list[dict[str, Any]] = man["shards"]
            self.meta: dict[str, Any] = {**man["meta"], **(meta or {})}
        else:
            self._shards, self.meta = [], dict(meta or {})
        self._buffer: list[torch.Tensor] = []
        self._buffered = 0
        self._closed = False
        self._write_manifest()

    @property
    def rows(self) -> int:
        """Rows written so far, buffered ones included."""
        return sum(s["rows"] for s in self._shards) + self._buffered

    def add(self, x: torch.Tensor) -> None:
        """Append rows x [N, d]; full shards go to disk at once."""
        if self._closed:
            raise InvalidInputError("x", "this ShardWriter is closed; open a new one to append")
        if x.ndim != 2 or x.shape[1] != self.d:
            raise InvalidInputError("x", f"expected shape [N, {self.d}], got {list(x.shape)}")
        if x.shape[0] == 0:
            return
        self._buffer.append(x.detach().to("cpu", self.dtype))
        self._buffered += x.shape[0]
        if self._buffered >= self.rows_per_shard:
            data = torch.cat(self._buffer)
            full = (data.shape[0] // self.rows_per_shard) * self.rows_per_shard
            for start in range(0, full, self.rows_per_shard):
                self._write_shard(data[start:start + self.rows_per_shard])
            rest = data[full:].clone()
            self._buffer = [rest] if rest.shape[0] else []
            self._buffered = rest.shape[0]

    def close(self, meta_update: dict[str, Any] | None = None) -> None:
        """Write the last partial shard and the final manifest, with `meta_update` merged into meta.

        The manifest then records `closed_shards`, the shard count at this consistent point, which
        `truncate_shards` can rewind to if a later writer is killed before it closes.
        """
        if self._closed:
            return
        if self._buffered:
            self._write_shard(torch.cat(self._buffer))
        self._buffer, self._buffered = [], 0
        self.meta.update(meta_update or {}, closed_shards=len(self._shards))
        self._write_manifest()
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Rows already added are complete, so they are kept even if the caller failed.
        self.close()

    def _write_shard(self, data: torch.Tensor) -> None:
        name = f"shard_{len(self._shards):05d}.safetensors"
        tmp = self.folder / (name + ".tmp")
        save_file({TENSOR_KEY: data.contiguous()}, str(tmp))
        os.replace(tmp, self.folder / name)
        self._shards.append({"file": name, "rows": int(data.shape[0])})
        self._write_manifest()

    def _write_manifest(self) -> None:
        _atomic_json(self.folder / MANIFEST, {
            "d": self.d, "dtype": _dtype_name(self.dtype), "rows": sum(s["rows"] for s in self._shards),
            "shards": self._shards, "meta": self.meta,
        })


def truncate_shards(folder: str | Path, keep: int) -> dict[str, Any]:
    """Drop every shard after the first `keep` (files and manifest entries); returns the new manifest."""
    folder = Path(folder)
    man = read_manifest(folder)
    for extra in man["shards"][keep:]:
        (folder / extra["file"]).unlink(missing_ok=True)
    man["shards"] = man["shards"][:keep]
    man["rows"] = sum(int(s["rows"]) for s in man["shards"])
    _atomic_json(folder / MANIFEST, man)
    return man


def _generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded by a stable hash of `parts`, so orders are pure functions of them."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


class ShardReader:
    """Reads a shard folder in shuffled batches, holding at most two shards in memory."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        man = read_manifest(self.folder)
        self.d: int = man["d"]
        self.rows: int = man["rows"]
        self.meta: dict[str, Any] = man["meta"]
        self.shards: list[dict[str, Any]] = man["shards"]
        for s in self.shards:
            if not (self.folder / s["file"]).is_file():
                raise CheckpointError(f"{self.folder / s['file']}: shard listed in the manifest is missing; "
                                      "collect the activations again")

    def __len__(self) -> int:
        return self.rows

    def load_shard(self, index: int) -> torch.Tensor:
        """Shard `index` as float32 [rows, d]; CheckpointError naming the file if unreadable."""
        entry = self.shards[index]
        path = self.folder / entry["file"]
        try:
            x = load_file(str(path))[TENSOR_KEY]
        except Exception as exc:  # safetensors raises its own error types for truncated files
            raise CheckpointError(f"{path}: unreadable shard ({exc}); collect the activations again") from exc
        if tuple(x.shape) != (entry["rows"], self.d):
            raise CheckpointError(f"{path}: shape {list(x.shape)} but the manifest says "
                                  f"[{entry['rows']}, {self.d}]; collect the activations again")
        return x.float()

    def part_shards(self, rank: int = 0, world: int = 1) -> list[int]:
        """The shards process `rank` of `world` reads in data-parallel training: every world-th one."""
        return list(range(rank, len(self.shards), world))

    def num_batches(self, batch_size: int, drop_last: bool = False, rank: int = 0, world: int = 1) -> int:
        """Batches per epoch for `iter_batches(batch_size)` (of process `rank`'s shards when world > 1)."""
        rows = sum(self.shards[i]["rows"] for i in self.part_shards(rank, world))
        return rows // batch_size if drop_last else -(-rows // batch_size)

    def iter_batches(
        self, batch_size: int, seed: int = 0, epoch: int = 0, start_batch: int = 0, drop_last: bool = False,
        rank: int = 0, world: int = 1,
    ) -> Iterator[torch.Tensor]:
        """Float32 batches [B, d] covering every row once, in an order fixed by (seed, epoch).

        Shard order and the rows within each shard are shuffled; batches span shard boundaries, so
        all but the last have exactly `batch_size` rows. `start_batch` skips batches without
        loading the shards that lie wholly before it (used to resume training mid-epoch). With
        world > 1 only process `rank`'s shards (`part_shards`) are read.
        """
        if batch_size <= 0:
            raise InvalidInputError("batch_size", f"must be positive, got {batch_size}")
        mine = self.part_shards(rank, world)
        order = [mine[i] for i in torch.randperm(len(mine), generator=_generator(seed, epoch)).tolist()]
        skip = start_batch * batch_size  # rows of the epoch's stream to skip
        pending: list[torch.Tensor] = []
        pending_rows = 0
        for shard in order:
            n = self.shards[shard]["rows"]
            if skip >= n:
                skip -= n
                continue
            perm = torch.randperm(n, generator=_generator(seed, epoch, shard))
            x = self.load_shard(shard)[perm[skip:]]
            skip = 0
            pending.append(x)
            pending_rows += x.shape[0]
            if pending_rows < batch_size:
                continue
            data = torch.cat(pending) if len(pending) > 1 else pending[0]
            full = (pending_rows // batch_size) * batch_size
            for start in range(0, full, batch_size):
                yield data[start:start + batch_size]
            rest = data[full:]
            pending, pending_rows = ([rest] if rest.shape[0] else []), rest.shape[0]
        if pending_rows and not drop_last:
            yield torch.cat(pending)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Up to n random rows as float32 [min(n, rows), d], e.g. to initialise a bias."""
        gen = _generator(seed, -1)
        parts: list[torch.Tensor] = []
        need = min(int(n), self.rows)
        # Draw from every shard in proportion to its size, so one shard (one prompt batch) does not
        # dominate; one shard is in memory at a time.
        picks = torch.randperm(self.rows, generator=gen)[:need]
        bounds = torch.tensor([0] + [s["rows"] for s in self.shards]).cumsum(0)
        shard_of = torch.searchsorted(bounds, picks, right=True) - 1
        for index in range(len(self.shards)):
            local = picks[shard_of == index] - bounds[index]
            if local.numel():
                parts.append(self.load_shard(index)[local])
        if not parts:
            return torch.zeros(0, self.d)
        return torch.cat(parts)
