"""How concepts emerge through the denoising steps of one generation.

At every step: the predicted-x0 preview, and at each chosen block the SAE feature maps (cond branch,
read by the SAE of the step's stage). Concept scores come from each SAE's dictionary: a concept's
map is, per position, the strongest of its features; its score at a step is the mean of that map.
The composition map names the dominant concept per position; "decided at" is the first step from
which a reading (a concept group's leader, or the judge on the preview) stays what it ends as.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..errors import InvalidInputError
from ..features import feature_maps
from ..generation import prepare
from ..hooks import BlockHooks, Capture
from ..mask_dictionary import region_weights
from ..pipeline import PipelineCache
from ..progress import ProgressFn, step_reporter
from ..registry import ModelWorld, Registry
from ..saes import SAES
from ..batching import batched_generate
from ..sampling import GenerationRequest, to_pil
from ..steps import stage_of
from ..world import Reader

NO_CONCEPT = "(none)"


@dataclass(frozen=True)
class ConceptScore:
    label: str
    score: float
    block: str


@dataclass
class BlockTrace:
    """One block's concept maps through the steps: maps[step] is [concepts, H, W]."""

    block: str
    labels: list[str]
    groups: dict[str, str]
    """Label → what it is a value of (the dictionary's attribute, or the label itself)."""
    maps: list[np.ndarray] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    """Where the dictionaries' features fire ("object", "background"), when they say so (`concepts.mask_dictionary`)."""
    label_regions: dict[str, str] = field(default_factory=dict)
    """Label → the region its features fire on."""
    region_maps: list[np.ndarray] = field(default_factory=list)
    """region_maps[step] is [regions, H, W]: per region, the sum of its features' maps, each divided by
    the feature's peak (so a region's many weak features count as much as one strong one)."""

    def region_at(self, step: int) -> np.ndarray | None:
        """[H, W] index into `regions` of the region whose features fire most, or None without regions."""
        return self.region_maps[step].argmax(axis=0) if self.regions and self.region_maps else None

    def curves(self) -> np.ndarray:
        """[steps, concepts]: each concept's score (mean of its map) per step."""
        return np.stack([m.mean(axis=(1, 2)) for m in self.maps]) if self.maps else np.zeros((0, len(self.labels)))

    def composition(self, step: int, floor: float = 0.25) -> np.ndarray:
        """[H, W] index of the dominant concept per position; -1 where nothing reaches `floor` × the step's peak."""
        maps = self.maps[step]
        if not len(self.labels):
            return np.full(maps.shape[1:], -1)
        region = self.region_at(step)
        if region is not None:  # only a concept of the region that fires there may name a position
            allowed = np.array([[self.label_regions.get(label) == name for name in self.regions] for label in self.labels])  # [labels, regions]
            maps = np.where(allowed[:, region], maps, 0.0)
        best = maps.argmax(axis=0)
        strength = maps.max(axis=0)
        best[strength <= floor * max(float(self.maps[step].max()), 1e-12)] = -1
        return best


class Evolution(NamedTuple):
    world: ModelWorld
    request: GenerationRequest
    timesteps: list[int]
    previews: list[Image.Image]
    image: Image.Image
    traces: dict[str, BlockTrace]
    readings: list[dict[str, str]] | None
    """The reader's attribute values per step's preview (toy judge), or None without a reader."""
    warnings: list[str]
    seconds: float

    def top_concepts(self, step: int, count: int = 5) -> list[ConceptScore]:
        """The strongest concepts at a step, over every traced block."""
        scores = []
        for trace in self.traces.values():
            if trace.labels:
                for label, value in zip(trace.labels, trace.maps[step].mean(axis=(1, 2))):
                    scores.append(ConceptScore(label, float(value), trace.block))
        best: dict[str, ConceptScore] = {}
        for s in sorted(scores, key=lambda s: -s.score):
            best.setdefault(s.label, s)
        return [s for s in best.values() if s.score > 0][:count]


def concept_tables(concepts: dict | None) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    """Labels, their feature ids and their groups from a dictionary (empty without one)."""
    table = (concepts or {}).get("concepts", {})
    attribute = {f["label"]: f.get("attribute") or f["label"] for f in (concepts or {}).get("features", []) if f.get("labelled")}
    labels = sorted(table)
    return labels, {label: list(table[label]) for label in labels}, {label: attribute.get(label, label) for label in labels}


def region_tables(concepts: dict | None, n_features: int) -> tuple[list[str], np.ndarray, dict[str, str]] | None:
    """Regions, per-feature weights [n_features, regions] (`concepts.mask_dictionary.region_weights`:
    1 / peak on the feature's region, with the dictionary's `region_cut` applied) and each label's
    region, from a dictionary labelled against masks; None for one without `fires_on`."""
    features = (concepts or {}).get("features", [])
    if not features or any("fires_on" not in f for f in features):
        return None
    meta = (concepts or {}).get("meta", {})
    regions = list(meta.get("regions") or sorted({f["fires_on"] for f in features}))
    weights = region_weights(features, regions, n_features, meta.get("region_cut"))
    label_regions = {f["label"]: f["fires_on"] for f in features if f.get("labelled")}
    return regions, weights, label_regions


def decided_at(sequence: list[str | None]) -> int | None:
    """First index from which the sequence stays equal to its last value (None if it ends unknown)."""
    if not sequence or sequence[-1] is None:
        return None
    last = sequence[-1]
    index = len(sequence) - 1
    while index > 0 and sequence[index - 1] == last:
        index -= 1
    return index


