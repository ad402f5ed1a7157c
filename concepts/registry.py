"""The model registry: which model worlds the app and CLI offer, and where their parts live.

Read once from `checkpoints/registry.json` (SAELens' pretrained-SAE directory is the model: a plain
data file, parsed into frozen dataclasses, unknown names answered with the valid ones). Each world
names its base pipeline, its SAEs (one per block × stage window × CFG branch, each with a concept
dictionary `concepts.json` beside it) and its sampling defaults.

A repo id may be an environment variable, `"${CONCEPT_LAB_SD14_SAES}"` or `"${VAR:-owner/name}"`
with a default: whoever publishes SAEs (`python -m concepts.train --push-to-hub`) points a Space at
them without editing this file. An SAE whose variable is unset and has no default is left out.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, InvalidInputError, UnknownNameError
from .hub import Source
from .steps import BRANCHES, READS, STAGES

if TYPE_CHECKING:
    from .world import WorldKnowledge

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_REGISTRY = CHECKPOINTS_DIR / "registry.json"
SAE_FORMATS = ("native", "unbox")
WINDOWS = (*STAGES, "all")
EDIT_SCOPES = ("row", "matrix", "model")
"""Where erase / amplify take the top weights (see `concepts.edit.ablation`); kept here, torch-free,
so the registry, the CLI's --help and the ablation code share one list."""
STRENGTH_SCALES = ("paper", "feature-mean")
STEER_BRANCHES = ("cond", "both")
"""Which guidance branch a steering edit changes; torch-free for the CLI."""
EDIT_MODES = ("fast", "faithful")
"""How CAD attribution draws its trajectories (`concepts.edit.attribution`); torch-free for the CLI."""
EDIT_PROTECTS = ("presence", "identity")
"""What of a kept concept erase spares (see `concepts.edit.service.EditSpec.protect`); torch-free for the CLI."""
EDIT_METHODS = ("cad", "uce")
"""How an edit is made: CAD zeroes attributed feed-forward weights; UCE edits cross-attention K/V in
closed form (`concepts.edit.uce`); torch-free for the CLI."""
CONCEPT_IMAGE_SOURCES = ("template", "toy-world")
_ENV_REPO = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}$")


