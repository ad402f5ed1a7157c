"""`python -m concepts.toy.evaluate evolve`: in what order does the toy model decide things?

For each fully specified prompt, one generation is followed step by step (`concepts.evolve.evolution`):
the judge reads every step's x0 preview, and an attribute counts as decided at the first step from
which the judge's reading stays what the final image shows. The same is done from the SAE features
of the mid block (for the attributes its dictionary has labels for). Reports the mean and median
decision step per attribute, and draws them as one figure (docs/evolution.md's order of decisions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evolve.evolution import run_evolution
from ..evolve.figures import decided_figure, decisions
from ..registry import load_registry
from .prompts import labelled_prompts
from .world import ATTRIBUTES

TOY_MODEL = "toy-shapes"


@dataclass
class EvolveEvalConfig:
    prompts: int = 40
    block: str = "mid_block.attentions.0"
    seed: int = 777


def evaluate_evolution(cfg: EvolveEvalConfig = EvolveEvalConfig(), model: str = TOY_MODEL, figure: Path | None = None) -> dict:
    started = time.time()
    world = load_registry().get(model)
    reader = world.knowledge.reader()
    per_source: dict[str, dict[str, list[int]]] = {}
    undecided: dict[str, dict[str, int]] = {}
    steps = world.defaults.steps
    for i, (_, prompt) in enumerate(labelled_prompts(cfg.prompts, cfg.seed, "train")):
        evo = run_evolution(model, prompt, seed=cfg.seed + i, blocks=[cfg.block], reader=reader)
        for source, found in decisions(evo, cfg.block).items():
            for attribute, step in found.items():
                if step is None:
                    undecided.setdefault(source, {}).setdefault(attribute, 0)
                    undecided[source][attribute] += 1
                else:
                    per_source.setdefault(source, {}).setdefault(attribute, []).append(step)
    summary = {
        source: {
            attribute: {"mean": round(float(np.mean(v)), 2), "median": float(np.median(v)), "prompts": len(v),
                        "share_decided_at_step_0": round(float(np.mean(np.asarray(v) == 0)), 3)}
            for attribute, v in sorted(found.items())
        }
        for source, found in per_source.items()
    }
    order = {source: sorted(found, key=lambda a: found[a]["mean"]) for source, found in summary.items()}
    report = {
        "what": "evolve", "model": world.name, "prompts": cfg.prompts, "steps": steps, "block": cfg.block,
        "decision_step": summary, "order": order, "never_settled": undecided,
        "attributes": list(ATTRIBUTES), "seconds": round(time.time() - started, 1),
    }
    if figure is not None:
        import matplotlib.pyplot as plt

        means = {source: {a: row["mean"] for a, row in found.items()} for source, found in summary.items()}
        fig = decided_figure(means, steps, title=f"When does toy-shapes decide? Mean over {cfg.prompts} prompts")
        figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure, dpi=110)
        plt.close(fig)
        report["figure"] = str(figure)
    return report
