"""The command line: `python -m concepts SUBCOMMAND ...`.

Contract for every subcommand: results go to stdout as ONE JSON object (except `lesson --list`, the
names one a line, and `lesson NAME` without `--json`, a summary for people); logs go to stderr; a bad
argument or a failure a user can fix exits with status 2 and one line on stderr naming the field,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import ConceptLabError, InvalidInputError, one_line
from .quiet import quiet_libraries
from .registry import EDIT_METHODS as METHODS
from .registry import EDIT_MODES, EDIT_PROTECTS, EDIT_SCOPES, STEER_BRANCHES

EXIT_USAGE = 2
PROTECT_HELP = ("what of the --keep concepts to spare: presence (CAD's objective: the weights each needs to be drawn) or identity "
                "(erase, two or more kept: each anchored on the others, the weights that tell them apart)")
METHOD_HELP = ("cad: zero the top-attributed feed-forward weights (--ratio, --scope, --mode apply); uce: erase by a closed-form edit of the "
               "cross-attention keys and values, keeping the --keep concepts (default on toy worlds: the other values of the attribute)")
SCENES_HELP = ("toy worlds: attribute over (CAD) or fit on (UCE) this many fully specified scenes of the concept, 1..8; 0: the concept prompt; "
               "default: the model's for CAD, 8 for UCE")


class CommandLineError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise CommandLineError(message)


def cmd_models(args: argparse.Namespace) -> dict:
    from .registry import load_registry

    registry = load_registry(args.registry)
    return {"default": registry.default, "models": registry.describe()}


def cmd_generate(args: argparse.Namespace) -> dict:
    from .generation import run_generation
    from .registry import load_registry

    out = _output_dir(args.out)
    registry = load_registry(args.registry)
    edit, edit_info = _generation_edit(args, registry)
    with edit:
        outcome = run_generation(
            args.model,
            args.prompt,
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            height=args.height,
            width=args.width,
            negative_prompt=args.negative_prompt,
            images_per_prompt=args.num_images,
            device=args.device,
            registry=registry,
        )
    request = outcome.request
    paths = []
    for i, image in enumerate(outcome.result.images):
        path = out / f"{outcome.world.name}_seed{request.seed}_{i}.png"
        image.save(path)
        paths.append(str(path))
    return {
        "model": outcome.world.name,
        "prompt": request.prompt,
        "seed": request.seed,
        "steps": request.steps,
        "guidance": request.guidance,
        "height": request.height,
        "width": request.width,
        "images": paths,
        "nsfw": outcome.result.nsfw,
        **({"edit": edit_info} if edit_info else {}),
        "warnings": outcome.warnings,
        "seconds": round(outcome.seconds, 3),
    }


def _generation_edit(args: argparse.Namespace, registry):
    """`generate --erase C` / `--amplify C`: the ablation to hold while generating (else a no-op)."""
    import contextlib

    if args.erase and args.amplify:
        raise InvalidInputError("erase", "choose --erase or --amplify, not both")
    concept, action = (args.erase, "erase") if args.erase else (args.amplify, "amplify")
    if not concept:
        return contextlib.nullcontext(), None
    from .edit.ablation import AblationHooks, check_ratio
    from .edit.service import EditSpec, concept_prompt, edit_plan
    from .generation import SHARED_PIPELINES

    world = registry.get(args.model)
    spec = EditSpec(concept=concept, action=action, ratio=args.ratio, mode=args.mode, keep=tuple(args.keep or ()), scope=args.scope, contrast=args.contrast, scenes=args.scenes,
                    protect=args.protect, method=args.method)
    ratio = check_ratio(world.defaults.ratio_for(action) if args.ratio is None else args.ratio)
    pipe = SHARED_PIPELINES.get(world, args.device)
    scores, plan = edit_plan(world, pipe, spec, concept_prompt(world, spec), ratio)
    info = {"action": action, "concept": concept, **edit_summary(plan, scores, ratio, args.mode or world.defaults.edit_mode)}
    return AblationHooks(pipe.unet, plan), info


def edit_summary(plan, scores, ratio: float, mode: str) -> dict:
    """What an edit was and how much it changed, in its method's terms: CAD's concept prompt, zeroed
    weights (ratio, scope and mode apply) and score source, or what UCE was fitted on and the
    cross-attention K/V weights it edits (none of those apply)."""
    if plan.method == "uce":
        return {"method": "uce", "fitted_on": scores.prompt, "edited_weights": plan.count, "of_weights": plan.total_weights,
                "edited_by_block": plan.by_block(), "fit_seconds": round(scores.seconds, 3)}
    return {"method": "cad", "concept_prompt": scores.prompt, "ratio": ratio, "scope": plan.scope, "mode": mode, "zeroed_weights": plan.count,
            "of_weights": plan.total_weights, "zeroed_by_block": plan.by_block(), "scores_cached": scores.cached, "attribution_seconds": round(scores.seconds, 3)}


def cmd_edit(args: argparse.Namespace) -> dict:
    """`erase` / `amplify`: scores (cached), the ablation, before/after images and measured rates."""
    from .edit.rates import edit_rates
    from .edit.service import EditSpec, block_mass, run_edit, top_components
    from .registry import load_registry

    out = _output_dir(args.out)
    registry = load_registry(args.registry)
    world = registry.get(args.model)
    spec = EditSpec(concept=args.concept, action=args.action, ratio=args.ratio, mode=args.mode, concept_prompt=args.concept_prompt,
                    keep=tuple(args.keep or ()), min_per_row=args.min_per_row, scope=args.scope, contrast=args.contrast,
                    anchor=tuple(getattr(args, "anchor", None) or ()), scenes=args.scenes, protect=getattr(args, "protect", "presence"), method=args.method)
    if args.images < 1 or args.images > 8:
        raise InvalidInputError("images", f"must be in 1..8, got {args.images}")
    outcome = run_edit(world.name, spec, prompts=args.prompt or None, images=args.images, kept_prompts=args.kept_prompt, seed=args.seed, steps=args.steps,
                       guidance=args.guidance, device=args.device, registry=registry)
    paths: dict[str, list[str]] = {}
    for kind, images in (("before", outcome.concept_before), ("after", outcome.concept_after), ("kept_before", outcome.kept_before), ("kept_after", outcome.kept_after)):
        paths[kind] = []
        for i, image in enumerate(images):
            path = out / f"{kind}_{i}.png"
            image.save(path)
            paths[kind].append(str(path))
    result = {
        "model": world.name, "action": args.action, "concept": args.concept, **edit_summary(outcome.plan, outcome.attribution, outcome.ratio, outcome.spec.mode),
        "keep": list(spec.keep), "anchor": list(spec.anchor), "scenes": outcome.spec.scenes, "seed": args.seed, "prompts": outcome.concept_prompts, "kept_prompts": outcome.kept_prompts,
        **({} if spec.method == "uce" else {"contrast": spec.contrast, "protect": spec.protect}),
        **paths,
        **({} if spec.method == "uce" else {
            "attribution_mass_by_block": {b: {"positive": round(p, 6), "negative": round(n, 6)} for b, (p, n) in block_mass(outcome.attribution.scores).items()},
            "top_components": [{"layer": l, "row": r, "column": c, "score": round(v, 8)} for l, r, c, v in top_components(outcome.attribution.scores, 5)]}),
        "mean_pixel_change": round(_mean_change(outcome.concept_before, outcome.concept_after), 5),
        "kept_mean_pixel_change": round(_mean_change(outcome.kept_before, outcome.kept_after), 5),
        "seconds": round(outcome.seconds, 3),
    }
    reader = world.knowledge.reader()
    if reader is not None:
        result["measured"] = edit_rates(reader, args.concept, outcome)
    return result


def _mean_change(before, after) -> float:
    import numpy as np

    if not before:
        return 0.0
    return float(np.mean([np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() / 255 for a, b in zip(before, after)]))


def cmd_train_sae(args: argparse.Namespace) -> dict:
    from .pipeline import load_pipeline
    from .registry import load_registry
    from .training import CollectConfig, collect_activations, train_collected

    world = load_registry(args.registry).get(args.model)
    prompts = _read_prompts(args.prompts)
    out = _output_dir(args.out)
    collect_cfg = CollectConfig(
        blocks=tuple(args.blocks),
        windows=tuple(args.windows),
        branches=tuple(args.branches),
        steps=args.steps if args.steps is not None else world.defaults.steps,
        guidance=args.guidance if args.guidance is not None else world.defaults.guidance,
        height=world.defaults.height,
        width=world.defaults.width,
        reads=args.reads,
        prompts_per_batch=args.prompts_per_batch,
        seed=args.seed,
    )
    train_cfg = sae_train_config(args)
    pipe = load_pipeline(world, args.device)
    collected = collect_activations(pipe, prompts, out / "activations", collect_cfg, progress=args.verbose)
    saes = train_collected(collected, out / "saes", train_cfg, base_model=world.name, reads=args.reads, progress=args.verbose)
    return {"model": world.name, "prompts": len(prompts), "saes": saes}


def cmd_steer(args: argparse.Namespace) -> dict:
    from .registry import load_registry
    from .steer.service import SteerSpec, run_steering
    from .steer.steering import default_strength

    out = _output_dir(args.out)
    registry = load_registry(args.registry)
    world = registry.get(args.model)
    features: tuple[int, ...] = ()
    block = args.block
    if args.feature:
        parsed = [_block_feature(text) for text in args.feature]
        blocks = {b for b, _ in parsed if b}
        if len(blocks) > 1 or (blocks and block and blocks != {block}):
            raise InvalidInputError("feature", "all --feature values must name the same block")
        block = block or next(iter(blocks), None)
        features = tuple(f for _, f in parsed)
    block = block or _default_block(world)
    mask = _read_mask(args.mask) if args.mask else None
    spec = SteerSpec(block=block, window=args.window, strength=args.strength if args.strength is not None else default_strength(args.window, mask is not None or args.region != "global", world.defaults.strengths),
                     concept=args.concept, features=features, region=args.region, mask=mask, branch=args.branch)
    outcome = run_steering(world.name, args.prompt, spec, seed=args.seed, steps=args.steps, guidance=args.guidance, device=args.device, registry=registry)
    paths: dict[str, list[str]] = {"baseline": [], "steered": []}
    for kind, result in (("baseline", outcome.baseline), ("steered", outcome.steered)):
        for i, image in enumerate(result.images):
            path = out / f"{kind}_seed{outcome.request.seed}_{i}.png"
            image.save(path)
            paths[kind].append(str(path))
    plan = outcome.plan
    return {
        "model": outcome.world.name,
        "prompt": outcome.request.prompt,
        "seed": outcome.request.seed,
        "steps": outcome.request.steps,
        "guidance": outcome.request.guidance,
        **paths,
        "applied": {
            "block": plan.block, "features": list(plan.features), "concept": args.concept, "sae_stage": outcome.stage,
            "window": str(plan.window), "mode": plan.mode, "region": None if mask is not None else args.region,
            "mask": args.mask, "strength": plan.strength, "branch": plan.branch,
        },
        "mean_pixel_change": round(float(outcome.change.mean()), 5),
        "warnings": outcome.warnings,
        "seconds": round(outcome.seconds, 3),
    }


def cmd_top_images(args: argparse.Namespace) -> dict:
    from .pipeline import load_pipeline
    from .registry import load_registry
    from .saes import load_entry
    from .steer.feature_table import feature_table
    from .steer.top_images import save_top_images

    world = load_registry(args.registry).get(args.model)
    if not world.saes:
        raise InvalidInputError("model", f"{world.name} has no SAEs")
    prompts = _read_prompts(args.prompts)
    out = _output_dir(args.out)
    pipe = load_pipeline(world, args.device)
    saes = {(e.block, e.window, e.branch): load_entry(world, e, pipe.unet, pipe.unet.device).sae for e in world.saes if e.reads == "delta"}
    steps = args.steps if args.steps is not None else world.defaults.steps
    guidance = args.guidance if args.guidance is not None else world.defaults.guidance
    table = feature_table(pipe, saes, prompts, steps=steps, guidance=guidance, height=world.defaults.height, width=world.defaults.width,
                          batch=args.prompts_per_batch, seed=args.seed, keep_images=True, progress=args.verbose)
    meta = {"model": world.name, "prompts": args.prompts, "seed": args.seed, "steps": steps, "guidance": guidance}
    save_top_images(out, table, meta, top=args.top)
    return {"model": world.name, "images": len(prompts), "saes": len(saes), "out": str(out),
            "registry_entry": {"top_images": {"path": str(out.resolve())}}}


def cmd_label(args: argparse.Namespace) -> dict:
    from .pipeline import load_pipeline
    from .registry import load_registry
    from .saes import load_entry
    from .steer.label import LabelConfig, label_world, push_labels
    from .training.prompt_sources import PromptSpec, load_prompts, token_fitter
    from .training.word_dictionary import WordDictionaryConfig, read_vocabulary

    # Everything a user typed is checked before a weight is loaded or a prompt generated.
    world = load_registry(args.registry).get(args.model)
    if not world.saes:
        raise InvalidInputError("model", f"{world.name} has no SAEs to label")
    reads = {e.reads for e in world.saes}
    if len(reads) > 1:
        raise InvalidInputError("model", f"{world.name}'s SAEs read different things ({', '.join(sorted(reads))}); label them one world at a time")
    spec = PromptSpec(file=args.prompts, hub_dataset=args.hub_dataset, column=args.dataset_column, max_prompts=args.max_prompts)
    words = WordDictionaryConfig(min_word_prompts=args.min_word_prompts, max_word_share=args.max_word_share, min_fires=args.min_fires,
                                 labelled_precision=args.label_precision, vocabulary=read_vocabulary(args.nouns) if args.nouns else None)
    cfg = LabelConfig(steps=args.steps, guidance=args.guidance, prompts_per_batch=args.prompts_per_batch, chunk_prompts=args.chunk_prompts,
                      seed=args.seed, top=args.top, tile=args.tile, words=words)
    if args.push_to_hub:
        from .hub import validate_repo_id

        validate_repo_id(args.push_to_hub, field="push_to_hub")
    out = _output_dir(args.out)
    pipe = load_pipeline(world, args.device)
    prompts = load_prompts(spec, token_fitter(pipe.tokenizer)).prompts
    saes = {(e.block, e.window, e.branch): load_entry(world, e, pipe.unet, pipe.unet.device).sae for e in world.saes}
    report = label_world(world, pipe, saes, prompts, out, cfg, reads=reads.pop(), check_disk=not args.no_disk_check, dry_run=args.dry_run,
                         log_line=lambda line: print(line, file=sys.stderr) if args.verbose else None)
    if args.push_to_hub and not args.dry_run:
        report["pushed"] = push_labels(out, args.push_to_hub, private=args.private)
    return report


def cmd_evolve(args: argparse.Namespace) -> dict:
    from .evolve.evolution import run_evolution
    from .evolve.figures import (
        composition_strip,
        decided_figure,
        decisions,
        default_concepts,
        emergence_figure,
        evolution_record,
        heatmap_grid,
        save_gif,
        save_json,
        save_strip,
    )
    from .registry import load_registry

    out = _output_dir(args.out)
    registry = load_registry(args.registry)
    world = registry.get(args.model)
    blocks = args.blocks or world.blocks
    if not blocks:
        raise InvalidInputError("model", f"{world.name} has no SAEs to read concepts with")
    evo = run_evolution(world.name, args.prompt, seed=args.seed, steps=args.steps, guidance=args.guidance, blocks=blocks,
                        reader=world.knowledge.reader(), device=args.device, registry=registry)
    main_block = next((b for b in evo.traces if b.startswith("mid_block")), next(iter(evo.traces)))
    chosen = [c.strip() for c in args.concepts.split(",") if c.strip()] if args.concepts else None
    concepts = chosen or default_concepts(evo, main_block)
    unknown = [c for c in chosen or [] if not any(c in t.labels for t in evo.traces.values())]
    if unknown:
        valid = sorted({label for t in evo.traces.values() for label in t.labels})
        raise InvalidInputError("concepts", f"{unknown} are not concept labels of these SAEs; valid: {', '.join(valid)}")
    previews = out / "previews"
    previews.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(evo.previews):
        path = previews / f"step_{i:03d}.png"
        image.save(path)
        paths.append(str(path))
    evo.image.save(out / "final.png")
    decided = decisions(evo, main_block)
    figures = [
        _save_figure(emergence_figure(evo, chosen), out / "emergence.png"),
        _save_figure(decided_figure(decided, len(evo.previews)), out / "decided.png"),
    ]
    heatmap_grid(evo, main_block, concepts).save(out / "heatmaps.png")
    composition_strip(evo, main_block).save(out / "composition.png")
    figures += [str(out / "heatmaps.png"), str(out / "composition.png"), str(save_strip(evo.previews, out / "strip.png"))]
    record = evolution_record(evo, paths, top=args.top)
    record["decided_at_by_source"] = decided
    record["decided_at"] = next(iter(decided.values()))
    save_json(record, out / "evolution.json")
    return {
        "model": world.name, "prompt": evo.request.prompt, "seed": evo.request.seed, "num_steps": len(evo.previews),
        "steps": record["steps"], "decided_at": record["decided_at"], "decided_at_by_source": decided,
        "concepts": concepts, "block": main_block, "final": str(out / "final.png"),
        "figures": figures, "gif": str(save_gif(evo.previews, out / "evolution.gif")), "json": str(out / "evolution.json"),
        "warnings": evo.warnings, "seconds": round(evo.seconds, 3),
    }


def _save_figure(figure, path: Path) -> str:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


def _block_feature(text: str) -> tuple[str | None, int]:
    """"BLOCK:ID" or "ID" → (block or None, id)."""
    block, _, number = text.rpartition(":")
    try:
        return (block or None), int(number)
    except ValueError:
        raise InvalidInputError("feature", f"{text!r} is not BLOCK:ID or ID") from None


def _default_block(world) -> str:
    blocks = world.blocks
    if not blocks:
        raise InvalidInputError("model", f"{world.name} has no SAEs to steer with")
    return next((b for b in blocks if b.startswith("mid_block")), blocks[0])


def _read_mask(path: str):
    import numpy as np
    import torch
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError) as exc:
        raise InvalidInputError("mask", f"cannot read {path} as an image: {exc}") from None
    return torch.from_numpy(np.asarray(image.convert("RGBA") if image.mode in ("RGBA", "LA", "P") else image.convert("L"), dtype=np.float32))


def _read_prompts(path: str) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError("prompts", f"cannot read {path}: {exc}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InvalidInputError("prompts", f"{path} holds no prompts (one per line)")
    return prompts


def _output_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError("out", f"cannot create {out}: {exc.strerror}") from None
    return out


def build_parser() -> _Parser:
    parser = _Parser(prog="python -m concepts", description="Concept Lab: see, steer and erase concepts in diffusion models.")
    parser.add_argument("--registry", default=None, help="registry JSON (default: checkpoints/registry.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    models = sub.add_parser("models", help="list the model worlds of the registry")
    models.add_argument("--json", action="store_true", help="print JSON (the only format; kept for clarity)")
    models.set_defaults(run=cmd_models)

    gen = sub.add_parser("generate", help="generate images from a prompt")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    gen.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--model", default=None, help="registry name (default: the registry's default)")
    gen.add_argument("--device", default="auto", help="auto, cpu or cuda")
    gen.add_argument("--out", required=True, help="folder for the PNGs")
    gen.add_argument("--erase", default=None, help="generate with this concept erased (by --method)")
    gen.add_argument("--amplify", default=None, help="generate with this concept amplified (CAD)")
    gen.add_argument("--method", default="cad", choices=METHODS, help=METHOD_HELP)
    gen.add_argument("--ratio", type=float, default=None, help="share of the feed-forward weights zeroed, in each --scope (default: the model's)")
    gen.add_argument("--scope", default=None, choices=EDIT_SCOPES, help="take the top weights per row (CAD's), per matrix or over the whole model (default: the model's)")
    gen.add_argument("--mode", default=None, choices=EDIT_MODES, help="attribution mode (default: the model's)")
    gen.add_argument("--keep", action="append", default=None, help="a concept to protect from the edit (repeatable)")
    gen.add_argument("--contrast", default="mean", choices=["mean", "max"], help="subtract the kept concepts' mean scores, or their max (spares more)")
    gen.add_argument("--protect", default="presence", choices=EDIT_PROTECTS, help=PROTECT_HELP)
    gen.add_argument("--scenes", type=int, default=None, help=SCENES_HELP)
    gen.set_defaults(run=cmd_generate)

    for action in ("erase", "amplify"):
        edit = sub.add_parser(action, help=f"{action} a concept by zeroing its top-attributed feed-forward weights (CAD)"
                              + (", or by UCE's closed-form cross-attention edit" if action == "erase" else "") + "; before/after images")
        edit.add_argument("--concept", required=True)
        edit.add_argument("--method", default="cad", choices=METHODS, help=METHOD_HELP)
        edit.add_argument("--ratio", type=float, default=None, help="share of the feed-forward weights zeroed, in each --scope (default: the model's)")
        edit.add_argument("--scope", default=None, choices=EDIT_SCOPES, help="take the top weights per row (CAD's), per matrix or over the whole model (default: the model's)")
        edit.add_argument("--mode", default=None, choices=EDIT_MODES, help="attribution: one trajectory per image, or a fresh one per timestep (default: the model's)")
        edit.add_argument("--keep", action="append", default=None, help="a concept to protect: its scores are subtracted (repeatable)")
        edit.add_argument("--contrast", default="mean", choices=["mean", "max"], help="subtract the kept concepts' mean scores, or their max (spares more)")
        edit.add_argument("--scenes", type=int, default=None, help=SCENES_HELP)
        if action == "erase":
            edit.add_argument("--protect", default="presence", choices=EDIT_PROTECTS, help=PROTECT_HELP)
            edit.add_argument("--anchor", action="append", default=None,
                              help="a neighbouring concept to anchor the erase objective on: score what tells the concept from it, not from \"\" (repeatable: their mean prediction)")
        edit.add_argument("--min-per-row", type=int, default=None, help="weights zeroed per row at least (default: the model's)")
        edit.add_argument("--concept-prompt", default=None, help="the prompt attribution runs on (default: the model's template)")
        edit.add_argument("--prompt", action="append", default=None, help="a prompt to show before/after (repeatable; default: the model's prompts of the concept, "
                          "fully specified ones on toy-shapes, else the concept prompt)")
        edit.add_argument("--kept-prompt", action="append", default=None, help="a prompt of another concept, to see what is kept (repeatable; default: the model's examples)")
        edit.add_argument("--images", type=int, default=4, help="images of the concept when no --prompt is given (one prompt each)")
        edit.add_argument("--seed", type=int, default=0)
        edit.add_argument("--steps", type=int, default=None)
        edit.add_argument("--guidance", type=float, default=None)
        edit.add_argument("--model", default=None)
        edit.add_argument("--device", default="auto")
        edit.add_argument("--out", required=True)
        edit.set_defaults(run=cmd_edit, action=action)

    steer = sub.add_parser("steer", help="generate a baseline and a steered image from the same seed")
    steer.add_argument("--prompt", required=True)
    steer.add_argument("--concept", default=None, help="a concept label of the SAE's dictionary, e.g. red")
    steer.add_argument("--feature", action="append", default=[], help="BLOCK:ID or ID (repeatable) instead of --concept")
    steer.add_argument("--block", default=None, help="block whose SAE steers (default: the mid block)")
    where = steer.add_mutually_exclusive_group()
    where.add_argument("--region", default="global", help="a toy cell (top left ... bottom right), a quadrant, or global")
    where.add_argument("--mask", default=None, help="PNG: painted (non-zero) pixels mark where to steer")
    steer.add_argument("--window", default="middle", help="early, middle, final, all or A:B (step indices)")
    steer.add_argument("--strength", type=float, default=None, help="β (default: by window and mode, see concepts/steer/steering.py)")
    steer.add_argument("--branch", default=None, choices=STEER_BRANCHES, help="the guidance branch edited (default: the model's: cond, or both on SAeUron's)")
    steer.add_argument("--seed", type=int, default=0)
    steer.add_argument("--steps", type=int, default=None)
    steer.add_argument("--guidance", type=float, default=None)
    steer.add_argument("--model", default=None)
    steer.add_argument("--device", default="auto")
    steer.add_argument("--out", required=True)
    steer.set_defaults(run=cmd_steer)

    evolve = sub.add_parser("evolve", help="follow one generation step by step: previews, concepts per step, when each is decided")
    evolve.add_argument("--prompt", required=True)
    evolve.add_argument("--seed", type=int, default=0)
    evolve.add_argument("--steps", type=int, default=None)
    evolve.add_argument("--guidance", type=float, default=None)
    evolve.add_argument("--blocks", nargs="+", default=None, help="blocks to read (default: every block with SAEs)")
    evolve.add_argument("--concepts", default=None, help="comma-separated labels to plot (default: the strongest at the end)")
    evolve.add_argument("--top", type=int, default=5, help="concepts listed per step")
    evolve.add_argument("--model", default=None)
    evolve.add_argument("--device", default="auto")
    evolve.add_argument("--out", required=True)
    evolve.set_defaults(run=cmd_evolve)

    top = sub.add_parser("top-images", help="generate a prompt set once and cache every SAE feature's top images")
    top.add_argument("--prompts", required=True, help="text file, one prompt per line")
    top.add_argument("--model", default=None)
    top.add_argument("--steps", type=int, default=None)
    top.add_argument("--guidance", type=float, default=None)
    top.add_argument("--prompts-per-batch", type=int, default=8)
    top.add_argument("--top", type=int, default=8, help="images kept per feature")
    top.add_argument("--seed", type=int, default=0)
    top.add_argument("--device", default="auto")
    top.add_argument("--out", required=True, help="cache folder (upload it to the Hub and name it in the registry's top_images)")
    top.set_defaults(run=cmd_top_images)

    label = sub.add_parser("label", help="label a world's SAEs by prompt words and cache their top images, without training (resumable)")
    source = label.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="text file, one prompt per line")
    source.add_argument("--hub-dataset", help="Hub dataset OWNER/NAME holding the prompts")
    label.add_argument("--dataset-column", default=None, help="the dataset's prompt column (default: prompt, text, caption, ...)")
    label.add_argument("--max-prompts", type=int, default=None)
    label.add_argument("--model", default=None)
    label.add_argument("--steps", type=int, default=None, help="default: the world's")
    label.add_argument("--guidance", type=float, default=None, help="default: the world's")
    label.add_argument("--prompts-per-batch", type=int, default=8)
    label.add_argument("--chunk-prompts", type=int, default=64, help="prompts per resumable chunk")
    label.add_argument("--top", type=int, default=8, help="top images kept per feature")
    label.add_argument("--tile", type=int, default=128, help="top images are stored at most this many px a side")
    label.add_argument("--seed", type=int, default=0)
    label.add_argument("--nouns", default=None, help="file of label words, one per line (default: every prompt word but a stoplist)")
    label.add_argument("--min-word-prompts", type=int, default=3)
    label.add_argument("--max-word-share", type=float, default=0.5)
    label.add_argument("--min-fires", type=int, default=10)
    label.add_argument("--label-precision", type=float, default=0.8)
    label.add_argument("--device", default="auto")
    label.add_argument("--out", required=True, help="output folder: concepts/<block>/<window>/<branch>/concepts.json and top_images/")
    label.add_argument("--dry-run", action="store_true", help="print the plan (prompts, UNet passes, disk) and stop")
    label.add_argument("--no-disk-check", action="store_true")
    label.add_argument("--push-to-hub", default=None, help="also upload the dictionaries and top images to this Hub model repo")
    label.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    label.set_defaults(run=cmd_label)

    lesson = sub.add_parser("lesson", help="run one of the six lessons on toy-shapes and print what it measured")
    lesson.add_argument("name", nargs="?", default=None, help="the lesson (see --list)")
    lesson.add_argument("--list", action="store_true", help="print the lesson names, one a line")
    lesson.add_argument("--seed", type=int, default=None, help="the draw: its prompts and noise (default: the lesson's)")
    lesson.add_argument("--json", action="store_true", help="print the measured figures as one JSON object (the tab's numbers)")
    lesson.set_defaults(run=cmd_lesson)

    train = sub.add_parser("train-sae", help="collect block reads over prompts and train one SAE per block × window × branch (resumable)")
    train.add_argument("--prompts", required=True, help="text file, one prompt per line")
    train.add_argument("--blocks", nargs="+", required=True, help="diffusers block names, e.g. mid_block.attentions.0")
    train.add_argument("--windows", nargs="+", default=["early", "middle", "final"], choices=["early", "middle", "final"])
    train.add_argument("--branches", nargs="+", default=["cond"], choices=["cond", "uncond"])
    train.add_argument("--reads", default="delta", choices=["delta", "output"])
    train.add_argument("--model", default=None)
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--guidance", type=float, default=None)
    train.add_argument("--prompts-per-batch", type=int, default=4)
    add_sae_training_arguments(train, train_device="cpu")
    train.add_argument("--device", default="auto", help="device for sampling")
    train.add_argument("--out", required=True, help="run folder: activations/ and saes/ go here; rerun to resume")
    train.set_defaults(run=cmd_train_sae)
    return parser


def cmd_lesson(args: argparse.Namespace) -> dict | str:
    from .lessons import LESSONS, run_lesson

    if args.list:
        return "\n".join(LESSONS)
    if not args.name:
        raise InvalidInputError("name", f"name a lesson: {', '.join(LESSONS)} (or --list)")
    reading = run_lesson(args.name, seed=args.seed)
    if args.json:
        return reading.to_json()
    rows = "\n".join("  " + ", ".join(f"{k}: {v}" for k, v in row.items()) for row in reading.table)
    return f"{reading.title} (seed {reading.seed}, {reading.seconds:.1f} s)\n\n{reading.finding}\n\n{rows}\n\nThe paper: {reading.paper}"


def add_sae_training_arguments(group, train_device: str) -> None:
    """The TopK SAE training flags, with the paper's defaults (shared by `train-sae` and `python -m concepts.train`)."""
    group.add_argument("--k", type=int, default=10)
    group.add_argument("--expansion-factor", type=int, default=4)
    group.add_argument("--batch-size", type=int, default=4096)
    group.add_argument("--lr", type=float, default=1e-4)
    group.add_argument("--epochs", type=int, default=1)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--train-device", default=train_device, help="SAE training device: auto, cpu or cuda")


def sae_train_config(args: argparse.Namespace):
    """The `TrainConfig` those flags describe ("auto": cuda where a GPU is present, else the CPU)."""
    import torch

    from .training import TrainConfig

    device = args.train_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainConfig(k=args.k, expansion_factor=args.expansion_factor, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, seed=args.seed, device=device)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None, stdout, stderr, interrupted: str = "interrupted") -> int:
    """Parse, run `args.run`, print its ONE JSON object; a ConceptLabError is one `error:` line and
    exit status 2 (the contract of `python -m concepts` and `python -m concepts.train`)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        args = parser.parse_args(argv)
    except CommandLineError as exc:
        print(f"error: {one_line(exc)}", file=stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=stderr, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    run: Callable[[argparse.Namespace], dict | str | None] = args.run
    try:
        result = run(args)
    except ConceptLabError as exc:
        print(f"error: {one_line(exc)}", file=stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=stderr)
        return 130
    if result is not None:  # under accelerate launch only the main process prints the result
        print(result if isinstance(result, str) else json.dumps(result), file=stdout)
    return 0


def main(argv: Sequence[str] | None = None, stdout=None, stderr=None) -> int:
    return run_command(build_parser(), argv, stdout, stderr)
