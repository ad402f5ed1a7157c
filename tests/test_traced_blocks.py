"""Traced blocks (`concepts.traced_blocks`): the UNet's resnets and transformer blocks run as traced
graphs inside `traced_blocks`, with the very same numbers as the eager blocks; the hooks on the blocks
still read and edit them; a weight edit inside a block, gradients, or the switch turned off make the
blocks run eagerly; outside the `with` nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts.edit import AblationHooks
from concepts.edit.checks import random_plan
from concepts.generation import SHARED_PIPELINES
from concepts.hooks import BlockEdit, BlockHooks
from concepts.registry import load_registry
from concepts.sampling import GenerationRequest, generate
from concepts.steps import StepWindow
from concepts.traced_blocks import installed, traced_blocks

MID = "mid_block.attentions.0"


@pytest.fixture(scope="module")
def toy():
    world = load_registry().get("toy-shapes")
    return world, SHARED_PIPELINES.get(world, "cpu")


def unet_inputs(pipe, rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    size = unet.config.sample_size
    latents = torch.randn(rows, unet.config.in_channels, size, size, generator=g)
    context = torch.randn(rows, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim, generator=g)
    return latents, torch.full((rows,), 500), context


def traced_calls(pipe) -> int:
    return sum(f.traced_calls for f in installed(pipe.unet))


@torch.no_grad()
def test_traced_blocks_give_the_eager_unets_numbers_exactly_at_every_batch_size(toy):
    _, pipe = toy
    for rows in (1, 2, 6, 16):
        latents, t, context = unet_inputs(pipe, rows, seed=rows)
        eager = pipe.unet(latents, t, encoder_hidden_states=context).sample
        before = traced_calls(pipe)
        with traced_blocks(pipe.unet):
            fast = pipe.unet(latents, t, encoder_hidden_states=context).sample
        blocks = len(installed(pipe.unet))
        assert blocks == 15, f"the toy UNet has 8 resnets and 7 transformer blocks, {blocks} were given a traced forward"
        assert traced_calls(pipe) - before == blocks, f"{rows} rows: not every block ran its traced graph"
        assert torch.equal(fast, eager), f"{rows} rows: the traced blocks changed the UNet's output"
        after = traced_calls(pipe)
        pipe.unet(latents, t, encoder_hidden_states=context)
        assert traced_calls(pipe) == after, "a call outside traced_blocks ran a traced graph"
    for forward in installed(pipe.unet):
        graphs = {id(g) for g in forward.graphs.values() if g is not None}
        assert len(graphs) == 1, f"{forward.kind}: {len(graphs)} graphs for 4 batch sizes (one traced graph serves them all)"


def test_a_generation_with_steering_and_capture_hooks_is_the_same_traced_or_not(toy, monkeypatch):
    """The hooks sit on the transformer blocks themselves, so a traced block's output is still read and
    edited: the steered image and every capture equal the eager run's."""
    world, pipe = toy
    d = world.defaults
    request = GenerationRequest("a red circle", seed=5, steps=6, guidance=d.guidance, height=d.height, width=d.width)
    edit = BlockEdit(MID, lambda step, read: read + 3.0, StepWindow(0, 5))
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("CONCEPT_LAB_TRACED_BLOCKS", mode)
        before = traced_calls(pipe)
        with BlockHooks(pipe.unet, capture=[MID], edits=[edit]) as hooks:
            image = generate(pipe, request, [hooks]).pixels
        runs[mode] = (image, hooks.captures[MID], traced_calls(pipe) - before)
    assert runs["0"][2] == 0 and runs["1"][2] > 0
    assert torch.equal(runs["0"][0], runs["1"][0]), "the steered image changed with traced blocks"
    plain = generate(pipe, request).pixels
    assert (runs["1"][0] - plain).abs().max() > 0.05, "the steering edit did not act on the traced block"
    for eager, traced in zip(runs["0"][1], runs["1"][1], strict=True):
        assert torch.equal(eager.cond, traced.cond) and torch.equal(eager.uncond, traced.uncond)


