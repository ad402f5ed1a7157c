"""The weights digest that keys cached scores and activation folders: a retrained model must never
reuse what an older one produced, and an unchanged model must always find its cache."""

import torch

from concepts.weights_digest import weights_digest


def _weights() -> list[tuple[str, torch.Tensor]]:
    torch.manual_seed(0)
    return [("a.weight", torch.randn(32, 32)), ("b.weight", torch.randn(16))]


def test_same_weights_give_the_same_digest_in_any_dtype_copy():
    weights = _weights()
    copied = [(name, w.clone().to(torch.float64)) for name, w in weights]
    assert weights_digest(weights) == weights_digest(copied)


def test_a_change_past_the_hashed_head_still_changes_the_digest():
    weights = _weights()
    changed = [(name, w.clone()) for name, w in weights]
    changed[0][1][-1, -1] += 0.01  # far beyond the first 64 values: only the sum sees it
    assert weights_digest(weights) != weights_digest(changed)


def test_renamed_or_reordered_weights_change_the_digest():
    weights = _weights()
    assert weights_digest(weights) != weights_digest(list(reversed(weights)))
    assert weights_digest(weights) != weights_digest([("c.weight", weights[0][1]), weights[1]])
