"""SD1.4's architecture built from config: the paper's hook points exist with SD1.4's widths, and
a steered generation gives the same image with the UNet compiled as eager (issue 7's compiled mode)."""

from __future__ import annotations

import torch

from concepts.arch import SD14_HOOK_WIDTHS, ArchConfig, sd14_pipeline, sd14_unet
from concepts.hooks import BlockHooks, block_width, resolve_blocks, transformer_blocks
from concepts.sae import SAEConfig, TopKSAE
from concepts.sampling import GenerationRequest, generate
from concepts.steer.steering import SteeringPlan
from concepts.steps import StepWindow


def test_full_width_unet_has_sd14s_size_and_hook_points():
    with torch.device("meta"):  # SD1.4's shapes without allocating 3.4 GB
        unet = sd14_unet(ArchConfig(divisor=1))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # CompVis/stable-diffusion-v1-4's UNet
    blocks = transformer_blocks(unet)
    assert len(blocks) == 16  # 6 down, 1 mid, 9 up
    assert {name: block_width(blocks[name]) for name in SD14_HOOK_WIDTHS} == SD14_HOOK_WIDTHS
    assert block_width(blocks["down_blocks.0.attentions.0"]) == 320 and block_width(blocks["up_blocks.3.attentions.2"]) == 320


def test_compiled_steering_gives_the_eager_image():
    pipe = sd14_pipeline(ArchConfig(divisor=16))
    pipe.set_progress_bar_config(disable=True)
    request = GenerationRequest("a red circle", seed=0, steps=3, guidance=7.5, height=64, width=64)
    mid = "mid_block.attentions.0"
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=block_width(resolve_blocks(pipe.unet, [mid])[mid]), expansion_factor=4, k=8)).eval()
    plan = SteeringPlan(mid, (0, 1, 2, 3), StepWindow.parse("all", 3), 50.0)
    plain = generate(pipe, request).pixels
    with BlockHooks(pipe.unet, edits=[plan.edit(sae)]) as hooks:
        eager = generate(pipe, request, hooks).pixels
    unet = pipe.unet
    pipe.unet = torch.compile(unet, backend="aot_eager")  # dynamo traces the hooks as inductor would, without minutes of C++ builds
    try:
        with BlockHooks(unet, edits=[plan.edit(sae)]) as hooks:
            compiled = generate(pipe, request, hooks).pixels
        compiled_plain = generate(pipe, request).pixels  # the hooks are gone: back to the plain image
    finally:
        pipe.unet = unet
    assert (eager - plain).abs().mean() > 1e-3  # the edit does something
    assert torch.allclose(compiled, eager, atol=1e-4)
    assert torch.allclose(compiled_plain, plain, atol=1e-4)
