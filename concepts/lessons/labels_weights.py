"""Lesson 6, "Labels mark, weights draw": switch a concept's labelled SAE features off, or erase its weights.

The features a dictionary labels "striped" fire on striped objects: they *mark* stripes. Does
switching them off (z := 0 at every block and window whose dictionary labels the concept, both
guidance branches, all steps) take the stripes away? Compared with CAD's weight erase on the same prompts.
"""

from __future__ import annotations

import torch

from ..features import image_activations
from ..hooks import BlockHooks, Capture
from ..saes import labelled_saes
from ..steer.steering import suppression_edits
from ..steps import stage_of
from ..edit import AblationHooks
from ..edit.service import EditSpec
from ..toy.captions import caption
from ..toy.prompts import attribute_of, scenes_showing, with_value
from ..toy.world import ATTRIBUTES
from .pictures import row_examples
from .reading import Bar, LessonReading, rate_text, share
from .toy_bench import ToyBench

CONCEPT = "striped"
PROMPTS = 8
PAPER = ("SAeUron erases concepts on SD1.4 by switching off SAE features (its SAEs read the block output and were "
         "trained for it); the steering paper uses its features to steer, not to erase.")


def recalls_of(concepts: dict | None, features) -> list[float]:
    """The dictionary's recall of each feature: the share of the label's images it fires on."""
    rows = {row.get("id"): row for row in (concepts or {}).get("features", []) if isinstance(row, dict)}
    return [float(rows[f]["recall"]) for f in features if f in rows and rows[f].get("recall") is not None]


def run(bench: ToyBench, seed: int, concept: str = CONCEPT) -> LessonReading:
    steps = bench.steps
    scenes = scenes_showing(concept, PROMPTS, seed)
    attribute = attribute_of(concept)[0]
    others = [c for c in ATTRIBUTES[attribute] if c != concept]
    own = [caption(s) for s in scenes]
    swapped = [caption(with_value(s, others[i % len(others)])) for i, s in enumerate(scenes)]
    saes = labelled_saes(bench.world, concept, bench.pipe.unet)
    # Mark: the labelled features' strongest response per image, on the concept's scenes and the same scenes with another value.
    fired = torch.zeros(2 * PROMPTS)

    def sink(block: str, capture: Capture) -> None:
        for loaded, features in saes:
            if loaded.entry.block == block and stage_of(capture.step.index, steps) == loaded.entry.window:
                fired.add_(image_activations(loaded.sae, capture.cond)[:, list(features)].amax(dim=1))

    blocks = sorted({loaded.entry.block for loaded, _ in saes})
    def capture() -> list[BlockHooks]:
        fired.zero_()  # a rerun alone starts the tally again
        return [BlockHooks(bench.pipe.unet, capture=blocks, sink=sink)]

    before = bench.draw(own + swapped, seed, capture if blocks else None)
    edits = suppression_edits(saes, steps)
    off = bench.draw(own, seed, lambda: [BlockHooks(bench.pipe.unet, edits=edits)]) if edits else None
    _, plan = bench.edit(EditSpec(concept))
    erased = bench.draw(own, seed, lambda: [AblationHooks(bench.pipe.unet, plan)])
    counts = {"before": sum(r[attribute] == concept for r in bench.read(before)[:PROMPTS]),
              "labelled features off": None if off is None else sum(r[attribute] == concept for r in bench.read(off)),
              "weights erased (CAD)": sum(r[attribute] == concept for r in bench.read(erased))}

    n_features = sum(len(f) for _, f in saes)
    on_own, on_other = int((fired[:PROMPTS] > 0).sum()), int((fired[PROMPTS:] > 0).sum())
    bars = [Bar(f"labelled features fire on {concept} scenes", "labelled features fire", share(on_own, PROMPTS), count=PROMPTS),
            Bar(f"… and on the same with another {attribute}", "labelled features fire", share(on_other, PROMPTS), count=PROMPTS)]
    bars += [Bar(name, f"{concept} read on {concept} prompts", share(n, PROMPTS) if n is not None else None, count=PROMPTS) for name, n in counts.items()]
    recalls = [r for loaded, features in saes for r in recalls_of(loaded.concepts, features)]
    finding = (f"{n_features} feature{'s' * (n_features != 1)} in {len(saes)} SAE{'s' * (len(saes) != 1)} carr{'y' if n_features != 1 else 'ies'} "
               f"the label {concept}. In this draw {'it' if n_features == 1 else 'they'} fired on {on_own}/{PROMPTS} {concept} scenes and {on_other}/{PROMPTS} of the same "
               f"scenes with another {attribute}" + (f"; in the dictionary's images they fire on {100 * sum(recalls) / len(recalls):.0f} % of the "
                                             f"{concept} images (a label promises that a feature means {concept} when it fires, not that it "
                                             f"fires whenever {concept} is there). " if recalls else ". ")
               if saes else f"No dictionary labels {concept}, so there is nothing to switch off. ")
    finding += (f"{concept.capitalize()} was read on {rate_text(counts['before'], PROMPTS)} of its prompts before, "
                + (f"{rate_text(counts['labelled features off'], PROMPTS)} with the labelled features off, " if off is not None else "")
                + f"{rate_text(counts['weights erased (CAD)'], PROMPTS)} with its weights erased. ")
    if off is not None and counts["labelled features off"] >= counts["before"] - 1 and counts["weights erased (CAD)"] < counts["before"] - 1:
        finding += (f"Switching the labelled features off barely changes what is drawn; the weights that draw {concept} are elsewhere, "
                    "in the feed-forward weights CAD finds.")
    table = [{"edit": name, f"{concept} read": rate_text(n, PROMPTS) if n is not None else "n/a"} for name, n in counts.items()]
    table.append({"edit": f"labelled features fired on: {concept} scenes / the same with another {attribute}", f"{concept} read": f"{on_own}/{PROMPTS} / {on_other}/{PROMPTS}"})
    images = [before.images[0], *([off.images[0]] if off is not None else []), erased.images[0]]
    examples = row_examples(images, [name for name in counts if name != "labelled features off" or off is not None])
    return LessonReading(
        lesson="labels-weights", title="Labels mark, weights draw", seed=seed,
        question=f"Switch off the features labelled {concept}, or erase its weights: is {concept} still drawn? ({PROMPTS} prompts per bar)",
        y_label="share of prompts", bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, table=table, examples=examples, example_note=f"The first prompt: “{own[0]}”, seed {seed}.",
        try_it={"tab": "erase", "concept": concept, "method": "cad", "action": "erase", "seed": str(seed)},
    )
