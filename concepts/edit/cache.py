"""Attribution scores cached on disk per (model, concept prompt, objective, mode, anchor, sampling settings),
as safetensors with the settings in the metadata. Location: $CONCEPT_LAB_CACHE/cad, else
~/.cache/concept-lab/cad.

A world may also ship scores beside its weights (`<model folder>/cad-scores/`, read-only): the toy
ships those of the concepts its lessons and suggestions erase, so a fresh Space answers them at
once. A shipped file is used only when the key in its metadata is exactly the request's (the key
holds the weights' digest, so a retrained model never reads stale scores).

Bounded: the cache holds at most $CONCEPT_LAB_CAD_CACHE_MB megabytes (default 2048: about 2,000 toy
concepts, or 3 on SD1.4, whose scores are 0.6 GB each). After each write the least recently used
files (by modification time, which a read refreshes) are deleted until it fits again. The locks that
keep two requests from computing the same scores are a fixed set, shared by hash of the path."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..registry import ModelWorld
from ..weights_digest import weights_digest
from .attribution import AttributionConfig
from .components import ff_layers

LOCK_STRIPES = 64
_LOCKS = tuple(threading.RLock() for _ in range(LOCK_STRIPES))
DEFAULT_CACHE_MB = 2048


def cache_root() -> Path:
    base = os.environ.get("CONCEPT_LAB_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "concept-lab") / "cad"


def weights_fingerprint(unet) -> str:
    """A digest of the scored weights, so scores of a retrained model are never reused."""
    return weights_digest(((name, layer.weight) for name, layer in ff_layers(unet).items()), head=256)


def score_key(world: ModelWorld, unet, prompt: str, cfg: AttributionConfig) -> dict:
    """Everything the scores depend on. The erase anchor enters only when set, so CAD's own
    (unanchored) keys, and the files cached under them, stay as they were."""
    settings = asdict(cfg)
    anchor = settings.pop("anchor", ())
    return {"model": world.name, "pipeline": world.pipeline.describe(), "weights": weights_fingerprint(unet), "prompt": prompt, **settings,
            **({"anchor": list(anchor)} if anchor else {})}


def score_path(key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    world_name = key["model"]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in world_name)
    return cache_root() / safe / f"{key['objective']}-{key['mode']}-{digest}.safetensors"


def lock_for(path: Path):
    """The lock of a score file: one of a fixed set, so the set never grows with the keys."""
    return _LOCKS[int(hashlib.sha1(str(path).encode()).hexdigest()[:8], 16) % LOCK_STRIPES]


def cache_limit_bytes() -> int:
    try:
        megabytes = float(os.environ.get("CONCEPT_LAB_CAD_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return int(max(0.0, megabytes) * 1024 * 1024)


def evict(limit: int | None = None, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used score files until the cache fits `limit` bytes; `keep` (the file
    just written) goes last. Returns what was deleted."""
    limit = cache_limit_bytes() if limit is None else limit
    files = []
    for path in cache_root().rglob("*.safetensors"):
        try:
            stat = path.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        files.append((path == keep, stat.st_mtime, stat.st_size, path))
    total = sum(size for _, _, size, _ in files)
    deleted = []
    for _, _, size, path in sorted(files):
        if total <= limit:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path)
    return deleted


def load_scores(path: Path) -> dict[str, torch.Tensor] | None:
    """Cached scores, or None when absent or unreadable (a corrupt file is recomputed, not trusted)."""
    if not path.is_file():
        return None
    try:
        scores = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None
    try:
        os.utime(path)  # recently used: evicted last
    except OSError:
        pass
    return scores


SHIPPED_FOLDER = "cad-scores"


def shipped_path(world: ModelWorld, key: dict) -> Path | None:
    """Where the world would ship these scores, or None for a world without a local folder."""
    source, base = getattr(world, "pipeline", None), getattr(world, "base_dir", None)
    if getattr(source, "path", None) is None or base is None:  # a Hub model ships no scores
        return None
    folder = Path(base) / source.path / (source.subfolder or "")
    return folder / SHIPPED_FOLDER / score_path(key).name


def load_shipped(world: ModelWorld, key: dict) -> dict[str, torch.Tensor] | None:
    """Shipped scores for exactly this key, else None."""
    path = shipped_path(world, key)
    if path is None or not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if json.loads((f.metadata() or {}).get("key", "null")) != json.loads(json.dumps(key)):
                return None
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None


def save_scores(path: Path, scores: dict[str, torch.Tensor], key: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # writers in other processes never share it
    save_file({k: v.contiguous() for k, v in scores.items()}, str(tmp), metadata={"key": json.dumps(key)})
    tmp.replace(path)
    evict(keep=path)
