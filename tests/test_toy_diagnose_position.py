"""The position diagnostic: its probe and lifts measure what they say, on synthetic data and on the shipped model."""

from __future__ import annotations

import torch

from concepts.pipeline import PipelineCache
from concepts.registry import load_registry
from concepts.toy.diagnose_position import BLOCKS, diagnose, region_of_cells, ridge_probe_accuracy


def test_regions_split_the_grid_in_nine_row_major():
    regions = region_of_cells(8)
    assert regions[0, 0] == 0 and regions[0, 7] == 2 and regions[7, 0] == 6 and regions[7, 7] == 8
    assert sorted(regions.unique().tolist()) == list(range(9))


def test_probe_reads_position_when_features_carry_it_and_not_otherwise():
    gen = torch.Generator().manual_seed(0)
    labels = region_of_cells(8).flatten().repeat(20)
    informative = torch.nn.functional.one_hot(labels, 9).float() + 0.3 * torch.randn(len(labels), 9, generator=gen)
    noise_only = torch.randn(len(labels), 9, generator=gen)
    assert ridge_probe_accuracy(informative, labels) > 0.9
    assert ridge_probe_accuracy(noise_only, labels) < 0.3


def test_shipped_model_blocks_can_read_their_position():
    """Zero padding is the UNet's only position signal; the 8×8 blocks must carry it (chance 0.11)."""
    pipe = PipelineCache().get(load_registry().get("toy-shapes"), device="cpu")
    report = diagnose(pipe)
    assert set(report["probe_accuracy"]) == set(BLOCKS)
    assert report["probe_accuracy"]["mid_block.attentions.0"] > 0.4
    assert all(value > 0 for value in report["attention_lift"].values())
    assert report["x0_lift"] > 0 and len(report["x0_lift_per_position"]) == 9