@dataclass(frozen=True)
class Defaults:
    """Sampling defaults of a model world (the paper: 50 DDIM steps, guidance 7.5, 512 px)."""

    steps: int = 50
    guidance: float = 7.5
    height: int = 512
    width: int = 512
    strengths: dict | None = field(default=None, hash=False)
    """Steering β per mode ("spatial", "global") and window; None: the paper's (`steering.PAPER_STRENGTH`)."""
    concept_template: str = "a photo of a {concept}"
    """How a concept becomes a prompt for attribution. "a photo of a {concept}" is our choice for SD
    worlds; the CAD authors' erase scripts attribute the bare word (docs/cad.md)."""
    edit_ratio: float = 0.001
    """Default share of the feed-forward weights zeroed by erase / amplify, taken per `edit_scope`
    (CAD's 0.001 per row on SD1.4)."""
    strength_scale: str = "paper"
    """What a steering strength means: "paper" (the paper's spatial and global edits) or
    "feature-mean" (the sdxl-unbox demo's: β × the feature's mean activation, added where painted)."""
    steer_branch: str = "cond"
    """Which guidance branch a steering edit changes when the request names none: "cond" (the
    paper's) or "both" (SAeUron applies its SAE edits to both halves of the batch)."""
    amplify_ratio: float | None = None
    """Default share zeroed by amplify, in the same scope (None: `edit_ratio`): amplify moves a
    concept at much smaller ratios than erase needs, and past them it wrecks the images."""
    edit_mode: str = "fast"
    """Attribution mode of erase / amplify when the request names none: "fast" (one trajectory per
    image) or "faithful" (a fresh trajectory per timestep; see `python -m concepts.toy.evaluate
    stability` for how far each depends on its seed)."""
    attribution_images: dict = field(default_factory=lambda: {"fast": 2, "faithful": 2}, hash=False)
    """Images (independent trajectory sets) attribution sums over, per mode."""
    edit_min_per_row: int = 0
    """Weights zeroed per row at least, whatever the ratio (narrow models may need 1)."""
    edit_scope: str = "row"
    """Where erase / amplify take the top weights: per "row" (CAD's), per "matrix" or over the whole "model"."""
    edit_keep: tuple[str, ...] = ()
    """Concepts the Erase tab offers to keep, pre-filled (toy-shapes: the colours other than its
    example concept, red): kept concepts' weights are spared, so the rest survives better."""
    concept_images: str = "template"
    """Where the Erase tab's images of the concept come from: "template" (the concept prompt, one
    seed per image) or "toy-world" (fully specified toy captions with the concept's value: on toy-shapes
    an erase fares differently on "a red shape", the prompt it is attributed on, than on full captions,
    and the full captions are what its measured tables use)."""
    edit_scenes: int = 0
    """Toy worlds: erase / amplify attribute over this many fully specified scenes of the concept
    (`cad.scenes`); 0: over the concept prompt alone, as CAD does."""
    closed_vocabulary: bool = False
    """The text encoder knows only the words its tokenizer holds whole (toy-shapes): other words
    are warned about in prompts and refused as concept names."""

    def ratio_for(self, action: str) -> float:
        """The default ratio of an erase or an amplify."""
        return self.amplify_ratio if action == "amplify" and self.amplify_ratio is not None else self.edit_ratio

    @property
    def toy_scenes(self) -> bool:
        """Whether the world's scenes are known (a toy world): the Erase tab's fully specified
        images of a concept, and attribution over scenes, need them."""
        return self.concept_images == "toy-world"

    def __post_init__(self) -> None:
        if "{concept}" not in self.concept_template:
            raise InvalidInputError("defaults.concept_template", f"{self.concept_template!r} has no {{concept}} slot")
        if not (isinstance(self.edit_ratio, (int, float)) and 0 < self.edit_ratio <= 0.5):
            raise InvalidInputError("defaults.edit_ratio", f"must be in (0, 0.5], got {self.edit_ratio!r}")
        if self.strength_scale not in STRENGTH_SCALES:
            raise InvalidInputError("defaults.strength_scale", f"{self.strength_scale!r} is not one of {', '.join(STRENGTH_SCALES)}")
        if self.steer_branch not in STEER_BRANCHES:
            raise InvalidInputError("defaults.steer_branch", f"{self.steer_branch!r} is not one of {', '.join(STEER_BRANCHES)}")
        if self.amplify_ratio is not None and not (isinstance(self.amplify_ratio, (int, float)) and 0 < self.amplify_ratio <= 0.5):
            raise InvalidInputError("defaults.amplify_ratio", f"must be in (0, 0.5], got {self.amplify_ratio!r}")
        if self.edit_mode not in EDIT_MODES:
            raise InvalidInputError("defaults.edit_mode", f"{self.edit_mode!r} is not one of {', '.join(EDIT_MODES)}")
        images = self.attribution_images
        if not isinstance(images, dict) or set(images) != set(EDIT_MODES) or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 64 for n in images.values()):
            raise InvalidInputError("defaults.attribution_images", f"must give each of {', '.join(EDIT_MODES)} a whole number in 1..64, got {images!r}")
        if self.edit_scope not in EDIT_SCOPES:
            raise InvalidInputError("defaults.edit_scope", f"{self.edit_scope!r} is not one of {', '.join(EDIT_SCOPES)}")
        if isinstance(self.edit_keep, str) or not all(isinstance(k, str) and k.strip() for k in self.edit_keep):
            raise InvalidInputError("defaults.edit_keep", f"must be a list of concept names, got {self.edit_keep!r}")
        object.__setattr__(self, "edit_keep", tuple(self.edit_keep))
        if self.concept_images not in CONCEPT_IMAGE_SOURCES:
            raise InvalidInputError("defaults.concept_images", f"{self.concept_images!r} is not one of {', '.join(CONCEPT_IMAGE_SOURCES)}")
        if isinstance(self.edit_scenes, bool) or not isinstance(self.edit_scenes, int) or not 0 <= self.edit_scenes <= 8:
            raise InvalidInputError("defaults.edit_scenes", f"must be a whole number in 0..8, got {self.edit_scenes!r}")
        if self.edit_scenes and not self.toy_scenes:
            raise InvalidInputError("defaults.edit_scenes", "needs a toy world (concept_images \"toy-world\"): only there are scenes known")
        if self.strengths is None:
            return
        for mode in ("spatial", "global"):
            table = self.strengths.get(mode) if isinstance(self.strengths, dict) else None
            if not isinstance(table, dict) or "middle" not in table:
                raise InvalidInputError("defaults.strengths", f"needs a {mode!r} table with at least a 'middle' value")
            bad = [w for w, v in table.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
            if bad:
                raise InvalidInputError("defaults.strengths", f"{mode} values for {bad} are not finite numbers")


@dataclass(frozen=True)
class SAEEntry:
    """One SAE of a model world: the block it reads, when, on which branch, and where it lives."""

    block: str
    """Diffusers module name of the transformer block, e.g. "mid_block.attentions.0"."""
    window: str
    """Stage window it was trained for: early, middle, final, or all (one SAE for every step)."""
    source: Source
    branch: str = "cond"
    format: str = "native"
    """Checkpoint format: "native" (cfg.json + sae.safetensors) or "unbox" (sdxl-unbox)."""
    reads: str = "delta"
    """"delta" (block output − input) or "output" (the block output, as SAeUron reads it)."""

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise InvalidInputError("window", f"{self.window!r} is not one of {', '.join(WINDOWS)}")
        if self.branch not in BRANCHES:
            raise InvalidInputError("branch", f"{self.branch!r} is not one of {', '.join(BRANCHES)}")
        if self.format not in SAE_FORMATS:
            raise InvalidInputError("format", f"{self.format!r} is not one of {', '.join(SAE_FORMATS)}")
        if self.reads not in READS:
            raise InvalidInputError("reads", f"{self.reads!r} is not delta or output")


@dataclass(frozen=True)
class ModelWorld:
    """A model the app can run: its pipeline, SAEs and defaults."""

    name: str
    title: str
    pipeline: Source
    defaults: Defaults = Defaults()
    saes: tuple[SAEEntry, ...] = ()
    examples: tuple[str, ...] = ()
    """Example prompts shown in the UI."""
    top_images: Source | None = None
    """Cache of generated images with each SAE feature's top activations (`concepts.steer.top_images`)."""
    labels: Source | None = None
    """Labels made for SAEs that ship none (`python -m concepts label`): a folder or Hub repo with
    `concepts/<block>/<window>/<branch>/concepts.json` and, unless `top_images` is set, `top_images/`."""
    base_dir: Path = field(default=CHECKPOINTS_DIR, compare=False)
    """Folder that relative local paths are resolved against (the registry file's folder)."""
    needs: str = ""
    """What running it takes, for the model menu: hardware and first-use download."""
    concept_examples: tuple[str, ...] = ()
    """Concepts the Erase tab offers as examples (ones this world draws)."""
    knowledge_class: str | None = None
    """"module:Class" of what the world knows beyond its weights (`concepts.world.WorldKnowledge`:
    a judge, attributes, scenes); None: nothing (every answer "none")."""

    @property
    def knowledge(self) -> "WorldKnowledge":
        """What panels may ask this world (its reader, attributes, scenes): built once per world."""
        key = (self.name, self.knowledge_class, str(self.base_dir), self.pipeline.describe())
        with _KNOWLEDGE_LOCK:
            if key not in _KNOWLEDGE:
                _KNOWLEDGE[key] = _knowledge_class(self.knowledge_class)(self)
            return _KNOWLEDGE[key]

    def sae(self, block: str, window: str, branch: str = "cond") -> SAEEntry:
        for entry in self.saes:
            if entry.block == block and entry.window in (window, "all") and entry.branch == branch:
                return entry
        valid = [f"{e.block}/{e.window}/{e.branch}" for e in self.saes]
        raise UnknownNameError(f"SAE of model {self.name!r}", f"{block}/{window}/{branch}", valid)

    @property
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(e.block for e in self.saes))


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelWorld]
    default: str
    path: Path | None = None

    def get(self, name: str | None = None) -> ModelWorld:
        """The named world, or the default one for None / ""."""
        key = name or self.default
        if key not in self.models:
            raise UnknownNameError("model", key, list(self.models))
        return self.models[key]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def describe(self) -> list[dict[str, Any]]:
        """A JSON-ready listing (for `python -m concepts models --json`)."""
        return [
            {
                "name": m.name,
                "title": m.title,
                "default": m.name == self.default,
                "pipeline": m.pipeline.describe(),
                "defaults": vars(m.defaults),
                "saes": [{"block": e.block, "window": e.window, "branch": e.branch, "format": e.format, "reads": e.reads, "source": e.source.describe()} for e in m.saes],
            }
            for m in self.models.values()
        ]

    @classmethod
    def from_file(cls, path: str | Path) -> "Registry":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"registry file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"registry file {path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data, base_dir=path.parent, path=path)
        except UnknownNameError:
            raise
        except KeyError as exc:
            raise CheckpointError(f"registry file {path} is malformed: missing field {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"registry file {path} is malformed: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict, base_dir: Path = CHECKPOINTS_DIR, path: Path | None = None) -> "Registry":
        models = {}
        for name, spec in data["models"].items():
            saes = tuple(
                SAEEntry(
                    block=s["block"],
                    window=s["window"],
                    branch=s.get("branch", "cond"),
                    format=s.get("format", "native"),
                    reads=s.get("reads", "delta"),
                    source=_source(s),
                )
                for s in map(_with_env_repo, spec.get("saes", []))
                if s is not None
            )
            models[name] = ModelWorld(
                name=name,
                title=spec.get("title", name),
                pipeline=_source(spec["pipeline"]),
                defaults=Defaults(**spec.get("defaults", {})),
                saes=saes,
                examples=tuple(spec.get("examples", ())),
                top_images=_source(spec["top_images"]) if spec.get("top_images") else None,
                labels=_source(spec["labels"]) if spec.get("labels") else None,
                base_dir=base_dir,
                knowledge_class=spec.get("knowledge"),
                needs=str(spec.get("needs", "")),
                concept_examples=tuple(spec.get("concept_examples", ())),
            )
        default = data.get("default") or next(iter(models))
        if default not in models:
            raise UnknownNameError("default model", default, list(models))
        return cls(models=models, default=default, path=path)


