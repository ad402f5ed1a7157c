"""Training SAEs on UNet activations: collection into shards on disk, b_dec initialisation, the trainer."""

from __future__ import annotations

from concepts.training.geometric_median import MedianResult, geometric_median, weiszfeld
from concepts.training.collect import CollectConfig, CollectResult, collect_activations
from concepts.training.shards import ShardReader, ShardWriter, read_manifest, truncate_shards
from concepts.training.trainer import TrainConfig, TrainResult, evaluate, train_sae
from concepts.training.train_all import train_collected

__all__ = [
    "CollectConfig",
    "CollectResult",
    "collect_activations",
    "truncate_shards",
    "MedianResult",
    "ShardReader",
    "ShardWriter",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "geometric_median",
    "read_manifest",
    "train_collected",
    "train_sae",
    "weiszfeld",
]
