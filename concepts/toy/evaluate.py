"""`python -m concepts.toy.evaluate`: measure the toy-shapes world and print one JSON object.

`steer`: steering success per window (see `evaluate_steer`).
`evolve`: the mean step at which each attribute is decided (see `evaluate_evolve`).
`edit`: CAD erase / amplify of toy concepts, against a random ablation (see `evaluate_edit`).
`names`: whether the names in the explore table are true of the image (see `evaluate_names`).
`stability`: how far an attribution depends on its seed, per mode (see `evaluate_stability`).
`maps`: SAE concept maps against the renderer's masks, as IoU (see `evaluate_maps`).

`model` (the default): prompt fidelity per attribute (the judge reads images generated from fully
specified prompts), the same on held-out colour/shape pairs, each SAE's explained variance on fresh
generations (not its training data), and the share of features whose ground-truth label reaches
precision 0.8 (from the shipped `concepts.json`). Every number comes with the target it answers to.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConceptLabError
from ..quiet import quiet_libraries
from ..hooks import BlockHooks, Capture
from ..pipeline import PipelineCache
from ..registry import ModelWorld, load_registry
from ..saes import LoadedSAE, load_entry
from ..sampling import GenerationRequest, decode_latents, sample
from ..steps import StepWindow
from .evaluate_edit import EditEvalConfig, evaluate_edit
from .evaluate_evolve import EvolveEvalConfig, evaluate_evolution
from .evaluate_maps import MapsEvalConfig, evaluate_maps
from .evaluate_names import NamesEvalConfig, evaluate_names
from .evaluate_stability import StabilityEvalConfig, evaluate_stability
from .evaluate_steer import SteerEvalConfig, evaluate_steering
from .judge import accuracy, load_judge, render_dataset
from .prompts import labelled_prompts
from .world import ATTRIBUTES

TOY_MODEL = "toy-shapes"
FIDELITY_TARGETS = {"shape": 0.9, "colour": 0.9, "size": 0.9, "position": 0.9, "background": 0.9, "texture": 0.8}
HELD_OUT_TARGET = 0.8
LABEL_PRECISION = 0.8


@dataclass
class ModelEvalConfig:
    prompts: int = 300
    held_out_prompts: int = 100
    batch: int = 25
    guidance: float | None = None
    """CFG scale (default: the registry's for the model)."""
    seed: int = 1234
    """Prompt scenes and noise seeds; distinct from the seeds the dictionaries were built on."""


class ReconstructionTally:
    """Running sums for an SAE's explained variance: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²."""

    def __init__(self, d: int) -> None:
        self.sum = torch.zeros(d, dtype=torch.float64)
        self.sum_sq = 0.0
        self.sse = 0.0
        self.count = 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        x, x_hat = x.reshape(-1, x.shape[-1]).double(), x_hat.reshape(-1, x.shape[-1]).double()
        self.sum += x.sum(0)
        self.sum_sq += float((x * x).sum())
        self.sse += float(((x - x_hat) ** 2).sum())
        self.count += x.shape[0]

    @property
    def explained_variance(self) -> float:
        total = self.sum_sq - float((self.sum * self.sum).sum()) / max(self.count, 1)
        return 1.0 - self.sse / total if total > 0 else 0.0


def generate_and_judge(world: ModelWorld, pipe, judge, saes: dict[tuple[str, str, str], LoadedSAE], scenes_prompts, cfg: ModelEvalConfig,
                       tallies: dict | None, drawn_shapes: dict[str, Counter] | None = None) -> dict[str, float]:
    """Judge accuracy per attribute (and all six at once) over `scenes_prompts`; feeds `tallies`,
    and `drawn_shapes` ("colour shape" asked → shapes the judge saw), which says where a miss goes."""
    steps = world.defaults.steps
    guidance = world.defaults.guidance if cfg.guidance is None else cfg.guidance
    windows = {key: StepWindow.parse(key[1], steps) for key in saes}
    correct = {name: 0 for name in ATTRIBUTES} | {"all": 0, "colour_and_shape": 0}

    def sink(block: str, capture: Capture) -> None:
        for key, loaded in saes.items():
            if key[0] == block and windows[key].contains(capture.step.index):
                read = capture.cond if key[2] == "cond" else capture.uncond
                with torch.no_grad():
                    tallies[key].add(read, loaded.sae(read.reshape(-1, read.shape[-1])).sae_out)

    blocks = sorted({key[0] for key in saes}) if tallies is not None else []
    for start in range(0, len(scenes_prompts), cfg.batch):
        chunk = scenes_prompts[start : start + cfg.batch]
        request = GenerationRequest([p for _, p in chunk], seed=cfg.seed + start, steps=steps, guidance=guidance, height=world.defaults.height, width=world.defaults.width)
        with BlockHooks(pipe.unet, capture=blocks, sink=sink if blocks else None) as hooks:
            for state in sample(pipe, request, hooks):
                latents = state.latents
        predicted = judge.predict(decode_latents(pipe, latents))
        for (scene, _), guess in zip(chunk, predicted):
            truth = scene.as_dict()
            hits = {name: guess[name] == truth[name] for name in ATTRIBUTES}
            for name, hit in hits.items():
                correct[name] += hit
            correct["all"] += all(hits.values())
            correct["colour_and_shape"] += hits["colour"] and hits["shape"]
            if drawn_shapes is not None:
                drawn_shapes.setdefault(f"{truth['colour']} {truth['shape']}", Counter())[guess["shape"]] += 1
    return {name: round(value / len(scenes_prompts), 4) for name, value in correct.items()}


@torch.no_grad()
def vae_ceiling(pipe, judge, n: int, seed: int) -> dict[str, float]:
    """Judge accuracy on rendered images passed through the VAE (encode → decode): the most any
    generated image can score, since every image the pipeline makes comes out of this decoder."""
    data = render_dataset(n, seed=seed, split="any")
    vae = pipe.vae
    decoded = []
    for start in range(0, n, 100):
        x = data.images[start : start + 100].to(vae.device, vae.dtype) * 2 - 1
        decoded.append(((vae.decode(vae.encode(x).latent_dist.mean).sample.float() + 1) / 2).clamp(0, 1).cpu())
    return {name: round(value, 4) for name, value in accuracy(judge, data._replace(images=torch.cat(decoded))).items()}


def evaluate_model(cfg: ModelEvalConfig = ModelEvalConfig(), model: str = TOY_MODEL, with_saes: bool = True) -> dict:
    world = load_registry().get(model)
    started = time.time()
    pipe = PipelineCache().get(world, device="cpu")
    if world.pipeline.path is None:
        raise ConceptLabError(f"{world.name} is not a local toy world: its judge must live beside its pipeline")
    judge = load_judge(world.base_dir / world.pipeline.path / "judge")
    saes = {(e.block, e.window, e.branch): load_entry(world, e, pipe.unet) for e in world.saes} if with_saes else {}
    tallies = {key: ReconstructionTally(loaded.sae.cfg.d_in) for key, loaded in saes.items()}
    fidelity = generate_and_judge(world, pipe, judge, saes, labelled_prompts(cfg.prompts, cfg.seed, "train"), cfg, tallies if saes else None)
    ceiling = vae_ceiling(pipe, judge, cfg.prompts, cfg.seed + 2)
    held_out_shapes: dict[str, Counter] = {}
    held_out = generate_and_judge(world, pipe, judge, {}, labelled_prompts(cfg.held_out_prompts, cfg.seed + 1, "held_out"), cfg, None, held_out_shapes)
    sae_rows = []
    labelled_total = alive_total = 0
    for key, loaded in saes.items():
        summary = (loaded.concepts or {}).get("summary", {})
        alive_total += summary.get("alive", 0)
        labelled_total += summary.get("labelled", 0)
        sae_rows.append({
            "block": key[0], "window": key[1], "branch": key[2],
            "explained_variance": round(tallies[key].explained_variance, 4),
            "labelled_share": summary.get("labelled_share_of_alive"),
            "concepts_covered": summary.get("concepts_covered"),
        })
    fidelity_meets = {name: fidelity[name] >= target for name, target in FIDELITY_TARGETS.items()}
    return {
        "model": world.name,
        "steps": world.defaults.steps,
        "guidance": world.defaults.guidance if cfg.guidance is None else cfg.guidance,
        "prompt_fidelity": {"prompts": cfg.prompts, "accuracy": fidelity, "targets": FIDELITY_TARGETS, "meets": fidelity_meets},
        "vae_ceiling": {"images": cfg.prompts, "accuracy": ceiling, "what": "judge accuracy on rendered images after VAE encode/decode"},
        "held_out": {"prompts": cfg.held_out_prompts, "pairs": "colour/shape pairs never seen in training", "accuracy": held_out, "target": HELD_OUT_TARGET, "meets": held_out["colour_and_shape"] >= HELD_OUT_TARGET,
                     "shapes_drawn_by_pair": {pair: dict(drawn.most_common()) for pair, drawn in sorted(held_out_shapes.items())}},
        "saes": sae_rows,
        "labelled_share": {"precision_at_least": LABEL_PRECISION, "share_of_alive_features": round(labelled_total / alive_total, 4) if alive_total else 0.0, "labelled": labelled_total, "alive": alive_total},
        "seconds": round(time.time() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concepts.toy.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="model", choices=["model", "steer", "evolve", "edit", "names", "stability", "maps"], help="what to measure")
    parser.add_argument("--prompts", type=int, default=None, help=f"prompts (default: {ModelEvalConfig.prompts} for model, {SteerEvalConfig.prompts} for steer, {EvolveEvalConfig.prompts} for evolve)")
    parser.add_argument("--block", default=SteerEvalConfig.block, help="steer, evolve: the block whose SAEs steer or are read")
    parser.add_argument("--spatial-strengths", type=float, nargs="+", default=list(SteerEvalConfig.spatial_strengths), help="steer: β values of the spatial edit")
    parser.add_argument("--global-strengths", type=float, nargs="+", default=list(SteerEvalConfig.global_strengths), help="steer: β values of the global edit")
    parser.add_argument("--position-open", action="store_true", help="steer: also on the same prompts with the position left out (the paper's setting)")
    parser.add_argument("--with-readouts", action="store_true", help="steer: the global rows also steer to values found as read-outs")
    parser.add_argument("--windows", nargs="+", default=list(SteerEvalConfig.windows), choices=["early", "middle", "final"], help="steer: windows to measure")
    parser.add_argument("--held-out-prompts", type=int, default=ModelEvalConfig.held_out_prompts)
    parser.add_argument("--seed", type=int, default=None, help=f"default: {ModelEvalConfig.seed} for model, {SteerEvalConfig.seed} for steer")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    parser.add_argument("--no-saes", action="store_true", help="skip the SAE measures (fidelity only)")
    parser.add_argument("--figure", help="evolve: also draw the decision steps to this PNG")
    parser.add_argument("--concepts", nargs="+", default=list(EditEvalConfig.concepts), help="edit: toy values to erase / amplify")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(EditEvalConfig.ratios), help="edit: shares of each row zeroed")
    parser.add_argument("--settings", nargs="+", default=[f"{m}:{n}" for m, n in StabilityEvalConfig.settings],
                        help="stability: attribution settings MODE:IMAGES to compare (fast:2 faithful:2 ...)")
    parser.add_argument("--objective", default="erase", choices=["erase", "amplify"], help="stability: the attribution objective")
    parser.add_argument("--score-seeds", type=int, nargs="+", default=list(StabilityEvalConfig.score_seeds), help="stability: attribution seeds")
    parser.add_argument("--edit-ratios", type=float, nargs="+", default=None, help="stability: ratios whose erases are judged (default: the model's)")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        if (args.prompts is not None and args.prompts < 1) or args.held_out_prompts < 1:
            raise ConceptLabError("--prompts and --held-out-prompts must be at least 1")
        if args.what == "maps":
            report = evaluate_maps(MapsEvalConfig(prompts=args.prompts or MapsEvalConfig.prompts, seed=MapsEvalConfig.seed if args.seed is None else args.seed))
        elif args.what == "stability":
            settings = tuple((m, int(n)) for m, _, n in (s.partition(":") for s in args.settings))
            report = evaluate_stability(StabilityEvalConfig(concept=args.concepts[0], objective=args.objective, settings=settings, score_seeds=tuple(args.score_seeds),
                                                            prompts=args.prompts or StabilityEvalConfig.prompts,
                                                            seed=StabilityEvalConfig.seed if args.seed is None else args.seed,
                                                            ratios=tuple(args.edit_ratios or ())),
                                        log=lambda line: print(line, file=sys.stderr))
        elif args.what == "names":
            report = evaluate_names(NamesEvalConfig(prompts=args.prompts or NamesEvalConfig.prompts, seed=NamesEvalConfig.seed if args.seed is None else args.seed))
        elif args.what == "edit":
            report = evaluate_edit(EditEvalConfig(prompts=args.prompts or EditEvalConfig.prompts, concepts=tuple(args.concepts),
                                                  ratios=tuple(args.ratios), seed=EditEvalConfig.seed if args.seed is None else args.seed))
        elif args.what == "evolve":
            report = evaluate_evolution(EvolveEvalConfig(prompts=args.prompts or EvolveEvalConfig.prompts, block=args.block,
                                                         seed=EvolveEvalConfig.seed if args.seed is None else args.seed),
                                        figure=Path(args.figure) if args.figure else None)
        elif args.what == "steer":
            cfg = SteerEvalConfig(prompts=args.prompts or SteerEvalConfig.prompts, block=args.block, windows=tuple(args.windows),
                                  spatial_strengths=tuple(args.spatial_strengths), global_strengths=tuple(args.global_strengths),
                                  seed=SteerEvalConfig.seed if args.seed is None else args.seed,
                                  prompt_kinds=("named", "open") if args.position_open else ("named",),
                                  target_kinds=("label", "group", "read-out") if args.with_readouts else ("label", "group"))
            report = evaluate_steering(cfg)
        else:
            report = evaluate_model(ModelEvalConfig(prompts=args.prompts or ModelEvalConfig.prompts, held_out_prompts=args.held_out_prompts, seed=ModelEvalConfig.seed if args.seed is None else args.seed, guidance=args.guidance), with_saes=not args.no_saes)
    except ConceptLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
