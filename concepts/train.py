"""`python -m concepts.train`: reproduce the paper's SAEs for any SD1.x model, end to end.

Prompts (a text file or a Hub dataset) → disk plan (refused up front if it cannot fit) → activations
collected at the paper's 50 DDIM steps and guidance 7.5, streamed to shards → one TopK SAE per
block × window × branch → a concept dictionary per cond SAE from prompt-word co-occurrence → model
card and registry entry → optionally `--push-to-hub REPO`. Rerunning with the same `--out` resumes:
finished prompt chunks and training checkpoints are kept (see `training/collect.py`, `trainer.py`).

Same contract as `python -m concepts`: ONE JSON object on stdout, logs on stderr, a fixable problem
exits 2 with one `error: ...` line.

`accelerate launch --num_processes N [--num_machines M ...] -m concepts.train ...` runs the same
recipe on N processes: each collects its share of the sampling batches (`training/ranks.py`), then
all train each SAE data-parallel (`training/trainer.py`); only the main process writes the shared
files and prints the result. `--dry-run --num-processes N --num-machines M [--measure]` plans it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .cli import _output_dir, _Parser, add_sae_training_arguments, run_command, sae_train_config
from .errors import CheckpointError, InvalidInputError
from .hub import Source, resolve, validate_repo_id
from .steps import STAGES

log = logging.getLogger("concepts.train")

PAPER_BLOCKS = ("down_blocks.2.attentions.1", "mid_block.attentions.0", "up_blocks.1.attentions.0")
"""The paper's hook points in SD1.x (docs/paper.md)."""
LIGHT_FILES = ["model_index.json", "unet/config.json", "vae/config.json", "tokenizer/*"]
"""What the plan needs of a pipeline: configs and the tokenizer, no weights (a dry run fetches only these)."""


class ModelChoice(NamedTuple):
    """The diffusion model of a run, from --model (registry) or --pipeline (Hub id / folder)."""

    name: str
    """Model-world name proposed for the registry entry."""
    target: Any
    """What `load_pipeline` takes: the registry's ModelWorld or a Source."""
    source: Source
    base_dir: Path | None
    """Folder relative registry paths are resolved against (None for --pipeline)."""
    defaults: dict[str, Any]
    """The registry world's image size (empty for --pipeline: the UNet's native size is used)."""
    base_model: str
    """Hub id (else registry name / folder name) recorded in the SAEs and the model card."""
    spec: dict[str, Any]
    """Registry `pipeline` spec for the registry entry."""


def _model(args: argparse.Namespace) -> ModelChoice:
    if args.pipeline:
        local = Path(args.pipeline).expanduser()
        if local.exists():
            folder = local.resolve()
            source, base, spec = Source(path=str(folder)), folder.name, {"path": str(folder)}
        else:
            validate_repo_id(args.pipeline, field="pipeline")
            source, base, spec = Source(repo=args.pipeline, revision=args.pipeline_revision), args.pipeline, {"repo": args.pipeline}
            if args.pipeline_revision:
                spec["revision"] = args.pipeline_revision
        name = args.name or base.rsplit("/", 1)[-1].lower() + "-saes"
        return ModelChoice(name, source, source, None, {}, base, spec)
    from .registry import load_registry

    world = load_registry(args.registry).get(args.model)
    source = world.pipeline
    spec = {k: v for k, v in (("repo", source.repo), ("path", source.path), ("subfolder", source.subfolder), ("revision", source.revision)) if v}
    if source.path and not Path(source.path).is_absolute():
        spec["path"] = str((world.base_dir / source.path).resolve())
    defaults = {"height": world.defaults.height, "width": world.defaults.width}
    return ModelChoice(args.name or world.name, world, source, world.base_dir, defaults, source.repo or world.name, spec)