def test_a_weight_edit_inside_the_blocks_makes_them_run_eagerly_and_still_applies(toy):
    """An erase's `AblationHooks` sit on layers inside the transformer blocks, which a traced graph
    would skip: while they are on, the blocks that hold them run eagerly, and the erase still changes
    the image exactly as it does without traced blocks."""
    world, pipe = toy
    d = world.defaults
    request = GenerationRequest("a red circle", seed=6, steps=6, guidance=d.guidance, height=d.height, width=d.width)
    plain = generate(pipe, request).pixels
    plan = random_plan(pipe.unet, 20_000, seed=1)
    with AblationHooks(pipe.unet, plan):
        with torch.no_grad(), traced_blocks(pipe.unet):
            latents, t, context = unet_inputs(pipe, 2)
            before = traced_calls(pipe)
            pipe.unet(latents, t, encoder_hidden_states=context)
            ran_traced = traced_calls(pipe) - before
        erased = generate(pipe, request).pixels
    assert ran_traced == 8, f"only the 8 resnets (no hooks inside) should run traced, {ran_traced} blocks did"
    assert (erased - plain).abs().max() > 1 / 255, "the weight edit did not apply"
    import os

    os.environ["CONCEPT_LAB_TRACED_BLOCKS"] = "0"
    try:
        with AblationHooks(pipe.unet, plan):
            eager = generate(pipe, request).pixels
    finally:
        del os.environ["CONCEPT_LAB_TRACED_BLOCKS"]
    assert torch.equal(erased, eager)


def test_gradients_and_the_switch_keep_the_blocks_eager(toy, monkeypatch):
    """CAD's attribution takes gradients through the UNet: no traced graph then; nor with
    $CONCEPT_LAB_TRACED_BLOCKS=0."""
    _, pipe = toy
    latents, t, context = unet_inputs(pipe, 2)
    before = traced_calls(pipe)
    with traced_blocks(pipe.unet):
        out = pipe.unet(latents.requires_grad_(), t, encoder_hidden_states=context).sample
    out.sum().backward()
    assert latents.grad is not None and traced_calls(pipe) == before
    monkeypatch.setenv("CONCEPT_LAB_TRACED_BLOCKS", "0")
    with torch.no_grad(), traced_blocks(pipe.unet):
        pipe.unet(latents.detach(), t, encoder_hidden_states=context)
    assert traced_calls(pipe) == before


def test_a_block_the_tracer_cannot_follow_runs_eagerly(toy, monkeypatch):
    """A shape whose trace fails (or whose graph does not match the eager block) is marked and runs
    eagerly from then on: the output is still the eager one."""
    _, pipe = toy
    latents, t, context = unet_inputs(pipe, 3, seed=9)  # a batch size no other test traces
    with torch.no_grad():
        eager = pipe.unet(latents, t, encoder_hidden_states=context).sample

        def cannot(*args, **kwargs):
            raise RuntimeError("the tracer cannot follow this block")

        monkeypatch.setattr(torch.jit, "trace", cannot)
        for forward in installed(pipe.unet):  # no graph of another shape to reuse either
            monkeypatch.setattr(forward, "graphs", type(forward.graphs)())
        before = traced_calls(pipe)
        with traced_blocks(pipe.unet):
            fast = pipe.unet(latents, t, encoder_hidden_states=context).sample
    assert traced_calls(pipe) == before
    assert torch.equal(fast, eager)
    assert all(None in f.graphs.values() for f in installed(pipe.unet)), "the failed shape was not marked"


def test_images_through_the_batcher_are_the_same_traced_or_not(toy, monkeypatch):
    from concepts.batching import GenerationBatcher

    world, pipe = toy
    d = world.defaults
    request = GenerationRequest("a small green striped star", seed=8, steps=6, guidance=d.guidance, height=d.height, width=d.width)
    images = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("CONCEPT_LAB_TRACED_BLOCKS", mode)
        images[mode] = np.asarray(GenerationBatcher().generate(pipe, request).images[0])
    assert np.array_equal(images["0"], images["1"])


def test_another_users_weight_edit_does_not_stop_this_users_blocks_from_running_traced(toy):
    """An erase in flight in another thread has its hooks on the shared model, but they pass this
    thread's calls through untouched: here every block still runs traced, with the plain numbers."""
    import threading

    _, pipe = toy
    latents, t, context = unet_inputs(pipe, 2, seed=4)
    with torch.no_grad():
        plain = pipe.unet(latents, t, encoder_hidden_states=context).sample
    entered, done = threading.Event(), threading.Event()

    def other_user() -> None:
        with AblationHooks(pipe.unet, random_plan(pipe.unet, 20_000, seed=1)):
            entered.set()
            done.wait(30)

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        entered.wait(30)
        before = traced_calls(pipe)
        with torch.no_grad(), traced_blocks(pipe.unet):
            fast = pipe.unet(latents, t, encoder_hidden_states=context).sample
        ran = traced_calls(pipe) - before
    finally:
        done.set()
        thread.join()
    assert ran == 15, f"only {ran} of 15 blocks ran traced while another user's erase was in flight"
    assert torch.equal(fast, plain)


