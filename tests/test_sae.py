"""TopK SAE: known answers from hand-set weights, AuxK, decoder norms, config checks."""

from __future__ import annotations

import pytest
import torch

from concepts.errors import CheckpointError, InvalidInputError
from concepts.sae import SAEConfig, TopKSAE


def hand_set_sae() -> TopKSAE:
    """d = 3, n = 4, k = 2: latents 0-2 read the coordinates, latent 3 reads their sum."""
    sae = TopKSAE(SAEConfig(d_in=3, num_latents=4, k=2, normalize_decoder=False))
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
        sae.encoder.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -10.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0, 1.0]))
    return sae


def test_known_top_k_and_reconstruction():
    sae = hand_set_sae()
    x = torch.tensor([[4.0, 2.0, 1.5], [1.5, 0.0, 3.0]])  # minus b_dec: [3, 1, 0.5] and [0.5, -1, 2]
    top = sae.encode(x)
    assert top.top_indices.tolist() == [[0, 1], [2, 0]]
    torch.testing.assert_close(top.top_acts, torch.tensor([[3.0, 1.0], [2.0, 0.5]]))
    # decode: acts · rows + b_dec
    torch.testing.assert_close(sae.decode(*top), torch.tensor([[4.0, 2.0, 1.0], [1.5, 1.0, 3.0]]))
    dense = sae.encode_dense(x)
    assert dense.tolist() == [[3.0, 1.0, 0.0, 0.0], [0.5, 0.0, 2.0, 0.0]]  # ReLU'd, sum latent below zero
    torch.testing.assert_close(sae.decode_dense(dense), sae.decode(*top))


def test_any_leading_shape():
    sae = hand_set_sae()
    x = torch.rand(2, 5, 7, 3)
    top = sae.encode(x)
    assert top.top_acts.shape == (2, 5, 7, 2) and sae.decode(*top).shape == (2, 5, 7, 3)
    assert sae.encode_dense(x).shape == (2, 5, 7, 4)


def test_fvu_is_zero_for_perfect_reconstruction_and_auxk_needs_dead_latents():
    sae = hand_set_sae()
    x = torch.tensor([[4.0, 1.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, 1.5]])  # one active coordinate each
    out = sae(x)
    assert out.fvu.item() == pytest.approx(0.0, abs=1e-7)
    assert out.auxk_loss.item() == 0.0
    noisy = x + torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    live = sae(noisy)
    assert live.fvu.item() > 0
    dead = torch.tensor([False, False, False, True])
    with_dead = sae(noisy, dead_mask=dead)
    assert with_dead.auxk_loss.item() >= 0 and torch.isfinite(with_dead.auxk_loss)
    everything_dead = sae(noisy, dead_mask=torch.ones(4, dtype=torch.bool))
    assert everything_dead.auxk_loss.item() > 0


def test_auxk_gradient_reaches_only_dead_latents():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=6, num_latents=12, k=2))
    dead = torch.zeros(12, dtype=torch.bool)
    dead[[3, 7]] = True
    sae(torch.randn(32, 6), dead_mask=dead).auxk_loss.backward()
    rows_with_grad = sae.W_dec.grad.abs().sum(1) > 0
    assert rows_with_grad[dead].any() and not rows_with_grad[~dead].any()


def test_unit_norm_decoder_and_parallel_gradient_removal():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, k=3))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    sae(torch.randn(16, 8)).fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert parallel.abs().max() < 1e-6
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.set_decoder_norm_to_unit_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))


def test_seeded_init_is_deterministic():
    torch.manual_seed(1)
    a = TopKSAE(SAEConfig(d_in=4, k=1))
    torch.manual_seed(1)
    b = TopKSAE(SAEConfig(d_in=4, k=1))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"d_in": 0}, "d_in"),
        ({"d_in": 4, "k": 17}, "k"),
        ({"d_in": 4, "k": 0}, "k"),
        ({"d_in": 4, "reads": "input"}, "reads"),
        ({"d_in": 4, "branch": "both"}, "branch"),
        ({"d_in": 4, "window": "noon"}, "window"),
        ({"d_in": 4.5}, "d_in"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        SAEConfig(**kwargs)
    assert info.value.field == field


def test_num_latents_defaults_to_expansion():
    assert SAEConfig(d_in=10, expansion_factor=3).num_latents == 30


def test_width_mismatch_names_block_and_widths():
    sae = TopKSAE(SAEConfig(d_in=1280, num_latents=16, k=2))
    sae.check_width(1280, "mid_block.attentions.0")
    with pytest.raises(CheckpointError, match=r"1280.*mid_block.attentions.0.*64"):
        sae.check_width(64, "mid_block.attentions.0")
