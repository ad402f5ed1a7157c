"""Train one SAE per collected (block, window, branch) folder: the step after `collect_activations`."""

from __future__ import annotations

import logging
from pathlib import Path

from .collect import CollectResult
from .trainer import TrainConfig, train_sae

log = logging.getLogger(__name__)


def train_collected(collected: CollectResult, saes_dir: str | Path, cfg: TrainConfig, base_model: str, reads: str = "delta", progress: bool = True,
                    accelerator=None) -> list[dict]:
    """Train (or resume) an SAE for every shard folder into `saes_dir/<block>/<window>/<branch>/`;
    returns one JSON-ready row per SAE with its explained variance and dead fraction. With an
    `accelerator` of several processes each SAE is trained by all of them (data-parallel)."""
    rows = []
    for (block, window, branch), folder in collected.folders.items():
        fields = {"block": block, "window": window, "branch": branch, "reads": reads, "base_model": base_model}
        result = train_sae(folder, Path(saes_dir) / block / window / branch, cfg, sae_fields=fields, progress=progress, accelerator=accelerator)
        log.info("%s/%s/%s: EV %.3f dead %.3f", block, window, branch, result.explained_variance, result.dead_fraction)
        rows.append({
            "block": block, "window": window, "branch": branch, "folder": str(result.out_dir),
            "explained_variance": result.explained_variance, "dead_fraction": result.dead_fraction,
            "steps": result.steps, "tokens": result.tokens, "rows": collected.rows[(block, window, branch)],
        })
    return rows
