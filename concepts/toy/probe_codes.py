"""`python -m concepts.toy.probe_codes`: how much of each toy attribute a block carries at all, read
from the block's residual update Δ and from its SAE's codes.

Concept search can only find a value that some feature (or small group, `concepts.feature_groups`)
stands for. When none does, this says whether the block carries the attribute anyway: a linear
read-out (multinomial logistic regression on each image's mean and peak over cells, standardised)
is trained on half of the dictionary images and scored on the other half, both ways round, for
several random splits. It reads the same 480 images `python -m concepts.toy.saes --only label`
labels with, once through the raw Δ (the block's channels) and once through each window's SAE
codes. Prints one JSON object: held-out accuracy, mean and spread over the splits, per attribute,
block and window, beside chance (docs/evolution.md has the table). `--values orange red` also reads
each named value against the rest as a read-out is kept (`concepts.feature_readouts`): the held-out
precision, mean and lowest over the folds, once from the whole image and once from only the cells the
object covers (the renderer's mask, `concepts.toy.masks`: what labelling against masks could at best
add), and how many of the value's images the toy judge reads as that value (whether the model drew it).
With `--rival-images N` each is also read against each other value of its attribute in turn, as a
rival read-out is kept (`concepts.rival_readouts`), on the 480 images and on those and N more.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..feature_readouts import ReadoutConfig, fit_on_rows
from ..held_out import halves, held_out_folds
from ..pipeline import load_pipeline_from_folder, pick_device
from ..quiet import quiet_libraries
from ..rival_readouts import held_out_rival_folds
from ..sae import load_native
from ..steer.feature_table import feature_table
from ..steps import STAGES
from . import TOY_DIR
from .judge import load_judge, to_tensor
from .masks import region_masks
from .model import HOOK_BLOCKS
from .prompts import attribute_of, labelled_prompts
from .saes import ToySAERecipe, rival_image_peaks, sae_folder
from .world import ATTRIBUTES

PROBED = ("shape", "colour", "size", "background", "texture")
"""Positions are left out: pooling over cells removes where the object is by design."""
L2 = 1e-2


@dataclass
class RawDelta:
    """Stands in for an SAE in `feature_table`: its "codes" are the block's Δ channels unchanged."""

    num_latents: int
    device: torch.device = torch.device("cpu")

    def encode_dense(self, read: torch.Tensor) -> torch.Tensor:
        return read


