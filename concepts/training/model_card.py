"""The release files of a training run: a Hub model card (README.md) and a registry entry.

Both are written into the run folder whether or not the SAEs are pushed, so a local run is as
usable as a published one: `registry-entry.json` is a model world to paste into the registry's
`models`, pointing at the local SAE folders (or, once pushed, at the Hub repo and its subfolders).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE, ENTRY_FILE = "README.md", "registry-entry.json"
PLACEHOLDER_REPO = "OWNER/NAME"


@dataclass
class RunInfo:
    """What a training run was and produced, for the card and the registry entry."""

    name: str
    """Registry name proposed for the model world."""
    base_model: str
    """Hub id (or name / folder) of the diffusion model."""
    pipeline: dict[str, Any]
    """Registry `pipeline` spec of the base model ({"repo": ...} or {"path": ...})."""
    collect: dict[str, Any]
    """The collection config (blocks, windows, branches, steps, guidance, size, reads)."""
    train: dict[str, Any]
    """The training config (k, expansion factor, batch, lr, ...)."""
    prompts: dict[str, Any]
    """`PromptSet.summary()`."""
    saes: list[dict[str, Any]]
    """Rows of `train_collected`, each with a "dictionary" summary or None."""
    repo: str | None = None
    """Hub repo the SAEs are (to be) pushed to."""
    revision: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    """Registry sampling defaults of the model world."""


def _sae_source(info: RunInfo, row: dict[str, Any], repo: str | None, out: Path) -> dict[str, Any]:
    sub = f"saes/{row['block']}/{row['window']}/{row['branch']}"
    if repo is None:
        return {"path": str((out / sub).resolve())}
    return {"repo": repo, "subfolder": sub, **({"revision": info.revision} if info.revision else {})}


def registry_entry(info: RunInfo, out: Path, repo: str | None) -> dict[str, Any]:
    """`{name: model world}` for the registry's `models`, its SAEs local (repo None) or on the Hub."""
    saes = [{"block": r["block"], "window": r["window"], "branch": r["branch"], "reads": info.collect.get("reads", "delta"),
             **_sae_source(info, r, repo, out)} for r in info.saes]
    return {info.name: {"title": f"{info.base_model} with Concept Lab SAEs", "pipeline": info.pipeline, "defaults": info.defaults, "saes": saes}}


def _ev(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) and value == value else "n/a"


def model_card(info: RunInfo) -> str:
    """README.md for the SAE repo: provenance, recipe, quality per SAE, dictionaries, how to use."""
    repo = info.repo or PLACEHOLDER_REPO
    base = info.base_model
    c, t, p = info.collect, info.train, info.prompts
    front = ["---", "library_name: concept-lab", "tags:", "- sparse-autoencoder", "- stable-diffusion", "- interpretability"]
    if "/" in base and not Path(base).exists():
        front.append(f"base_model: {base}")
    front += ["---", ""]
    rows = ["| block | window | branch | rows | explained variance | dead | labelled features | concepts |", "|---|---|---|---|---|---|---|---|"]
    for r in info.saes:
        d = r.get("dictionary") or {}
        rows.append(f"| `{r['block']}` | {r['window']} | {r['branch']} | {r.get('rows', 'n/a')} | {_ev(r.get('explained_variance'))} | "
                    f"{_ev(r.get('dead_fraction'))} | {d.get('labelled', '–')} | {d.get('concepts_covered', '–')} |")
    examples = sorted({c for r in info.saes for c in (r.get("dictionary") or {}).get("top_concepts", [])})[:20]
    entry = registry_entry(info, Path("."), repo)
    lines = front + [
        f"# TopK SAEs for {base}",
        "",
        "Sparse autoencoders on the residual updates (Δ = output − input) of the UNet's transformer blocks, "
        "one per block × denoising stage × CFG branch, trained with `python -m concepts.train` of Concept Lab "
        "(the recipe of Tinaz et al., *Emergence and Evolution of Interpretable Concepts in Diffusion Models*, NeurIPS 2025).",
        "",
        "## Recipe",
        "",
        f"- Base model: `{base}`; DDIM {c.get('steps')} steps, guidance {c.get('guidance')}, {c.get('height')}×{c.get('width')} px, one image per prompt.",
        f"- Blocks: {', '.join(f'`{b}`' for b in c.get('blocks', []))}; windows: {', '.join(c.get('windows', []))} "
        f"(steps recorded: {c.get('steps_per_window')}); branches: {', '.join(c.get('branches', []))}; reads: {c.get('reads')}.",
        f"- TopK SAE: k = {t.get('k')}, n = {t.get('num_latents') or str(t.get('expansion_factor')) + ' × d'}, AuxK α = {t.get('auxk_alpha')}, "
        f"k_aux = {t.get('k_aux')}, Adam lr {t.get('lr')}, batch {t.get('batch_size')}, {t.get('epochs')} epoch(s), unit-norm decoder, b_dec at the geometric median.",
        f"- Prompts: {p.get('count')} from {p.get('source')} ({p.get('duplicates', 0)} duplicates dropped, "
        f"{p.get('trimmed_overlong', 0)} overlong trimmed, {p.get('skipped_overlong', 0)} skipped).",
        "",
        "## SAEs",
        "",
        *rows,
        "",
        "Explained variance is measured on (a sample of) the training activations; the paper reports 37–56 % for k = 10.",
        "",
        "## Concept dictionaries",
        "",
        "`concepts.json` beside each cond SAE labels features by **co-occurrence with the prompt's words** "
        "(each prompt's maximum activation over positions, against its nouns; precision, recall and AUROC per word), "
        "not by segmentation as in the paper: a label says which prompt word a feature fires with, a weaker "
        "statement than where in the image it fires.",
        *([f"Example concepts: {', '.join(examples)}."] if examples else []),
        "",
        "## Use with Concept Lab",
        "",
        "Add this model world to `models` in `checkpoints/registry.json` (or a registry named by `--registry` / `CONCEPT_LAB_REGISTRY`):",
        "",
        "```json",
        json.dumps(entry, indent=2),
        "```",
        "",
        "Each folder is in sparsify's format (`cfg.json` + `sae.safetensors`: `encoder.weight [n, d]`, `encoder.bias [n]`, "
        "`W_dec [n, d]`, `b_dec [d]`), so `sparsify`'s loaders read it too.",
        "",
    ]
    return "\n".join(lines)


def write_release_files(info: RunInfo, out: Path) -> tuple[Path, Path]:
    """Write README.md (the model card) and registry-entry.json into the run folder."""
    card, entry = out / CARD_FILE, out / ENTRY_FILE
    card.write_text(model_card(info), encoding="utf-8")
    entry.write_text(json.dumps(registry_entry(info, out, info.repo), indent=2), encoding="utf-8")
    return card, entry
