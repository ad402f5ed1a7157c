"""Load the SAE a registry entry names, checked against the model it will be attached to.

Resolves the entry's source (a Hub repo through the Hub cache, or a local folder), loads it in its
format (our native one, or sdxl-unbox), reads the concept dictionary beside it, and checks that the
block exists in the UNet and has the width the SAE reads, so a checkpoint of another model is a
clear error rather than a shape crash in the middle of a generation.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import torch
from torch import nn

from .dictionary import concept_features
from .errors import UnknownNameError
from .hooks import block_width, resolve_blocks
from .hub import member_path, resolve
from .registry import ModelWorld, SAEEntry
from .sae import TopKSAE, load_concepts, load_native, load_unbox

REQUIRED_FILES = {"native": ["cfg.json", "sae.safetensors"], "unbox": ["config.json", "state_dict.pth", "mean.pt", "std.pt"]}


class LoadedSAE(NamedTuple):
    entry: SAEEntry
    sae: TopKSAE
    concepts: dict | None
    """The concept dictionary (concepts.json) or None when the checkpoint has none."""
    feature_mean: torch.Tensor | None
    """Per-feature mean activation [n] (sdxl-unbox ships it; used to scale edits)."""
    feature_std: torch.Tensor | None


def loading_notes(loaded: LoadedSAE) -> list[str]:
    """What a user should know about how a checkpoint is run, beyond its shape (e.g. SAeUron's
    training-only flags, which inference ignores as SAeUron's own loader does)."""
    flags = loaded.sae.cfg.training_only
    if not flags:
        return []
    return [f"written with {', '.join(flags)} (a training option); encoded with per-sample TopK, as its authors' loader does"]


def load_entry(world: ModelWorld, entry: SAEEntry, unet: nn.Module | None = None, device: torch.device | str = "cpu") -> LoadedSAE:
    """Load one registry SAE; with `unet`, check that its block exists and has the SAE's width."""
    folder = resolve(entry.source, required=REQUIRED_FILES[entry.format], base_dir=world.base_dir)
    if entry.format == "native":
        sae, mean, std = load_native(folder, device=device), None, None
    else:
        unboxed = load_unbox(folder, block=entry.block, device=device)
        sae, mean, std = unboxed.sae, unboxed.feature_mean, unboxed.feature_std
    if unet is not None:
        module = resolve_blocks(unet, [entry.block])[entry.block.removeprefix("unet.")]
        sae.check_width(block_width(module), entry.block)
    concepts = load_concepts(folder)
    if concepts is None and world.labels is not None:
        concepts = labels_dictionary(world, entry)
    return LoadedSAE(entry, sae.eval().requires_grad_(False), concepts, mean, std)


LABELS_CONCEPTS_DIR = "concepts"
"""Inside a world's `labels` folder (what `python -m concepts label` writes): one dictionary per SAE."""


def labels_member(block: str, window: str, branch: str) -> str:
    """The folder, inside `labels`, of one SAE's `concepts.json`: written by the label command, read here."""
    return f"{LABELS_CONCEPTS_DIR}/{block}/{window}/{branch}"


def labels_dictionary(world: ModelWorld, entry: SAEEntry) -> dict | None:
    """The dictionary the world's `labels` hold for an SAE (`python -m concepts label`), or None."""
    root = resolve(world.labels, required=[], base_dir=world.base_dir)
    folder = member_path(root, labels_member(entry.block, entry.window, entry.branch), "labels folder")
    return load_concepts(folder) if folder.is_dir() else None


class SAECache:
    """SAEs loaded once per (world, block, window, branch) and shared read-only by all requests."""

    def __init__(self) -> None:
        self._saes: dict[tuple[str, str, str, str], LoadedSAE] = {}
        self._lock = threading.Lock()

    def get(self, world: ModelWorld, block: str, window: str, branch: str = "cond", unet: nn.Module | None = None) -> LoadedSAE:
        entry = world.sae(block, window, branch)
        key = (world.name, entry.block, entry.window, entry.branch)
        with self._lock:
            if key not in self._saes:
                device = next(unet.parameters()).device if unet is not None else "cpu"
                self._saes[key] = load_entry(world, entry, unet, device)
            return self._saes[key]

    def at_hand(self, world: ModelWorld, block: str, window: str, branch: str = "cond", unet: nn.Module | None = None) -> LoadedSAE | None:
        """The SAE when reading it costs no download: already loaded, or in a local folder (the toy's);
        None for a Hub SAE not loaded yet (a failed search should not fetch a model's every SAE)."""
        entry = world.sae(block, window, branch)
        with self._lock:
            loaded = self._saes.get((world.name, entry.block, entry.window, entry.branch))
        if loaded is None and entry.source.path is not None:
            loaded = self.get(world, block, window, branch, unet)
        return loaded


SAES = SAECache()
"""SAEs shared by every panel (steering, exploring, icons, evolution): loaded once per process."""


def labelled_saes(world: ModelWorld, concept: str, unet: nn.Module | None = None) -> list[tuple[LoadedSAE, list[int]]]:
    """Every cond SAE of the world whose dictionary labels `concept`, with its features labelled with it
    (best first). Groups are left out: each of their features fires on many images that do not show
    the concept, and only the sum stands for it (`concepts.feature_groups`)."""
    found = []
    for entry in world.saes:
        if entry.branch != "cond":
            continue
        loaded = SAES.get(world, entry.block, entry.window, "cond", unet)
        try:
            found.append((loaded, concept_features(loaded.concepts or {}, concept, kinds=("label",))))
        except UnknownNameError:
            continue
    return found