def pooled(maps: np.ndarray) -> np.ndarray:
    """[images, H, W, n] → [images, 2n]: the mean and the peak over cells, each standardised."""
    flat = maps.reshape(maps.shape[0], -1, maps.shape[-1]).astype(np.float32)
    x = np.concatenate([flat.mean(axis=1), flat.max(axis=1)], axis=1)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def object_pooled(maps: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """[images, H, W, n] → [images, n]: the mean over the cells the object covers (weighted by the
    covered share, `coverage` [images, H × W]), standardised."""
    flat = maps.reshape(maps.shape[0], -1, maps.shape[-1]).astype(np.float64)
    weights = coverage / np.maximum(coverage.sum(axis=1, keepdims=True), 1e-9)
    x = np.einsum("ic,icf->if", weights, flat)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def judged_share(images: np.ndarray, scenes: list[dict], values: dict[str, str]) -> dict[str, float]:
    """Per value (`values`: value → its attribute): the share of its images the toy judge reads as that
    value (did the model draw it)."""
    judge = load_judge(TOY_DIR / "judge")
    read = [r for start in range(0, len(images), 64) for r in judge.predict(to_tensor(images[start : start + 64]))]
    shares = {}
    for value, attribute in values.items():
        own = [r[attribute] == value for r, s in zip(read, scenes) if s[attribute] == value]
        shares[value] = round(float(np.mean(own)), 3)
    return shares


def probed_values(names: list[str]) -> dict[str, str]:
    """Each `--values` name → its attribute, or ValueError naming the first that is no probed value
    (positions are not probed: pooling over cells removes where the object is)."""
    values = {}
    for name in names:
        found = attribute_of(name)
        if found is None or found[0] not in PROBED:
            raise ValueError(f"--values: {name!r} is not a value of {', '.join(PROBED)}")
        values[found[1]] = found[0]
    return values


def fit_and_score(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Accuracy on the images outside `train` of a logistic read-out fitted on `train`."""
    classes, codes = np.unique(y, return_inverse=True)
    inputs, targets = torch.from_numpy(x[train]), torch.from_numpy(codes[train])
    weight = torch.zeros(x.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=300)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(inputs @ weight + bias, targets) + L2 * (weight ** 2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    with torch.no_grad():
        predicted = (torch.from_numpy(x[~train]) @ weight + bias).argmax(dim=1).numpy()
    return float((predicted == codes[~train]).mean())


def held_out_accuracy(x: np.ndarray, y: np.ndarray, seeds: list[int]) -> dict[str, float]:
    """Mean and spread over `seeds` of the two-fold held-out accuracy."""
    scores = []
    for seed in seeds:
        half = halves(len(y), seed)
        scores.append(np.mean([fit_and_score(x, y, half), fit_and_score(x, y, ~half)]))
    return {"mean": round(float(np.mean(scores)), 3), "sd": round(float(np.std(scores)), 3)}


def held_out_value_precision(x: np.ndarray, positive: np.ndarray, seeds: list[int]) -> dict[str, float]:
    """One value against the rest, the way `concepts.feature_readouts` keeps a read-out: an L1 logistic
    read-out fitted on half the images fires above the median of its positives there; its precision
    on the other half, both ways round per split: the mean and the lowest over all folds."""
    cfg = ReadoutConfig()

    def fit(rows: np.ndarray) -> tuple[np.ndarray, float]:
        weights, threshold = fit_on_rows(x, positive, rows, cfg)
        return x @ weights, threshold

    precisions = [fold[0] for seed in seeds for fold in held_out_folds(fit, positive, seed) or []]
    return {"mean": round(float(np.mean(precisions)), 3), "lowest": round(float(np.min(precisions)), 3)}


def held_out_rival_precision(peaks: np.ndarray, values: np.ndarray, value: str, seeds: list[int]) -> dict[str, float] | None:
    """The value read against each other value of its attribute in turn, as a rival read-out is kept
    (`concepts.rival_readouts`): held-out precision, mean and lowest over every fold of the `seeds`'
    splits; None when it fits nothing."""
    precisions = [fold[0] for seed in seeds for fold in held_out_rival_folds(peaks, values, value, ReadoutConfig(seed=seed)) or []]
    return {"mean": round(float(np.mean(precisions)), 3), "lowest": round(float(np.min(precisions)), 3)} if precisions else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random splits of the images")
    parser.add_argument("--values", nargs="*", default=[], help="also read these values (colours, shapes, sizes, backgrounds, textures) one against the rest (held-out precision, as read-outs are kept)")
    parser.add_argument("--rival-images", type=int, default=0, help="with --values: also read each against its rivals in turn (as rival read-outs are kept), on the dictionary's images and with this many more")
    args = parser.parse_args()
    try:
        values = probed_values(args.values)
    except ValueError as exc:
        parser.error(str(exc))
    quiet_libraries()
    torch.manual_seed(0)
    pipe = load_pipeline_from_folder(TOY_DIR, pick_device("cpu"))
    recipe = ToySAERecipe()
    readers: dict = {(b, w, "cond"): load_native(sae_folder(TOY_DIR, b, w, "cond")).eval() for b in HOOK_BLOCKS.values() for w in STAGES}
    channels = {b: sae.d_in for (b, _, _), sae in readers.items()}
    # the raw Δ readers ride in the same generation under a longer key: feature_table reads only its
    # first three parts (block, window, branch), and the fourth tells the two sources apart below
    readers |= {(b, w, "cond", "delta"): RawDelta(channels[b]) for b in HOOK_BLOCKS.values() for w in STAGES}
    labelled = labelled_prompts(recipe.dictionary_prompts, recipe.seed + 1)
    table = feature_table(pipe, readers, [text for _, text in labelled], steps=recipe.steps, guidance=recipe.guidance, height=64, width=64,
                          batch=recipe.prompts_per_batch, seed=recipe.seed + 1, spatial=True, keep_images=bool(values))
    scenes = [scene.as_dict() for scene, _ in labelled]
    report: dict = {"what": "linear read-out of each attribute", "images": len(scenes), "splits": args.seeds,
                    "chance": {a: round(1 / len(ATTRIBUTES[a]), 3) for a in PROBED}, "blocks": {}}
    positives = {value: np.array([s[attribute] == value for s in scenes]) for value, attribute in values.items()}
    if values:
        report["drawn as asked (judge)"] = judged_share(np.asarray(table.images), scenes, values)
    more_scenes, more_peaks = (rival_image_peaks(pipe, readers, replace(recipe, rival_prompts=args.rival_images), progress=False)
                               if values and args.rival_images else ([], {}))
    for key, maps in table.maps.items():
        block, window = key[0], key[1]
        source = "delta" if len(key) == 4 else "sae codes"
        x = pooled(maps)
        row = {a: held_out_accuracy(x, np.array([s[a] for s in scenes]), args.seeds) for a in PROBED}
        on_object = object_pooled(maps, region_masks([scene for scene, _ in labelled], maps.shape[1], maps.shape[2])[:, 0]) if values else None
        peaks = maps.reshape(maps.shape[0], -1, maps.shape[-1]).max(axis=1).astype(np.float32) if more_peaks else None
        for value, positive in positives.items():
            row[f"{value} precision"] = held_out_value_precision(x, positive, args.seeds)
            row[f"{value} precision, object cells"] = held_out_value_precision(on_object, positive, args.seeds)
            if more_peaks:
                attribute = values[value]
                own = np.array([s[attribute] for s in scenes], dtype=object)
                more = np.array([s.as_dict()[attribute] for s in more_scenes], dtype=object)
                row[f"{value} against each rival, {len(own)} images"] = held_out_rival_precision(peaks, own, value, args.seeds)
                row[f"{value} against each rival, {len(own) + len(more)} images"] = held_out_rival_precision(
                    np.concatenate([peaks, more_peaks[key]]), np.concatenate([own, more]), value, args.seeds)
        report["blocks"].setdefault(block, {}).setdefault(window, {})[source] = row
    print(json.dumps(report))


if __name__ == "__main__":
    main()
