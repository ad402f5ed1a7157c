"""The DDIM sampler: reproducible, the same images as diffusers, every step visible."""

from __future__ import annotations

import math

import pytest
import torch

from concepts.errors import InvalidInputError
from concepts.sampling import GenerationRequest, generate, sample


def request(**overrides) -> GenerationRequest:
    values = dict(prompt="a red circle", seed=3, steps=6, guidance=7.5, height=64, width=64)
    values.update(overrides)
    return GenerationRequest(**values)


def test_same_seed_same_image_bit_for_bit(tiny_pipe):
    first = generate(tiny_pipe, request()).pixels
    second = generate(tiny_pipe, request()).pixels
    assert torch.equal(first, second)
    assert not torch.equal(first, generate(tiny_pipe, request(seed=4)).pixels)


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_matches_plain_diffusers_pipeline(tiny_pipe, guidance):
    ours = generate(tiny_pipe, request(guidance=guidance)).pixels
    theirs = tiny_pipe(
        "a red circle",
        num_inference_steps=6,
        guidance_scale=guidance,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
        output_type="pt",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_steps_yield_t_latents_and_previews(tiny_pipe):
    states = list(sample(tiny_pipe, request(), previews=True))
    assert [s.index for s in states] == list(range(6))
    assert states[0].t == 1.0 and states[-1].t == 0.0
    assert all(a.timestep > b.timestep for a, b in zip(states, states[1:]))
    for s in states:
        assert s.preview.shape == (1, 3, 64, 64)
        assert 0.0 <= s.preview.min() and s.preview.max() <= 1.0
    # previews on request only
    some = list(sample(tiny_pipe, request(), previews=lambda i: i == 2))
    assert [s.preview is not None for s in some] == [False, False, True, False, False, False]
    # the last predicted x0 is (nearly) the final image
    final = generate(tiny_pipe, request()).pixels
    assert (states[-1].preview - final).abs().mean() < 0.02


def test_batches_of_prompts_and_images(tiny_pipe):
    result = generate(tiny_pipe, request(prompt=["a red circle", "a blue square"], images_per_prompt=2, steps=2))
    assert len(result.images) == 4 and result.images[0].size == (64, 64)
    assert result.nsfw is None  # the tiny model has no safety checker


@pytest.mark.parametrize(
    "field,value",
    [
        ("steps", 0),
        ("steps", 2.5),
        ("seed", -1),
        ("guidance", math.nan),
        ("guidance", math.inf),
        ("guidance", 1e9),
        ("height", 65),
        ("width", 0),
        ("images_per_prompt", 0),
        ("prompt", []),
    ],
)
def test_bad_requests_name_their_field(field, value):
    with pytest.raises(InvalidInputError) as info:
        request(**{field: value})
    assert info.value.field == field
