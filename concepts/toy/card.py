"""`python -m concepts.toy.card`: write the toy-shapes model card from the files the runs left.

Reads `training.json` (the training recipe, history and hardware), `metrics.json` (the output of
`python -m concepts.toy.evaluate --out ...`) and `saes/recipe.json` (the SAE run) from the toy folder
and writes its `README.md`, so every number on the card is one that a command produced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import TOY_DIR


def _schedule_line(folder: Path) -> str:
    """The scheduler settings that matter for what the model predicts and where sampling starts."""
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    zero_snr = "zero terminal SNR" if config.get("rescale_betas_zero_snr") else "SD1.x's terminal SNR"
    predicts = {"epsilon": "ε-prediction", "v_prediction": "v-prediction"}.get(config.get("prediction_type", "epsilon"), config.get("prediction_type"))
    return f"SD1.x's scaled-linear betas, {zero_snr}, {predicts}, \"{config.get('timestep_spacing', 'leading')}\" steps."


def _table(rows: list[list[object]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _shapes_drawn(held: dict) -> str:
    """Where the held-out shape misses go, pair by pair (absent from metrics written before it)."""
    by_pair = held.get("shapes_drawn_by_pair")
    if not by_pair:
        return ""
    rows = [[pair, sum(drawn.values()), ", ".join(f"{shape} {n}" for shape, n in drawn.items())] for pair, drawn in by_pair.items()]
    return "\n\nShapes the judge sees on each held-out pair:\n\n" + _table(rows, ["pair asked", "images", "shapes drawn"])


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def render_card(folder: Path) -> str:
    training = json.loads((folder / "training.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    saes = json.loads((folder / "saes" / "recipe.json").read_text())
    fidelity = metrics["prompt_fidelity"]
    held = metrics["held_out"]
    ceiling = metrics["vae_ceiling"]["accuracy"]
    attributes = list(fidelity["targets"])
    fidelity_rows = [[a, fidelity["accuracy"][a], ceiling[a], f"≥ {fidelity['targets'][a]}", "yes" if fidelity["meets"][a] else "**no**"] for a in attributes]
    ev = {(r["block"], r["window"], r["branch"]): r for r in metrics["saes"]}
    sae_rows = [[r["block"], r["window"], r["branch"], r["explained_variance"], r["labelled_share"], r["concepts_covered"]] for r in ev.values()]
    recipe = training["recipe"]
    return f"""---
library_name: diffusers
pipeline_tag: text-to-image
tags: [concept-lab, toy, sparse-autoencoder, interpretability]
---

# toy-shapes

A tiny Stable-Diffusion-architecture pipeline (AutoencoderKL, CLIPTextModel, UNet2DConditionModel,
DDIM) trained by Concept Lab on rendered shapes whose concepts are known exactly: shape, colour,
size, position, background and texture. It is the embedded default of the app and the measuring
instrument for its claims. It loads with `StableDiffusionPipeline.from_pretrained` like SD1.4.

- 64×64 RGB images; VAE latents 16×16×4; UNet widths {training["model"]["unet_channels"]} with
  cross-attention at 16×16 and 8×8 and SD's module names; {training["parameters"]["unet"]:,} UNet,
  {training["parameters"]["vae"]:,} VAE and {training["parameters"]["text_encoder"]:,} text-encoder parameters.
- Tokenizer: one token per toy word ({training["vocabulary"]} words), context {training["model"]["token_context"]}.
- Folder size with judge and SAEs: {_size_mb(folder):.1f} MB.
- Sampling defaults: {metrics["steps"]} DDIM steps, guidance {metrics["guidance"]}.
- Noise schedule: {_schedule_line(folder)}

## Training

Hardware: {training["hardware"]}. {training["note"]}

Data: {recipe["images"]:,} rendered scenes of the training split (the colour/shape pairs
red star, blue triangle, yellow cross and purple circle never appear), captions drawn afresh each
step with each attribute dropped with p = {recipe["caption_drop"]} and {recipe["caption_empty"]:.0%} empty captions
in the last leg (the recipe below; the history gives the earlier legs' settings).

{_table([[k, v] for k, v in recipe.items()], ["recipe field", "value"])}

History: {training["history"]}

Reproduce: `python -m concepts.toy.train --run runs/toy-shapes` (resumable; `--help` lists the
recipe flags), then `python -m concepts.toy.saes`, then
`python -m concepts.toy.evaluate --out checkpoints/toy-shapes/metrics.json` and
`python -m concepts.toy.card`.

## Prompt fidelity

The judge (`judge/`, a CNN with ≥ 0.999 accuracy per attribute on rendered images) reads images
generated from {fidelity["prompts"]} fully specified prompts. "VAE ceiling" is its accuracy on rendered
images passed through this VAE's encode and decode: what the VAE alone loses of a rendering. A generated
image is not a rendering's round trip, so it can score above it (where the model draws a cleaner outline or
texture than the VAE gives back).

{_table(fidelity_rows, ["attribute", "accuracy", "VAE ceiling", "target", "met"])}

All six right at once: {fidelity["accuracy"]["all"]}. Held-out colour/shape pairs ({held["prompts"]} prompts):
colour and shape both right {held["accuracy"]["colour_and_shape"]} (target ≥ {held["target"]}), colour
{held["accuracy"]["colour"]}, shape {held["accuracy"]["shape"]}.{_shapes_drawn(held)}

## SAEs (`saes/<block>/<window>/<branch>/`)

TopK SAEs on Δ = block output − input at three blocks (down, mid, up) × three stage windows × both
CFG branches: {saes["recipe"]["expansion_factor"]}× expansion, k = {saes["recipe"]["k"]}, trained on every step of their window
over {saes["recipe"]["prompts"]} training-like prompts. Explained variance is measured on fresh generations;
"labelled" is the share of live features whose best ground-truth attribute value has precision ≥ 0.8,
among the values of the side the feature fires on, object or background, read from the renderer's
masks (`concepts.json`, built from {saes["recipe"]["dictionary_prompts"]} fully specified prompts; `concepts/mask_dictionary.py`).

{_table(sae_rows, ["block", "window", "branch", "explained variance", "labelled share", "concepts covered"])}

Overall labelled share: {metrics["labelled_share"]["share_of_alive_features"]} ({metrics["labelled_share"]["labelled"]} of {metrics["labelled_share"]["alive"]} live features).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(TOY_DIR))
    args = parser.parse_args()
    folder = Path(args.folder)
    (folder / "README.md").write_text(render_card(folder))
    print(json.dumps({"card": str(folder / "README.md")}))


if __name__ == "__main__":
    main()
