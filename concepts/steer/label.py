"""`python -m concepts label`: concept labels and top images for SAEs that were published without them.

A published SAE (SAeUron's, sdxl-unbox's) comes with weights only, so the Steer tab can show bare
feature ids there. Labelling needs no training: generate a prompt set once with the world's pipeline,
read every SAE of the world on it (`feature_table`: each feature's strongest response per image,
averaged over the SAE's window), then

- label each feature by the prompt words it fires with (`concepts.training.word_dictionary`), and
- keep each feature's top images (`top_images`, small tiles so a 512 px model's cache stays small).

The output folder holds `concepts/<block>/<window>/<branch>/concepts.json` and `top_images/`; the
registry's `labels` entry names it (a folder or a Hub repo), and the SAE loader reads a dictionary
from there when the checkpoint has none beside it.

Resumable: prompts are generated in chunks (`work/chunk-NNNNN.npz`); a rerun with the same prompts
and settings skips the chunks it has, and every batch's seed depends only on its first prompt's
index, so a resumed run gives the same result as an uninterrupted one. The disk a run needs is
computed before anything is generated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import InvalidInputError
from ..registry import ModelWorld
from ..saes import LABELS_CONCEPTS_DIR, labels_member
from ..training.disk_plan import free_bytes, human_bytes
from ..training.word_dictionary import WordDictionaryConfig, save_concepts, word_dictionary
from .feature_table import FeatureTable, SAEKey, feature_table
from .top_images import LABELS_DIR, save_top_images

log = logging.getLogger("concepts.label")

WORK_DIR = "work"
MANIFEST = "manifest.json"


@dataclass
class LabelConfig:
    """How the prompt set is generated and read (steps and guidance default to the world's)."""

    steps: int | None = None
    guidance: float | None = None
    prompts_per_batch: int = 8
    chunk_prompts: int = 64
    """Prompts per resumable chunk."""
    seed: int = 0
    top: int = 8
    """Top images kept per feature."""
    tile: int = 128
    """Top images are stored as tiles of at most this many pixels a side."""
    words: WordDictionaryConfig = field(default_factory=WordDictionaryConfig)

    def __post_init__(self) -> None:
        for name in ("prompts_per_batch", "chunk_prompts", "top", "tile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(name, f"must be a positive integer, got {value!r}")
        if self.tile < 16:
            raise InvalidInputError("tile", f"{self.tile} px is too small to see anything; use 16 or more")


def concepts_folder(out: Path, key: SAEKey) -> Path:
    """Where the dictionary of one SAE goes (what `concepts.saes` reads from a world's `labels`)."""
    return out / labels_member(*key)


def tile_size(height: int, width: int, tile: int) -> tuple[int, int]:
    scale = min(1.0, tile / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass
class LabelPlan:
    """What a run writes and does, known before it generates anything."""

    prompts: int
    chunks: int
    saes: dict[str, int]
    """SAE "block/window/branch" → its latents."""
    unet_passes: int
    work_bytes: int
    """The chunk files: every SAE's per-image activations (float32) and the image tiles."""
    output_bytes: int
    """Top-image index files and the tile grid (about; PNG compresses it further), dictionaries."""

    @property
    def total_bytes(self) -> int:
        return self.work_bytes + self.output_bytes

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes, "total": human_bytes(self.total_bytes)}


def plan_labelling(world: ModelWorld, latents: dict[SAEKey, int], prompts: int, cfg: LabelConfig, height: int, width: int, guidance: float, steps: int) -> LabelPlan:
    tile_h, tile_w = tile_size(height, width, cfg.tile)
    per_image = 4 * sum(latents.values()) + tile_h * tile_w * 3
    batches = -(-prompts // cfg.prompts_per_batch)
    per_step = 2 if guidance > 1 else 1  # classifier-free guidance runs the UNet on two halves
    top_bytes = sum(8 * cfg.top * n for n in latents.values())
    dictionary_bytes = sum(600 * n for n in latents.values())  # about 600 bytes of JSON per feature
    return LabelPlan(
        prompts=prompts, chunks=-(-prompts // cfg.chunk_prompts), saes={"/".join(k): n for k, n in latents.items()},
        unet_passes=batches * steps * per_step, work_bytes=prompts * per_image,
        output_bytes=prompts * tile_h * tile_w * 3 + top_bytes + dictionary_bytes,
    )


def _fingerprint(world: ModelWorld, prompts: list[str], cfg: LabelConfig, steps: int, guidance: float, keys: list[SAEKey]) -> dict[str, Any]:
    """What a chunk depends on; a resumed run must match it."""
    digest = hashlib.sha256("\n".join(prompts).encode()).hexdigest()
    return {"model": world.name, "pipeline": world.pipeline.describe(), "prompts_sha256": digest, "prompts": len(prompts),
            "steps": steps, "guidance": guidance, "seed": cfg.seed, "prompts_per_batch": cfg.prompts_per_batch,
            "chunk_prompts": cfg.chunk_prompts, "tile": cfg.tile, "saes": ["/".join(k) for k in keys]}


def _check_manifest(work: Path, fingerprint: dict[str, Any]) -> None:
    path = work / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != fingerprint:
            changed = sorted(k for k in fingerprint if not isinstance(old, dict) or old.get(k) != fingerprint[k])
            raise InvalidInputError("out", f"{work.parent} holds a labelling run with other settings ({', '.join(changed)}); "
                                    "use a new --out, the same settings, or delete its work/ folder")
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=1))


def _save_chunk(path: Path, table: FeatureTable, keys: list[SAEKey], tile: tuple[int, int]) -> None:
    tiles = np.stack([np.asarray(Image.fromarray(image).resize(tile[::-1], Image.LANCZOS)) for image in table.images])
    arrays = {f"sae{i}": table.activations[key].astype(np.float32) for i, key in enumerate(keys)}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, tiles=tiles, **arrays)
    os.replace(tmp, path)  # a chunk is there whole or not at all


def _load_chunk(path: Path, keys: list[SAEKey]) -> tuple[dict[SAEKey, np.ndarray], np.ndarray]:
    with np.load(path) as data:
        return {key: data[f"sae{i}"] for i, key in enumerate(keys)}, data["tiles"]


def label_world(
    world: ModelWorld,
    pipe,
    saes: dict[SAEKey, Any],
    prompts: list[str],
    out: Path,
    cfg: LabelConfig,
    *,
    reads: str = "delta",
    check_disk: bool = True,
    dry_run: bool = False,
    log_line: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Generate `prompts` in chunks, then write every SAE's dictionary and the top-image cache under `out`."""
    if not prompts:
        raise InvalidInputError("prompts", "the prompt set is empty")
    steps = cfg.steps if cfg.steps is not None else world.defaults.steps
    guidance = cfg.guidance if cfg.guidance is not None else world.defaults.guidance
    height, width = world.defaults.height, world.defaults.width
    keys = sorted(saes)
    plan = plan_labelling(world, {k: saes[k].num_latents for k in keys}, len(prompts), cfg, height, width, guidance, steps)
    report: dict[str, Any] = {"model": world.name, "prompts": len(prompts), "steps": steps, "guidance": guidance, "plan": plan.to_json(), "out": str(out)}
    work = out / WORK_DIR
    done_bytes = sum(p.stat().st_size for p in work.glob("chunk-*.npz")) if work.is_dir() else 0
    free = free_bytes(out)
    report["plan"].update(free_bytes=free, already_written_bytes=done_bytes, fits=free + done_bytes >= plan.total_bytes)
    if dry_run:
        return {**report, "dry_run": True}
    if check_disk and not report["plan"]["fits"]:
        raise InvalidInputError("out", f"labelling needs {human_bytes(plan.total_bytes - done_bytes)} more under {out} but only "
                                f"{human_bytes(free)} is free; free space, choose another --out or use fewer prompts")
    _check_manifest(work, _fingerprint(world, prompts, cfg, steps, guidance, keys))
    tile = tile_size(height, width, cfg.tile)
    started, generated = time.perf_counter(), 0
    for index, start in enumerate(range(0, len(prompts), cfg.chunk_prompts)):
        path = work / f"chunk-{index:05d}.npz"
        if path.is_file():
            continue
        chunk = prompts[start : start + cfg.chunk_prompts]
        table = feature_table(pipe, saes, chunk, steps=steps, guidance=guidance, height=height, width=width,
                              batch=cfg.prompts_per_batch, seed=cfg.seed + start, keep_images=True, reads=reads)
        _save_chunk(path, table, keys, tile)
        generated += len(chunk)
        rate = (time.perf_counter() - started) / generated
        left = len(prompts) - start - len(chunk)
        log_line(f"chunk {index + 1}/{plan.chunks}: {start + len(chunk)}/{len(prompts)} prompts, about {rate * left:.0f} s left")
    activations: dict[SAEKey, list[np.ndarray]] = {k: [] for k in keys}
    tiles = []
    for index in range(plan.chunks):
        acts, chunk_tiles = _load_chunk(work / f"chunk-{index:05d}.npz", keys)
        for key in keys:
            activations[key].append(acts[key])
        tiles.append(chunk_tiles)
    table = FeatureTable(list(prompts), {k: np.concatenate(v) for k, v in activations.items()}, np.concatenate(tiles))
    generation = {"model": world.name, "seed": cfg.seed, "steps": steps, "guidance": guidance, "prompts": len(prompts)}
    save_top_images(out / LABELS_DIR, table, generation, top=cfg.top)
    summaries = {}
    for key in keys:
        meta = {"block": key[0], "window": key[1], "branch": key[2], **generation}
        dictionary = word_dictionary(table.activations[key], prompts, cfg.words, meta=meta)
        name = "/".join(key)
        if dictionary is None:
            summaries[name] = None
            log_line(f"{name}: no prompt word passes the filters; no concepts.json written")
            continue
        folder = concepts_folder(out, key)
        folder.mkdir(parents=True, exist_ok=True)
        save_concepts(dictionary, folder)
        top = sorted(dictionary["concepts"].items(), key=lambda item: -len(item[1]))[:10]
        summaries[name] = {**{k: dictionary["summary"][k] for k in ("alive", "labelled", "concepts_covered")},
                           "top_concepts": [label for label, _ in top]}
    report.update(dictionaries=summaries, seconds=round(time.perf_counter() - started, 1),
                  registry_entry={"labels": {"path": str(out.resolve())}})
    return report


def release_files(out: Path) -> list[str]:
    """Repo-relative paths of what a labelling run publishes: dictionaries and the top-image cache."""
    files = sorted(p.relative_to(out).as_posix() for p in (out / LABELS_CONCEPTS_DIR).rglob("concepts.json")) if (out / LABELS_CONCEPTS_DIR).is_dir() else []
    top = out / LABELS_DIR
    files += sorted(p.relative_to(out).as_posix() for p in top.iterdir() if p.is_file()) if top.is_dir() else []
    return files


def push_labels(out: Path, repo: str, private: bool = False) -> dict[str, Any]:
    """Upload the dictionaries and top images of `out` to a Hub model repo in one commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from ..errors import CheckpointError, HubUnavailableError
    from ..hub import validate_repo_id

    validate_repo_id(repo, field="push_to_hub")
    files = release_files(out)
    if not files:
        raise CheckpointError(f"{out} holds no dictionaries or top images to push; run the labelling first")
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo, folder_path=str(out), repo_type="model", allow_patterns=files,
                                   commit_message=f"Concept Lab labels ({sum(f.endswith('concepts.json') for f in files)} dictionaries, top images)")
    except OfflineModeIsEnabled as exc:
        raise HubUnavailableError(f"cannot push to {repo}: HF_HUB_OFFLINE is set; unset it and retry") from exc
    except HfHubHTTPError as exc:
        raise HubUnavailableError(f"pushing to {repo} failed: {exc}; check your connection and that you are logged in with write access") from exc
    return {"repo": repo, "files": len(files), "commit": getattr(commit, "oid", None), "registry_entry": {"labels": {"repo": repo}}}