_KNOWLEDGE: dict[tuple, "WorldKnowledge"] = {}
_KNOWLEDGE_LOCK = threading.Lock()


def _knowledge_class(name: str | None) -> type:
    """The class a registry entry names ("package.module:Class"), imported on first use; the
    base `WorldKnowledge` (knows nothing) for None."""
    from .world import WorldKnowledge

    if name is None:
        return WorldKnowledge
    module, _, attribute = name.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError):
        raise CheckpointError(f"registry: knowledge {name!r} is not an importable module:Class") from None
    if not (isinstance(found, type) and issubclass(found, WorldKnowledge)):
        raise CheckpointError(f"registry: knowledge {name!r} is not a WorldKnowledge class")
    return found


def _with_env_repo(spec: dict) -> dict | None:
    """The SAE spec with a `${VAR}` / `${VAR:-default}` repo filled in from the environment; None
    when the variable is unset (or empty) and there is no default."""
    repo = spec.get("repo")
    match = _ENV_REPO.match(repo) if isinstance(repo, str) else None
    if match is None:
        return spec
    value = os.environ.get(match.group(1)) or match.group(2)
    return {**spec, "repo": value} if value else None


def _source(spec: dict) -> Source:
    return Source(
        repo=spec.get("repo"),
        path=spec.get("path"),
        subfolder=spec.get("subfolder"),
        revision=spec.get("revision"),
    )


@lru_cache(maxsize=4)
def _load(path: str) -> Registry:
    return Registry.from_file(path)


def load_registry(path: str | Path | None = None) -> Registry:
    """The registry at `path` (default: `checkpoints/registry.json`, or $CONCEPT_LAB_REGISTRY), read once."""
    chosen = path or os.environ.get("CONCEPT_LAB_REGISTRY") or DEFAULT_REGISTRY
    return _load(str(Path(chosen).resolve()))
