"""A feature's top-activating images, from a cached prompt set (design: cheap to browse, built once).

On disk (a local folder or a Hub repo folder, so a real model's cache can live on the Hub):
- `index.json`: format, the prompts, how they were generated, the tile size and one entry per SAE;
- `images.png`: every image as one tile of a grid (PNG keeps flat toy images small);
- `<block>__<window>__<branch>.safetensors`: per feature, the ids and values of its top images.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, UnknownNameError
from ..hub import member_path, resolve
from ..registry import ModelWorld
from .feature_table import FeatureTable, SAEKey

FORMAT = "concept-lab-top-images/1"
INDEX = "index.json"
GRID = "images.png"
LABELS_DIR = "top_images"
"""The cache's folder inside a world's `labels` (what `python -m concepts label` writes)."""


def sae_file(key: SAEKey) -> str:
    return "__".join(key) + ".safetensors"


def save_top_images(folder: Path, table: FeatureTable, meta: dict, top: int = 8) -> Path:
    """Write the cache for every SAE of `table` (which must have kept its images)."""
    if table.images is None or not len(table.images):
        raise ValueError("the feature table kept no images")
    folder.mkdir(parents=True, exist_ok=True)
    count, height, width, _ = table.images.shape
    columns = math.ceil(math.sqrt(count))
    grid = np.zeros((math.ceil(count / columns) * height, columns * width, 3), np.uint8)
    for i, image in enumerate(table.images):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    Image.fromarray(grid).save(folder / GRID, optimize=True)
    entries = {}
    for key, acts in table.activations.items():
        values, ids = torch.from_numpy(acts).float().topk(min(top, count), dim=0)  # [top, features]
        save_file({"ids": ids.T.contiguous().int(), "values": values.T.contiguous()}, str(folder / sae_file(key)))
        entries["/".join(key)] = sae_file(key)
    index = {"format": FORMAT, "tile": [height, width], "columns": columns, "count": count, "prompts": table.prompts, "meta": meta, "saes": entries}
    (folder / INDEX).write_text(json.dumps(index, indent=1))
    return folder


@dataclass
class TopImage:
    image: Image.Image
    prompt: str
    value: float


@dataclass
class TopImages:
    """A loaded cache; per-SAE files are read on first use."""

    folder: Path
    index: dict
    grid: np.ndarray
    _tops: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def image(self, i: int) -> Image.Image:
        height, width = self.index["tile"]
        r, c = divmod(i, self.index["columns"])
        return Image.fromarray(self.grid[r * height : (r + 1) * height, c * width : (c + 1) * width])

    def has(self, key: SAEKey) -> bool:
        return "/".join(key) in self.index["saes"]

    def for_feature(self, key: SAEKey, feature: int, count: int = 8) -> list[TopImage]:
        """The images where `feature` fired most, strongest first (images where it never fired are left out)."""
        name = "/".join(key)
        if name not in self.index["saes"]:
            raise UnknownNameError("SAE with cached top images", name, list(self.index["saes"]))
        if name not in self._tops:
            path = member_path(self.folder, self.index["saes"][name], f"index.json entry for {name}")
            try:
                self._tops[name] = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{path} is missing or corrupt ({exc}); rebuild the cache with `python -m concepts top-images`") from None
        ids, values = self._tops[name]["ids"], self._tops[name]["values"]
        if not 0 <= feature < ids.shape[0]:
            raise UnknownNameError("feature", str(feature), [f"0..{ids.shape[0] - 1}"])
        return [
            TopImage(self.image(int(i)), self.index["prompts"][int(i)], float(v))
            for i, v in zip(ids[feature, :count].tolist(), values[feature, :count].tolist())
            if v > 0
        ]


def load_top_images(folder: Path) -> TopImages:
    try:
        index = json.loads((folder / INDEX).read_text())
        grid = np.asarray(Image.open(folder / GRID).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"top-image cache in {folder} is missing or unreadable: {exc}") from None
    if index.get("format") != FORMAT:
        raise CheckpointError(f"top-image cache in {folder} has format {index.get('format')!r}, expected {FORMAT!r}")
    return TopImages(folder, index, grid)


_LOADED: dict[str, TopImages] = {}
_LOCK = threading.Lock()


def world_top_images(world: ModelWorld) -> TopImages:
    """The world's top-image cache (local folder or Hub), loaded once per process."""
    if world.top_images is None and world.labels is None:
        raise CheckpointError(f"model {world.name!r} has no top-image cache; build one with `python -m concepts label` (or `top-images`)")
    with _LOCK:
        if world.name not in _LOADED:
            if world.top_images is not None:
                folder = resolve(world.top_images, required=[INDEX, GRID], base_dir=world.base_dir)
            else:
                folder = resolve(world.labels, required=[f"{LABELS_DIR}/{INDEX}", f"{LABELS_DIR}/{GRID}"], base_dir=world.base_dir) / LABELS_DIR
            _LOADED[world.name] = load_top_images(folder)
        return _LOADED[world.name]
