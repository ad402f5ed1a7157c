"""`python -m concepts.toy.label_variants`: how many toy values get a feature of their own, per block,
under other labelling rules or other SAEs.

Concept search finds a value when some window's dictionary labels a feature with it (precision 0.8).
Positions are places, not features (`concepts.mask_dictionary`), so this counts the other 20 values.
It generates the dictionary images once (the same prompts and seeds as `python -m concepts.toy.saes
--only label`), keeps every cond SAE's feature maps, and builds the dictionaries again for each
rule: a feature "fires" above `--fire` of its peak, and the labels are the prompt's values or, with
`--judge-labels`, what the judge reads in each image (the model does not always draw what it was
asked). `--group-seeds` also counts the values found as groups of features
(`concepts.feature_groups`), then with read-outs too (`concepts.feature_readouts`, once per
`--readout-l1`), once per split of the images into the folds that check them; `--rival-images`
then adds rival read-outs (`concepts.rival_readouts`) fitted on that many more images. `--saes DIR` reads
SAEs trained with another recipe (`python -m concepts.toy.saes --out DIR --run RUN --epochs 8`, say)
instead of the shipped ones. Prints one JSON object (docs/evolution.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..dictionary import DictionaryConfig
from ..feature_groups import GroupConfig
from ..feature_readouts import ReadoutConfig
from ..mask_dictionary import build_mask_dictionary
from ..pipeline import load_pipeline_from_folder, pick_device
from ..quiet import quiet_libraries
from ..sae import load_native
from ..steer.feature_table import feature_table
from ..steps import STAGES
from . import TOY_DIR
from .judge import load_judge, to_tensor
from .masks import REGIONS, region_masks, region_of
from .model import HOOK_BLOCKS
from .prompts import labelled_prompts, readable_label
from .saes import ToySAERecipe, rival_image_peaks, sae_folder
from .world import ATTRIBUTES

VALUES = frozenset(readable_label(a, v) for a, vs in ATTRIBUTES.items() if a != "position" for v in vs)
"""The 20 values that are not places."""


def searchable(maps: dict, scenes: list, labels: list[dict[str, str]], fire: float,
               groups: GroupConfig | None = None, readouts: ReadoutConfig | None = None,
               rivals: ReadoutConfig | None = None, more_peaks: dict | None = None,
               more_labels: list[dict[str, str]] = ()) -> dict[str, list[str]]:
    """Per block: the values (not positions) some window's dictionary labels under `fire` (or, with
    `groups`, `readouts` and `rivals`, finds as a group, a read-out or a rival read-out, the last
    also fitted on `more_peaks` per SAE of images labelled `more_labels`)."""
    found: dict[str, set[str]] = {}
    for key, block_maps in maps.items():
        block = key[0]
        n, h, w, f = block_maps.shape
        d = build_mask_dictionary(block_maps.reshape(n, h * w, f).astype(np.float32), region_masks(scenes, h, w), REGIONS, labels,
                                  region_of, DictionaryConfig(fire_fraction=fire), readable=readable_label, groups=groups,
                                  readouts=readouts, rivals=rivals, more_peaks=(more_peaks or {}).get(key), more_labels=more_labels)
        found.setdefault(block, set()).update(d["concepts"], d["groups"], d["readouts"])
    return {block: sorted(VALUES & labels_found) for block, labels_found in found.items()}


def row(found: dict[str, list[str]], **settings) -> dict:
    """One report row: the settings, then per block how many values were found and which are missing."""
    return {**settings, "searchable": {b: len(v) for b, v in found.items()}, "missing": {b: sorted(VALUES - set(v)) for b, v in found.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saes", default=str(TOY_DIR), help="folder whose saes/<block>/<window>/cond/ hold the SAEs")
    parser.add_argument("--fire", type=float, nargs="+", default=[0.1, 0.3, 0.5], help="fire fractions to try")
    parser.add_argument("--judge-labels", action="store_true", help="also label by the judge's reading of each image")
    parser.add_argument("--group-seeds", type=int, nargs="*", default=[], help="also count groups, with these fold splits (fire 0.1, prompt labels)")
    parser.add_argument("--readout-l1", type=float, nargs="+", default=[ReadoutConfig().l1], help="read-outs' L1 penalties to try (with --group-seeds)")
    parser.add_argument("--rival-images", type=int, nargs="*", default=[], help="also count rival read-outs fitted on this many more images (0 too), with --group-seeds")
    args = parser.parse_args()
    quiet_libraries()
    pipe = load_pipeline_from_folder(TOY_DIR, pick_device("cpu"))
    recipe = ToySAERecipe()
    saes = {(b, w, "cond"): load_native(sae_folder(Path(args.saes), b, w, "cond")).eval() for b in HOOK_BLOCKS.values() for w in STAGES}
    labelled = labelled_prompts(recipe.dictionary_prompts, recipe.seed + 1)
    table = feature_table(pipe, saes, [text for _, text in labelled], steps=recipe.steps, guidance=recipe.guidance, height=64, width=64,
                          batch=recipe.prompts_per_batch, seed=recipe.seed + 1, keep_images=args.judge_labels, spatial=True)
    scenes = [scene for scene, _ in labelled]
    label_sets = {"prompt": [scene.as_dict() for scene in scenes]}
    if args.judge_labels:
        judge = load_judge(TOY_DIR / "judge")
        read = judge.predict(to_tensor(table.images))
        label_sets["judge"] = [{a: (r[a] if a != "position" else s[a]) for a in s} for s, r in zip(label_sets["prompt"], read)]
    report = {"what": "label variants", "saes": args.saes, "values": len(VALUES), "rows": []}
    for source, labels in label_sets.items():
        for fire in args.fire:
            report["rows"].append(row(searchable(table.maps, scenes, labels, fire), labels=source, fire_fraction=fire))
    for seed in args.group_seeds:
        for readouts in (None, *(ReadoutConfig(seed=seed, l1=l1) for l1 in args.readout_l1)):
            found = searchable(table.maps, scenes, label_sets["prompt"], DictionaryConfig().fire_fraction, GroupConfig(seed=seed), readouts)
            report["rows"].append(row(found, labels="prompt", fire_fraction=DictionaryConfig().fire_fraction, with_groups=True,
                                      readout_l1=readouts.l1 if readouts else None, group_seed=seed))
    if args.rival_images and args.group_seeds:
        more_scenes, more_peaks = rival_image_peaks(pipe, saes, replace(recipe, rival_prompts=max(args.rival_images)), progress=False)
        more_labels = [scene.as_dict() for scene in more_scenes]
        for seed in args.group_seeds:
            for count in args.rival_images:
                found = searchable(table.maps, scenes, label_sets["prompt"], DictionaryConfig().fire_fraction, GroupConfig(seed=seed),
                                   ReadoutConfig(seed=seed), ReadoutConfig(seed=seed), {k: p[:count] for k, p in more_peaks.items()},
                                   more_labels[:count])
                report["rows"].append(row(found, labels="prompt", fire_fraction=DictionaryConfig().fire_fraction, with_groups=True,
                                          readout_l1=ReadoutConfig().l1, rival_images=len(scenes) + count, group_seed=seed))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