def decided_by_features(trace: BlockTrace) -> dict[str, int | None]:
    """Per concept group: the first step from which its strongest label is the one it ends with."""
    curves = trace.curves()
    out = {}
    for group in sorted(set(trace.groups.values())):
        members = [i for i, label in enumerate(trace.labels) if trace.groups[label] == group]
        leaders = [trace.labels[members[int(np.argmax(curves[s, members]))]] if curves[s, members].max() > 0 else None for s in range(len(curves))]
        out[group] = decided_at(leaders)
    return out


def decided_by_reader(readings: list[dict[str, str]]) -> dict[str, int | None]:
    return {name: decided_at([r[name] for r in readings]) for name in (readings[0] if readings else {})}


@torch.no_grad()
def run_evolution(
    model: str | None,
    prompt: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    blocks: list[str] | None = None,
    reader: Reader | None = None,
    with_previews: bool = True,
    device: str = "auto",
    registry: Registry | None = None,
    cache: PipelineCache | None = None,
    progress: ProgressFn | None = None,
) -> Evolution:
    """Generate once, keeping every step's preview and the blocks' concept maps (default: every SAE block).

    `with_previews=False` skips decoding the x0 previews (and the reader): concept maps only."""
    world, request, warnings, pipe = prepare(model, prompt, seed=seed, steps=steps, guidance=guidance, device=device, registry=registry, cache=cache)
    chosen = list(dict.fromkeys(blocks or world.blocks))
    stages = sorted({stage_of(i, request.steps) for i in range(request.steps)})
    saes = {(b, s): SAES.get(world, b, s, "cond", pipe.unet) for b in chosen for s in stages}
    tables = {key: concept_tables(loaded.concepts) for key, loaded in saes.items()}
    all_labels = {b: sorted({label for (bb, _), t in tables.items() if bb == b for label in t[0]}) for b in chosen}
    traces = {}
    for b in chosen:
        groups: dict[str, str] = {}
        for (bb, _), (_, _, g) in tables.items():
            if bb == b:
                groups.update(g)
        traces[b] = BlockTrace(saes[(b, stages[0])].entry.block, all_labels[b], groups)
    regions = {key: region_tables(loaded.concepts, loaded.sae.num_latents) for key, loaded in saes.items()}
    for b in chosen:
        found = [regions[key] for key in saes if key[0] == b]
        if found and all(r is not None and r[0] == found[0][0] for r in found):  # every window's SAE says where it fires
            traces[b].regions = found[0][0]
            for r in found:
                traces[b].label_regions.update(r[2])
    region_weights = {key: torch.from_numpy(r[1]) for key, r in regions.items() if r is not None and traces[key[0]].regions}

    # Per SAE, one gather turns its feature maps into the trace's concept maps: index [labels, widest]
    # into the features plus one all-zero column that pads the shorter concepts.
    gathers: dict[tuple[str, str], tuple[torch.Tensor, list[int]]] = {}
    for key, (labels, features, _) in tables.items():
        n = saes[key].sae.num_latents
        widest = max((len(features[label]) for label in labels), default=1)
        index = torch.full((max(1, len(labels)), widest), n, dtype=torch.long)
        for row, label in enumerate(labels):
            index[row, : len(features[label])] = torch.tensor(features[label])
        gathers[key] = (index, [traces[key[0]].labels.index(label) for label in labels])
    by_block = {(saes[k].entry.block, k[1]): k for k in saes}

    def sink(block: str, capture: Capture) -> None:
        key = by_block[(block, stage_of(capture.step.index, request.steps))]
        index, rows = gathers[key]
        maps = feature_maps(saes[key].sae, capture.cond)[0].float().cpu()  # [H, W, n]
        padded = torch.cat([maps, maps.new_zeros(*maps.shape[:2], 1)], dim=-1)
        concept_maps = padded[..., index].amax(dim=-1).permute(2, 0, 1).numpy()  # [labels, H, W]
        trace = traces[key[0]]
        stacked = np.zeros((len(trace.labels), maps.shape[0], maps.shape[1]), np.float32)
        if rows:
            stacked[rows] = concept_maps[: len(rows)]
        trace.maps.append(stacked)
        if key in region_weights:
            trace.region_maps.append((maps @ region_weights[key]).permute(2, 0, 1).numpy())

    previews: list[Image.Image] = []
    readings: list[dict[str, str]] = []
    timesteps: list[int] = []
    block_names = [saes[(b, stages[0])].entry.block for b in chosen]
    reads = {loaded.entry.reads for loaded in saes.values()}
    if len(reads) > 1:  # one BlockHooks reads every block the same way
        raise InvalidInputError("blocks", "the chosen blocks' SAEs read different things (block output and output − input); follow them one at a time")
    reporter = step_reporter(progress)

    def hooks() -> list[BlockHooks]:
        for collected in (previews, readings, timesteps, *(t.maps for t in traces.values()), *(t.region_maps for t in traces.values())):
            collected.clear()  # a rerun (the shared batch failed) starts again
        return [BlockHooks(pipe.unet, capture=block_names, sink=sink, reads=next(iter(reads)))]

    def on_step(state) -> None:
        if reporter is not None:
            reporter(state)
        timesteps.append(state.timestep)
        if with_previews:
            previews.append(to_pil(state.preview)[0])
            if reader is not None:
                readings.append(reader(state.preview)[0])

    started = time.perf_counter()
    image = batched_generate(pipe, request, on_step, hooks=hooks, previews=with_previews).images[0]  # a class's evolutions share UNet batches
    return Evolution(world, request, timesteps, previews, image, traces, readings if reader and with_previews else None, warnings, time.perf_counter() - started)
