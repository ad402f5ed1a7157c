"""`python -m concepts.toy.saes`: train the toy model's SAEs and label their features from ground truth.

1. Collect Δ at the three hook blocks (down, mid, up) over training-like prompts, every step of each
   stage window, both CFG branches (the toy is cheap enough for uncond too).
2. Train one TopK SAE per block × window × branch with the core trainer (resumable).
3. Build each SAE's concept dictionary (`concepts.json`): generate fully specified prompts, read each
   feature's strongest response per image (averaged over the window's steps) and score it against
   the prompt's attribute values (`concepts.dictionary`).

The SAEs land in `<out>/saes/<block>/<window>/<branch>/`; the registry's toy-shapes entry lists them.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from ..dictionary import DictionaryConfig, build_dictionary
from ..features import image_activations
from ..quiet import quiet_libraries
from ..hooks import BlockHooks, Capture
from ..pipeline import load_pipeline_from_folder, pick_device
from . import TOY_DIR
from ..sae import TopKSAE, load_native
from ..sampling import GenerationRequest, sample
from ..steps import BRANCHES, STAGES, StepWindow
from ..training import CollectConfig, TrainConfig, collect_activations, train_collected
from .model import HOOK_BLOCKS
from .prompts import labelled_prompts, readable_label, varied_prompts

log = logging.getLogger("concepts.toy.saes")


@dataclass
class ToySAERecipe:
    """Everything that fixes the toy SAEs (recorded in `<out>/saes/recipe.json`)."""

    prompts: int = 384
    dictionary_prompts: int = 480
    steps: int = 25
    guidance: float = 4.0
    prompts_per_batch: int = 32
    expansion_factor: int = 8
    k: int = 8
    batch_size: int = 1024
    lr: float = 1e-3
    epochs: int = 1
    seed: int = 0


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
    rows = train_collected(collected, out / "saes", train_cfg, base_model="toy-shapes", progress=progress)
    for row in rows:  # the report ships beside the SAEs: paths relative to them, not to this machine
        row["folder"] = str(Path(row["folder"]).relative_to(out / "saes"))
    return rows


@torch.no_grad()
def dictionary_activations(pipe: StableDiffusionPipeline, saes: dict[tuple[str, str, str], TopKSAE], prompts: list[str], steps: int, guidance: float, batch: int, seed: int, progress: bool) -> dict[tuple[str, str, str], np.ndarray]:
    """Per SAE, [images, features]: each feature's image-level activation, mean over its window's steps."""
    windows = {w: StepWindow.parse(w, steps) for w in STAGES}
    totals = {key: [] for key in saes}
    blocks = sorted({key[0] for key in saes})
    for start in tqdm(range(0, len(prompts), batch), desc="dictionary", disable=not progress):
        chunk = prompts[start : start + batch]
        sums = {key: torch.zeros(len(chunk), sae.num_latents) for key, sae in saes.items()}

        def sink(block: str, capture: Capture) -> None:
            for (b, window, branch), sae in saes.items():
                if b == block and windows[window].contains(capture.step.index):
                    read = capture.cond if branch == "cond" else capture.uncond
                    sums[(b, window, branch)] += image_activations(sae, read) / (windows[window].end - windows[window].start + 1)

        request = GenerationRequest(chunk, seed=seed + start, steps=steps, guidance=guidance, height=64, width=64)
        with BlockHooks(pipe.unet, capture=blocks, sink=sink) as hooks:
            for _ in sample(pipe, request, hooks):
                pass
        for key in saes:
            totals[key].append(sums[key].numpy())
    return {key: np.concatenate(parts) for key, parts in totals.items()}


def label_all(pipe: StableDiffusionPipeline, out: Path, recipe: ToySAERecipe, progress: bool) -> dict[str, dict]:
    saes = {}
    for block in HOOK_BLOCKS.values():
        for window in STAGES:
            for branch in BRANCHES:
                saes[(block, window, branch)] = load_native(sae_folder(out, block, window, branch)).eval()
    labelled = labelled_prompts(recipe.dictionary_prompts, recipe.seed + 1)
    prompts = [text for _, text in labelled]
    labels = [scene.as_dict() for scene, _ in labelled]
    acts = dictionary_activations(pipe, saes, prompts, recipe.steps, recipe.guidance, recipe.prompts_per_batch, recipe.seed + 1, progress)
    summaries = {}
    for key, matrix in acts.items():
        meta = {"block": key[0], "window": key[1], "branch": key[2], "prompts": "toy full captions", "seed": recipe.seed + 1, "steps": recipe.steps, "guidance": recipe.guidance}
        dictionary = build_dictionary(matrix, labels, DictionaryConfig(), readable=readable_label, meta=meta)
        (sae_folder(out, *key) / "concepts.json").write_text(json.dumps(dictionary, indent=1))
        summaries["/".join(key)] = dictionary["summary"]
    return summaries


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
    report: dict = {"recipe": asdict(recipe)}
    if args.only in (None, "train"):
        report["saes"] = train_all(pipe, run, out, recipe, not args.quiet)
    if args.only in (None, "label"):
        report["dictionaries"] = label_all(pipe, out, recipe, not args.quiet)
    (out / "saes").mkdir(parents=True, exist_ok=True)
    (out / "saes" / "recipe.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