def _light_folder(source: Source, base_dir: Path | None) -> Path:
    prefix = f"{source.subfolder}/" if source.subfolder else ""
    return resolve(source, ["model_index.json"], base_dir=base_dir, allow_patterns=[prefix + p for p in LIGHT_FILES] if source.repo else None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is missing or not JSON ({exc}): not a diffusers SD pipeline folder") from None


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot load the tokenizer in {folder / 'tokenizer'}: {exc}") from None


def _prompt_list(out: Path, prompts: list[str], write: bool = True) -> Path:
    """Keep the run's prompt list in `out/prompts.txt`; a resumed run must bring the same list."""
    path = out / "prompts.txt"
    text = "\n".join(prompts) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise InvalidInputError("out", f"{out} holds a run over another prompt list ({path}); use a new --out or the same prompts")
    if write and not path.is_file():
        path.write_text(text, encoding="utf-8")
    return path


def _check_same_collection(activations: Path, cfg) -> None:
    """A resumed run must collect exactly as the first did: `collect_activations` checks only the
    prompt list, and a changed block list, step count or batching would mix incompatible rows (and
    break the per-prompt row layout the word dictionary relies on)."""
    wanted = json.loads(json.dumps(asdict(cfg)))
    manifests = [*activations.glob("*/*/*/manifest.json"), *activations.glob("rank-*-of-*/*/*/*/manifest.json")]  # one process, or each rank
    for manifest in sorted(manifests):
        saved = _read_json(manifest).get("meta", {}).get("config")
        if not isinstance(saved, dict):
            continue
        changed = sorted(k for k in wanted if k != "rows_per_shard" and saved.get(k) != wanted[k])
        if changed:
            shown = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
            raise InvalidInputError(changed[0], f"{activations.parent} was collected with {shown}; rerun with those settings to resume, or use a new --out")


def _dictionaries(rows: list[dict], collected, prompts: list[str], word_cfg, device: str) -> None:
    """Label every cond SAE by prompt-word co-occurrence; adds a "dictionary" summary to each row."""
    from .sae import load_native
    from .training.word_dictionary import prompt_activations, save_concepts, word_dictionary

    for row in rows:
        row["dictionary"] = None
        if row["branch"] != "cond":
            continue
        key = (row["block"], row["window"], row["branch"])
        sae = load_native(row["folder"], device=device).eval()
        acts = prompt_activations(sae, collected.folders[key], len(prompts))
        meta = {"block": row["block"], "window": row["window"], "branch": row["branch"]}
        dictionary = word_dictionary(acts, prompts, word_cfg, meta=meta)
        if dictionary is None:
            log.warning("%s/%s: no prompt word passes the filters; no concepts.json written", row["block"], row["window"])
            continue
        save_concepts(dictionary, row["folder"])
        top = sorted(dictionary["concepts"].items(), key=lambda item: -len(item[1]))[:10]
        summary = dictionary["summary"]
        row["dictionary"] = {"labelled": summary["labelled"], "alive": summary["alive"], "concepts_covered": summary["concepts_covered"],
                             "words": dictionary["meta"]["words"], "top_concepts": [label for label, _ in top]}


def _merged(activations: Path, keys: list[tuple[str, str, str]]):
    """The collection as training sees it after a multi-process run: the merged folders."""
    from .training.collect import CollectResult
    from .training.shards import read_manifest

    folders = {key: activations.joinpath(*key) for key in keys}
    manifests = {key: read_manifest(folder) for key, folder in folders.items()}
    done = min(int(m["meta"].get("prompts_done", 0)) for m in manifests.values())
    return CollectResult(folders, {key: m["rows"] for key, m in manifests.items()}, done)


def _process_plan(args: argparse.Namespace, model: ModelChoice, plan, prompts: list[str], collect_cfg) -> dict[str, Any]:
    """The dry run's plan over --num-processes on --num-machines; with --measure, timed on this device."""
    from .training.process_plan import measure_seconds_per_prompt, plan_processes

    seconds = None
    if args.measure:
        import tempfile

        from .pipeline import load_pipeline

        pipe = load_pipeline(model.target, args.device)
        with tempfile.TemporaryDirectory(prefix="concept-lab-measure-") as scratch:
            seconds = measure_seconds_per_prompt(pipe, prompts, collect_cfg, Path(scratch))
    return plan_processes(plan, collect_cfg, args.num_processes, args.num_machines, seconds)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from .training import CollectConfig
    from .training.disk_plan import block_geometry, check_disk, free_bytes, plan_disk, vae_scale_factor
    from .training.prompt_sources import PromptSpec, load_prompts, token_fitter
    from .training.word_dictionary import WordDictionaryConfig, read_vocabulary

    from .training.ranks import RankPart, check_layout, device_of, launched_accelerator, merge_ranks

    started = time.perf_counter()
    accelerator = None if args.dry_run else launched_accelerator()
    part = RankPart(accelerator.process_index, accelerator.num_processes) if accelerator is not None else RankPart()
    main = part.rank == 0
    model = _model(args)
    # Everything is validated before a weight is loaded or a prompt sampled.
    spec = PromptSpec(file=args.prompts, hub_dataset=args.hub_dataset, column=args.dataset_column, file_pattern=args.dataset_file,
                      revision=args.dataset_revision, max_prompts=args.max_prompts, overlong=args.overlong)
    word_cfg = WordDictionaryConfig(min_word_prompts=args.min_word_prompts, max_word_share=args.max_word_share, min_fires=args.min_fires,
                                    labelled_precision=args.label_precision, vocabulary=read_vocabulary(args.nouns) if args.nouns else None)
    if args.push_to_hub:
        validate_repo_id(args.push_to_hub, field="push_to_hub")
    folder = _light_folder(model.source, model.base_dir)
    unet_cfg, vae_cfg = _read_json(folder / "unet" / "config.json"), _read_json(folder / "vae" / "config.json")
    scale = vae_scale_factor(vae_cfg)
    native = int(unet_cfg.get("sample_size", 64)) * scale
    height = args.height or model.defaults.get("height") or native
    width = args.width or model.defaults.get("width") or native
    collect_cfg = CollectConfig(blocks=tuple(b.removeprefix("unet.") for b in args.blocks), windows=tuple(args.windows), branches=tuple(args.branches),
                                steps=args.steps, guidance=args.guidance, height=height, width=width, reads=args.reads,
                                steps_per_window=args.steps_per_window, prompts_per_batch=args.prompts_per_batch, chunk_prompts=args.chunk_prompts,
                                dtype=args.dtype, seed=args.seed)
    train_cfg = sae_train_config(args)
    geometry = {b: block_geometry(unet_cfg, scale, height, width, b) for b in collect_cfg.blocks}
    prompt_set = load_prompts(spec, token_fitter(_tokenizer(folder)))
    prompts = prompt_set.prompts
    plan = plan_disk(len(prompts), geometry, collect_cfg, train_cfg)
    out = Path(args.out)
    result: dict[str, Any] = {"model": model.name, "base_model": model.base_model, "prompts": prompt_set.summary(), "plan": plan.to_json(), "out": str(out)}
    if args.dry_run:
        result["plan"]["free_bytes"] = free_bytes(out)
        result["plan"]["fits"] = result["plan"]["free_bytes"] >= plan.total_bytes
        result["dry_run"] = True
        result["processes"] = _process_plan(args, model, plan, prompts, collect_cfg)
        return result
    # Every process checks (read-only, the same answer everywhere); only the main one writes.
    _check_same_collection(out / "activations", collect_cfg)
    check_layout(out / "activations", part)
    if not args.no_disk_check:
        result["plan"].update(check_disk(plan, out))
    out = _output_dir(args.out)
    _prompt_list(out, prompts, write=main)

    from .pipeline import load_pipeline
    from .training import collect_activations, train_collected
    from .training.hub_push import push_to_hub
    from .training.model_card import RunInfo, write_release_files

    pipe = load_pipeline(model.target, device_of(accelerator) if accelerator is not None else args.device)
    collect_started = time.perf_counter()
    collected = collect_activations(pipe, prompts, out / "activations", collect_cfg, progress=args.verbose, part=part)
    del pipe  # the SAEs train on the shards alone: free the pipeline's memory
    if part.split:  # every rank done: the main process lists all their shards for training
        accelerator.wait_for_everyone()
        if main:
            merge_ranks(out / "activations", list(collected.folders), part.world)
        accelerator.wait_for_everyone()
        collected = _merged(out / "activations", list(collected.folders))
    collect_seconds, train_started = time.perf_counter() - collect_started, time.perf_counter()
    rows = train_collected(collected, out / "saes", train_cfg, base_model=model.base_model, reads=args.reads, progress=args.verbose,
                           accelerator=accelerator)
    result["timings"] = {"collect_seconds": round(collect_seconds, 3), "train_seconds": round(time.perf_counter() - train_started, 3)}
    if not main:
        return None
    _dictionaries(rows, collected, prompts, word_cfg, train_cfg.device)
    info = RunInfo(name=model.name, base_model=model.base_model, pipeline=model.spec, collect=asdict(collect_cfg), train=asdict(train_cfg),
                   prompts=prompt_set.summary(), saes=rows, repo=args.push_to_hub, revision=args.revision,
                   defaults={"steps": args.steps, "guidance": args.guidance, "height": height, "width": width})
    card, entry = write_release_files(info, out)
    result.update({"saes": rows, "model_card": str(card), "registry_entry": str(entry)})
    if args.push_to_hub:
        result["pushed"] = push_to_hub(out, args.push_to_hub, private=args.private, revision=args.revision)
    result["seconds"] = round(time.perf_counter() - started, 3)
    if part.split:
        result["processes"] = part.world
    return result


def build_parser() -> _Parser:
    parser = _Parser(prog="python -m concepts.train", description="Train the paper's SAEs (and word concept dictionaries) for an SD1.x model; rerun to resume.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    source = parser.add_argument_group("prompts")
    where = source.add_mutually_exclusive_group(required=True)
    where.add_argument("--prompts", default=None, help="text file, one prompt per line")
    where.add_argument("--hub-dataset", default=None, metavar="OWNER/NAME", help="Hub dataset of prompts (.txt/.csv/.jsonl/.json/.parquet)")
    source.add_argument("--dataset-column", default=None, metavar="COL", help="column holding the prompt (default: prompt, text, caption, ...)")
    source.add_argument("--dataset-file", default=None, metavar="PATTERN", help="glob of the dataset files to fetch, e.g. 'data/train-*.parquet'")
    source.add_argument("--dataset-revision", default=None)
    source.add_argument("--max-prompts", type=int, default=None, metavar="N")
    source.add_argument("--overlong", default="trim", choices=["trim", "skip"], help="prompts beyond the text encoder's 77 tokens")

    model = parser.add_argument_group("model")
    which = model.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="registry name (default: the registry's default)")
    which.add_argument("--pipeline", default=None, metavar="REPO_OR_FOLDER", help="Hub id or local folder of any SD1.x diffusers pipeline")
    model.add_argument("--pipeline-revision", default=None)
    model.add_argument("--registry", default=None, help="registry JSON (default: checkpoints/registry.json)")
    model.add_argument("--name", default=None, help="model-world name in the registry entry (default: from the model)")

    collect = parser.add_argument_group("collection (the paper's defaults)")
    collect.add_argument("--blocks", nargs="+", default=list(PAPER_BLOCKS))
    collect.add_argument("--windows", nargs="+", default=list(STAGES), choices=list(STAGES))
    collect.add_argument("--branches", nargs="+", default=["cond"], choices=["cond", "uncond"])
    collect.add_argument("--reads", default="delta", choices=["delta", "output"])
    collect.add_argument("--steps", type=int, default=50, help="DDIM steps")
    collect.add_argument("--guidance", type=float, default=7.5)
    collect.add_argument("--height", type=int, default=None, help="default: the model's")
    collect.add_argument("--width", type=int, default=None)
    collect.add_argument("--steps-per-window", default="representative", choices=["representative", "all"],
                         help="the paper's one step per window (t = 1, 0.5, 0) or every step of it")
    collect.add_argument("--prompts-per-batch", type=int, default=4)
    collect.add_argument("--chunk-prompts", type=int, default=256, help="prompts between two resumable checkpoints of the collection")
    collect.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"], help="storage of the activations")
    collect.add_argument("--device", default="auto", help="sampling device: auto, cpu or cuda")

    train = parser.add_argument_group("training (the paper's defaults)")
    add_sae_training_arguments(train, train_device="auto")

    words = parser.add_argument_group("concept dictionary (prompt-word co-occurrence)")
    words.add_argument("--nouns", default=None, metavar="FILE", help="only these words (one per line) label features")
    words.add_argument("--min-word-prompts", type=int, default=3, help="words in fewer prompts are ignored")
    words.add_argument("--max-word-share", type=float, default=0.5, help="words in a larger share of prompts are ignored")
    words.add_argument("--min-fires", type=int, default=10, help="features firing on fewer prompts get no label")
    words.add_argument("--label-precision", type=float, default=0.8, help="precision from which a label counts")

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--out", required=True, help="run folder (activations/, saes/, README.md, registry-entry.json); rerun to resume")
    run_group.add_argument("--dry-run", action="store_true", help="print the prompt count and disk plan only; sample nothing")
    run_group.add_argument("--num-processes", type=int, default=1, metavar="N",
                           help="with --dry-run: plan for N processes in all (accelerate launch --num_processes N)")
    run_group.add_argument("--num-machines", type=int, default=1, metavar="M", help="with --dry-run: ... on M machines")
    run_group.add_argument("--measure", action="store_true",
                           help="with --dry-run: load the pipeline and time one batch on --device for the time estimate")
    run_group.add_argument("--no-disk-check", action="store_true", help="run even if the plan exceeds the free space")
    run_group.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload SAEs, dictionaries and the model card to this Hub model repo")
    run_group.add_argument("--private", action="store_true", help="create the Hub repo private")
    run_group.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    return parser


def main(argv: Sequence[str] | None = None, stdout=None, stderr=None) -> int:
    parser = build_parser()
    parser.set_defaults(run=run)
    return run_command(parser, argv, stdout, stderr, interrupted="interrupted (rerun the same command to resume)")


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported
    raise SystemExit(main())