@torch.no_grad()
def test_the_graphs_read_the_blocks_weights_at_every_call(toy):
    """The graphs keep the block's parameters as attributes, not copies: a weight changed in place
    (the shared model never is, but a stale graph would be silent) changes the traced output exactly
    as the eager one."""
    _, pipe = toy
    latents, t, context = unet_inputs(pipe, 2, seed=7)
    weight = pipe.unet.mid_block.attentions[0].proj_out.weight
    saved = weight.clone()
    with traced_blocks(pipe.unet):
        pipe.unet(latents, t, encoder_hidden_states=context)  # traced (or reused) for this shape
    try:
        weight.mul_(1.5)
        eager = pipe.unet(latents, t, encoder_hidden_states=context).sample
        with traced_blocks(pipe.unet):
            fast = pipe.unet(latents, t, encoder_hidden_states=context).sample
    finally:
        weight.copy_(saved)
    assert torch.equal(fast, eager)
    with traced_blocks(pipe.unet):
        assert not torch.equal(pipe.unet(latents, t, encoder_hidden_states=context).sample, fast)


def test_in_the_batcher_an_erase_rides_apart_and_the_others_run_traced(toy):
    """An erase's weight edit sits inside the blocks: the batcher gives it a group of its own, so the
    plain requests in flight beside it still run every block traced, and each image is its solo one."""
    import threading

    from concepts.batching import GenerationBatcher

    world, pipe = toy
    d = world.defaults
    requests = [GenerationRequest(p, seed=20 + i, steps=6, guidance=d.guidance, height=d.height, width=d.width)
                for i, p in enumerate(["a red circle", "a blue square", "a green star"])]
    plan = random_plan(pipe.unet, 20_000, seed=1)
    factories = [lambda: [AblationHooks(pipe.unet, plan)], None, None]
    solo = [GenerationBatcher().generate(pipe, r, hooks=f) for r, f in zip(requests, factories)]
    batcher, results = GenerationBatcher(wait_s=0.3), [None] * 3
    start = threading.Barrier(3)

    def user(i: int) -> None:
        start.wait()
        results[i] = batcher.generate(pipe, requests[i], hooks=factories[i])

    before = traced_calls(pipe)
    threads = [threading.Thread(target=user, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(batcher.batches) == [1] * 6 + [2] * 6, f"not one erase group and one group of two: {batcher.batches}"
    # the plain group's 6 steps ran all 15 blocks traced; the erase group's only its 8 resnets
    assert traced_calls(pipe) - before == 6 * 15 + 6 * 8
    for alone, shared in zip(solo, results):
        assert (shared.pixels - alone.pixels).abs().max() <= 1 / 255 + 1e-6


@torch.no_grad()
def test_a_copied_model_gets_blocks_of_its_own(toy):
    """A deep copy of the UNet (a test's zeroed copy, CAD's parity check) has its own traced forwards,
    bound to its own blocks: a weight changed in the copy changes only the copy's output."""
    import copy

    _, pipe = toy
    latents, t, context = unet_inputs(pipe, 2, seed=12)
    with traced_blocks(pipe.unet):
        original = pipe.unet(latents, t, encoder_hidden_states=context).sample
    twin = copy.deepcopy(pipe.unet)
    assert all(f.block is not g.block for f, g in zip(installed(pipe.unet), installed(twin)))
    twin.mid_block.attentions[0].proj_out.weight.mul_(2.0)
    with traced_blocks(twin):
        changed = twin(latents, t, encoder_hidden_states=context).sample
    assert sum(f.traced_calls for f in installed(twin)) == 15
    assert torch.equal(changed, twin(latents, t, encoder_hidden_states=context).sample)
    with traced_blocks(pipe.unet):
        assert torch.equal(pipe.unet(latents, t, encoder_hidden_states=context).sample, original)
    assert not torch.equal(changed, original)
