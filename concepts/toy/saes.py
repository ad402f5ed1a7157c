"""`python -m concepts.toy.saes`: train the toy model's SAEs and label their features from ground truth.

1. Collect Δ at the three hook blocks (down, mid, up) over training-like prompts, every step of each
   stage window, both CFG branches (the toy is cheap enough for uncond too).
2. Train one TopK SAE per block × window × branch with the core trainer (resumable).
3. Build each SAE's concept dictionary (`concepts.json`): generate fully specified prompts, keep each
   feature's map (averaged over the window's steps) and read it against the renderer's masks
   (`concepts.mask_dictionary`): a feature is labelled only with values of the region it fires on
   (the object's shape, colour, size, position, texture; or the background), scored over images.
   The same images become the top-image cache (`<out>/top_images/`) that the steering panel browses.

The SAEs land in `<out>/saes/<block>/<window>/<branch>/`; the registry's toy-shapes entry lists them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from diffusers import StableDiffusionPipeline

from ..dictionary import DictionaryConfig
from ..mask_dictionary import build_mask_dictionary
from ..pipeline import load_pipeline_from_folder, pick_device
from ..quiet import quiet_libraries
from ..sae import load_native
from ..steer.feature_table import feature_table
from ..steer.top_images import save_top_images
from ..steps import BRANCHES, STAGES
from ..training import CollectConfig, TrainConfig, collect_activations, train_collected
from . import TOY_DIR
from .masks import REGIONS, region_masks, region_of
from .model import HOOK_BLOCKS
from .prompts import labelled_prompts, readable_label, varied_prompts
from .world import ATTRIBUTES, Scene

log = logging.getLogger("concepts.toy.saes")


@dataclass
class ToySAERecipe:
    """Everything that fixes the toy SAEs (recorded in `<out>/saes/recipe.json`)."""

    prompts: int = 384
    dictionary_prompts: int = 480
    rival_prompts: int = 960
    """More images, only for the values nothing finds on the dictionary's: their rival read-outs are
    fitted on both sets (`concepts.rival_readouts`; orange at the mid block needs them, docs/evolution.md)."""
    steps: int = 25
    guidance: float = 4.0
    prompts_per_batch: int = 32
    expansion_factor: int = 8
    k: int = 8
    batch_size: int = 1024
    lr: float = 1e-3
    epochs: int = 1
    seed: int = 0
    fire_fraction: float = 0.1
    """A feature fires on a dictionary image above this share of its peak (the paper's 0.1). At 0.3
    (the share at which the explore table names a feature) more values get a feature (mid block 12 of
    the 20 values that are not places, against 9; down block 15 against 14), but the names the
    explore table shows are then true less often: 81 ± 3 % against 88 ± 4 % over three draws
    (`python -m concepts.toy.evaluate names --seed 7 / 19 / 31`; docs/evolution.md)."""


def sae_folder(out: Path, block: str, window: str, branch: str) -> Path:
    return out / "saes" / block / window / branch


def train_all(pipe: StableDiffusionPipeline, run: Path, out: Path, recipe: ToySAERecipe, progress: bool) -> list[dict]:
    prompts = varied_prompts(recipe.prompts, recipe.seed)
    collect_cfg = CollectConfig(
        blocks=tuple(HOOK_BLOCKS.values()), windows=STAGES, branches=BRANCHES, steps=recipe.steps, guidance=recipe.guidance,
        height=64, width=64, steps_per_window="all", prompts_per_batch=recipe.prompts_per_batch, chunk_prompts=128, seed=recipe.seed,
    )
    collected = collect_activations(pipe, prompts, run / "activations", collect_cfg, progress=progress)
    train_cfg = TrainConfig(k=recipe.k, expansion_factor=recipe.expansion_factor, batch_size=recipe.batch_size, lr=recipe.lr, epochs=recipe.epochs, seed=recipe.seed, k_aux=64, dead_after_tokens=200_000)
    trained = run / "saes"  # the trainer's resumable checkpoints stay in the run folder, out of the shipped one
    rows = train_collected(collected, trained, train_cfg, base_model="toy-shapes", progress=progress)
    for row in rows:  # the report ships beside the SAEs: paths relative to them, not to this machine
        row["folder"] = str(Path(row["folder"]).relative_to(trained))
        ship_sae(trained / row["folder"], out / "saes" / row["folder"])
    return rows


def ship_sae(trained: Path, shipped: Path) -> None:
    """Copy a trained SAE's files (weights, config) to where it ships; its `checkpoint/` folder is only
    for resuming, so it stays behind (shipping it once made the toy folder half as big again)."""
    shipped.mkdir(parents=True, exist_ok=True)
    for file in trained.iterdir():
        if file.is_file():
            shutil.copy2(file, shipped / file.name)


def label_all(pipe: StableDiffusionPipeline, out: Path, recipe: ToySAERecipe, progress: bool) -> dict[str, dict]:
    saes = {}
    for block in HOOK_BLOCKS.values():
        for window in STAGES:
            for branch in BRANCHES:
                saes[(block, window, branch)] = load_native(sae_folder(out, block, window, branch)).eval()
    labelled = labelled_prompts(recipe.dictionary_prompts, recipe.seed + 1)
    prompts = [text for _, text in labelled]
    table = feature_table(
        pipe, saes, prompts, steps=recipe.steps, guidance=recipe.guidance, height=64, width=64,
        batch=recipe.prompts_per_batch, seed=recipe.seed + 1, keep_images=True, spatial=True, progress=progress,
    )
    generation = {"prompts": "toy full captions", "seed": recipe.seed + 1, "steps": recipe.steps, "guidance": recipe.guidance}
    save_top_images(out / "top_images", table, generation)
    more_scenes, more_peaks = rival_image_peaks(pipe, saes, recipe, progress)
    generation["rival_images_seed"] = recipe.seed + 2
    summaries = {}
    for key, maps in table.maps.items():
        meta = {"block": key[0], "window": key[1], "branch": key[2], **generation}
        dictionary = toy_dictionary(maps, [scene for scene, _ in labelled], meta, DictionaryConfig(fire_fraction=recipe.fire_fraction),
                                    more_scenes, more_peaks.get(key))
        (sae_folder(out, *key) / "concepts.json").write_text(json.dumps(dictionary, indent=1))
        summaries["/".join(key)] = dictionary["summary"]
    return summaries


def rival_image_peaks(pipe: StableDiffusionPipeline, saes: dict, recipe: ToySAERecipe, progress: bool,
                      chunk_batches: int = 10) -> tuple[list[Scene], dict[tuple[str, str, str], np.ndarray]]:
    """`recipe.rival_prompts` more scenes (their own seed) and, per SAE, each image's feature peaks
    [images, features] read as the dictionary reads them (the peak of the window's mean map); made
    `chunk_batches` batches at a time so that only peaks are kept (all the maps of 960 images would
    be 1.1 GB), with the seeds one call would give."""
    labelled = labelled_prompts(recipe.rival_prompts, recipe.seed + 2)
    chunk = chunk_batches * recipe.prompts_per_batch
    peaks: dict[tuple[str, str, str], list[np.ndarray]] = {key: [] for key in saes}
    for start in range(0, len(labelled), chunk):
        part = feature_table(pipe, saes, [text for _, text in labelled[start : start + chunk]], steps=recipe.steps,
                             guidance=recipe.guidance, height=64, width=64, batch=recipe.prompts_per_batch,
                             seed=recipe.seed + 2 + start, spatial=True, progress=progress)
        for key, maps in part.maps.items():
            peaks[key].append(maps.reshape(maps.shape[0], -1, maps.shape[-1]).max(axis=1).astype(np.float32))
    return [scene for scene, _ in labelled], {key: np.concatenate(p) for key, p in peaks.items() if p}


def toy_dictionary(maps: np.ndarray, scenes: list[Scene], meta: dict, cfg: DictionaryConfig = DictionaryConfig(),
                   more_scenes: list[Scene] = (), more_peaks: np.ndarray | None = None) -> dict:
    """The concept dictionary of one SAE's feature maps [images, H, W, features] over `scenes`;
    rival read-outs also read `more_peaks` [images, features] of `more_scenes`."""
    images, height, width, n = maps.shape
    masks = region_masks(scenes, height, width)
    labels = [scene.as_dict() for scene in scenes]
    return build_mask_dictionary(maps.reshape(images, height * width, n), masks, REGIONS, labels, region_of,
                                 cfg, readable=readable_label, meta=meta, places=ATTRIBUTES["position"],
                                 more_peaks=more_peaks, more_labels=[scene.as_dict() for scene in more_scenes])


def registry_entries(out: Path, base: Path) -> list[dict]:
    """The `saes` list of the toy-shapes registry entry (paths relative to the registry's folder)."""
    return [
        {"block": block, "window": window, "branch": branch, "path": str(sae_folder(out, block, window, branch).relative_to(base))}
        for block in HOOK_BLOCKS.values() for window in STAGES for branch in BRANCHES
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=str(TOY_DIR), help="the toy pipeline folder (save_pretrained layout)")
    parser.add_argument("--out", default=str(TOY_DIR), help="SAEs go to OUT/saes/...")
    parser.add_argument("--run", default="runs/toy-saes", help="working folder for activations and checkpoints; rerun to resume")
    parser.add_argument("--only", choices=["train", "label"], help="run one stage only")
    parser.add_argument("--quiet", action="store_true")
    for name, value in asdict(ToySAERecipe()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    quiet_libraries()
    recipe = ToySAERecipe(**{name: getattr(args, name) for name in asdict(ToySAERecipe())})
    run, out = Path(args.run), Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=run / "saes.log", level=logging.INFO, format="%(asctime)s %(message)s")
    pipe = load_pipeline_from_folder(Path(args.pipeline), pick_device("cpu"))
    report_path = out / "saes" / "recipe.json"
    # One stage alone keeps the other stage's part of the report.
    report: dict = json.loads(report_path.read_text()) if args.only and report_path.is_file() else {}
    report["recipe"] = asdict(recipe)
    if args.only in (None, "train"):
        report["saes"] = train_all(pipe, run, out, recipe, not args.quiet)
    if args.only in (None, "label"):
        report["dictionaries"] = label_all(pipe, out, recipe, not args.quiet)
    (out / "saes").mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
