"""`python -m concepts.toy.evaluate names`: are the names in the explore table true of the image?

For fully specified prompts, the explore table (`concepts.steer.explore.top_features`) is built at each
SAE block of the toy model, and every row that shows a name is checked against the scene the prompt
describes. Reported per named-firing share (`explore.NAMED_FIRE_SHARE`): the share of named rows that
are true, and how many named rows (and distinct names) an image gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..steer.explore import run_explore, top_features
from .prompts import labelled_prompts

TOY_MODEL = "toy-shapes"


@dataclass
class NamesEvalConfig:
    prompts: int = 16
    seed: int = 7
    reads: tuple[tuple[str, str], ...] = (
        ("down_blocks.1.attentions.0", "early"), ("mid_block.attentions.0", "middle"), ("up_blocks.1.attentions.0", "final"))
    """(block, window) pairs whose tables are checked."""
    shares: tuple[float, ...] = (0.1, 0.3, 0.5)
    rows: int = 12
    steps: int | None = None
    """Denoising steps (None: the model's default)."""


def evaluate_names(cfg: NamesEvalConfig = NamesEvalConfig(), model: str = TOY_MODEL) -> dict:
    started = time.time()
    true_rows = {share: [] for share in cfg.shares}
    per_table = {share: [] for share in cfg.shares}
    for i, (scene, prompt) in enumerate(labelled_prompts(cfg.prompts, cfg.seed, "train")):
        values = {str(v) for v in scene.as_dict().values()}
        for block, window in cfg.reads:
            out = run_explore(model, prompt, block, window, seed=cfg.seed + i, steps=cfg.steps, top=cfg.rows)
            value_of = {int(f["id"]): str(f.get("value")) for f in (out.concepts or {}).get("features", []) if f.get("labelled")}
            for share in cfg.shares:
                named = [r for r in top_features(out.maps, out.concepts, cfg.rows, share) if r.label]
                true_rows[share] += [value_of[r.id] in values for r in named]
                per_table[share].append((len(named), len({r.label for r in named})))
    by_share = {
        str(share): {
            "named_rows": len(true_rows[share]),
            "true_share": round(float(np.mean(true_rows[share])), 3) if true_rows[share] else None,
            "named_rows_per_table": round(float(np.mean([n for n, _ in per_table[share]])), 2),
            "names_per_table": round(float(np.mean([k for _, k in per_table[share]])), 2),
        }
        for share in cfg.shares
    }
    return {"what": "names", "model": model, "prompts": cfg.prompts, "reads": [list(r) for r in cfg.reads], "rows": cfg.rows,
            "by_share": by_share, "seconds": round(time.time() - started, 1)}
