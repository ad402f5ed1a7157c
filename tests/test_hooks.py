"""Block hooks: what they read, when they edit, and that they leave no trace."""

from __future__ import annotations

import threading

import pytest
import torch

from concepts.errors import ConceptLabError, InvalidInputError, UnknownNameError
from concepts.hooks import BlockEdit, BlockHooks, block_width, transformer_blocks
from concepts.sampling import GenerationRequest, generate, sample
from concepts.steps import StepWindow

MID = "mid_block.attentions.0"
UP = "up_blocks.1.attentions.0"
DOWN = "down_blocks.0.attentions.0"


def request(**overrides) -> GenerationRequest:
    values = dict(prompt="a red circle", seed=7, steps=4, guidance=7.5, height=64, width=64)
    values.update(overrides)
    return GenerationRequest(**values)


def add_constant(value: float):
    return lambda step, read: read + value


def test_sd_module_names_exist_with_widths(tiny_pipe):
    blocks = transformer_blocks(tiny_pipe.unet)
    assert {MID, UP, DOWN} <= set(blocks)
    assert not any(name.startswith("up_blocks.0.") for name in blocks), "SD1.x has no attentions in up_blocks.0"
    assert block_width(blocks[MID]) == 64 and block_width(blocks[DOWN]) == 32


def test_capture_keeps_cfg_halves_apart_per_step(tiny_pipe):
    with BlockHooks(tiny_pipe.unet, capture=[MID, UP]) as hooks:
        generate(tiny_pipe, request(prompt=["a red circle", "a blue square"]), hooks)
    mid = hooks.captures[MID]
    assert [c.step.index for c in mid] == [0, 1, 2, 3]
    assert mid[0].step.t == 1.0 and mid[-1].step.t == 0.0
    # latent 64/2 = 32 px → mid block at 16x16 with d = 64; batch of 2 prompts per branch
    assert mid[0].cond.shape == (2, 16, 16, 64) and mid[0].uncond.shape == (2, 16, 16, 64)
    assert hooks.captures[UP][0].cond.shape == (2, 32, 32, 32)
    # the two branches see different text, so their reads differ
    assert not torch.equal(mid[0].cond, mid[0].uncond)


def test_captured_delta_is_block_output_minus_input(tiny_pipe):
    block = transformer_blocks(tiny_pipe.unet)[MID]
    seen = []
    handle = block.register_forward_hook(lambda m, a, o: seen.append((a[0].detach().clone(), o[0].detach().clone())))
    try:
        with BlockHooks(tiny_pipe.unet, capture=[MID]) as delta_hooks:
            generate(tiny_pipe, request(steps=2), delta_hooks)
        with BlockHooks(tiny_pipe.unet, capture=[MID], reads="output") as output_hooks:
            generate(tiny_pipe, request(steps=2), output_hooks)
    finally:
        handle.remove()
    block_in, block_out = seen[0]
    expected = (block_out - block_in).permute(0, 2, 3, 1)
    first = delta_hooks.captures[MID][0]
    torch.testing.assert_close(torch.cat([first.uncond, first.cond]), expected)
    out_first = output_hooks.captures[MID][0]
    torch.testing.assert_close(torch.cat([out_first.uncond, out_first.cond]), block_out.permute(0, 2, 3, 1))


def test_capture_without_guidance_has_no_uncond(tiny_pipe):
    with BlockHooks(tiny_pipe.unet, capture=[MID]) as hooks:
        generate(tiny_pipe, request(guidance=1.0, steps=2), hooks)
    assert all(c.uncond is None and c.cond.shape[0] == 1 for c in hooks.captures[MID])


def test_capture_window_limits_steps(tiny_pipe):
    with BlockHooks(tiny_pipe.unet, capture=[MID], capture_window=StepWindow(1, 2)) as hooks:
        generate(tiny_pipe, request(), hooks)
    assert [c.step.index for c in hooks.captures[MID]] == [1, 2]


def test_hooks_leave_model_bit_identical_after_exit(tiny_pipe):
    before = generate(tiny_pipe, request()).pixels
    edit = BlockEdit(MID, add_constant(5.0), StepWindow(0, 3), branch="both")
    with BlockHooks(tiny_pipe.unet, capture=[MID, UP], edits=[edit]) as hooks:
        edited = generate(tiny_pipe, request(), hooks).pixels
    after = generate(tiny_pipe, request()).pixels
    assert not torch.equal(before, edited)
    assert torch.equal(before, after)
    assert all(not m._forward_hooks for m in tiny_pipe.unet.modules())


def test_hooks_removed_when_the_run_fails(tiny_pipe):
    def broken(step, read):
        raise RuntimeError("boom")

    before = generate(tiny_pipe, request(steps=2)).pixels
    with pytest.raises(RuntimeError, match="boom"):
        with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, broken, StepWindow(0, 1))]) as hooks:
            generate(tiny_pipe, request(steps=2), hooks)
    assert all(not m._forward_hooks for m in tiny_pipe.unet.modules())
    assert torch.equal(before, generate(tiny_pipe, request(steps=2)).pixels)


def test_edit_changes_output_only_from_its_window_on(tiny_pipe):
    def latents_per_step(hooks=()):
        return [s.latents.clone() for s in sample(tiny_pipe, request(), hooks)]

    plain = latents_per_step()
    with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(3.0), StepWindow(2, 3))]) as hooks:
        edited = latents_per_step(hooks)
    assert torch.equal(plain[0], edited[0]) and torch.equal(plain[1], edited[1])
    assert not torch.equal(plain[2], edited[2])


def test_edit_whose_window_covers_no_step_changes_nothing(tiny_pipe):
    plain = generate(tiny_pipe, request()).pixels
    with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(3.0), StepWindow(10, 20))]) as hooks:
        assert torch.equal(plain, generate(tiny_pipe, request(), hooks).pixels)


def test_edit_branches(tiny_pipe):
    plain = generate(tiny_pipe, request()).pixels
    results = {}
    for branch in ("cond", "uncond", "both"):
        with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(3.0), StepWindow(0, 3), branch)]) as hooks:
            results[branch] = generate(tiny_pipe, request(), hooks).pixels
    assert len({results[b].sum().item() for b in results}) == 3  # three different images
    assert all(not torch.equal(plain, r) for r in results.values())
    # without guidance there is no uncond branch: an uncond-only edit does nothing, a cond edit does
    plain_no_cfg = generate(tiny_pipe, request(guidance=1.0)).pixels
    with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(3.0), StepWindow(0, 3), "uncond")]) as hooks:
        assert torch.equal(plain_no_cfg, generate(tiny_pipe, request(guidance=1.0), hooks).pixels)
    with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(3.0), StepWindow(0, 3), "cond")]) as hooks:
        assert not torch.equal(plain_no_cfg, generate(tiny_pipe, request(guidance=1.0), hooks).pixels)


def test_edit_sees_only_its_branch_rows(tiny_pipe):
    shapes = []

    def record(step, read):
        shapes.append(tuple(read.shape))
        return read

    with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, record, StepWindow(0, 0), "cond")]) as hooks:
        generate(tiny_pipe, request(prompt=["a", "b", "c"]), hooks)
    assert shapes == [(3, 16, 16, 64)]


def test_bad_edits_are_refused_and_undone(tiny_pipe):
    plain = generate(tiny_pipe, request(steps=2)).pixels
    with pytest.raises(ConceptLabError, match="shape"):
        with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, lambda s, r: r[:, :1], StepWindow(0, 1))]) as hooks:
            generate(tiny_pipe, request(steps=2), hooks)
    with pytest.raises(InvalidInputError, match="non-finite"):
        with BlockHooks(tiny_pipe.unet, edits=[BlockEdit(MID, add_constant(float("nan")), StepWindow(0, 1))]) as hooks:
            generate(tiny_pipe, request(steps=2), hooks)
    assert torch.equal(plain, generate(tiny_pipe, request(steps=2)).pixels)


def test_unknown_block_lists_valid_names(tiny_pipe):
    with pytest.raises(UnknownNameError) as info:
        BlockHooks(tiny_pipe.unet, capture=["mid_block.attentions.7"])
    assert "mid_block.attentions.0" in str(info.value)


def test_concurrent_runs_do_not_see_each_others_hooks(tiny_pipe):
    reference = generate(tiny_pipe, request(seed=1)).pixels
    results: dict[str, torch.Tensor] = {}
    barrier = threading.Barrier(2)

    def edited_user():
        edit = BlockEdit(MID, add_constant(10.0), StepWindow(0, 3), "both")
        with BlockHooks(tiny_pipe.unet, edits=[edit]) as hooks:
            barrier.wait()
            results["edited"] = generate(tiny_pipe, request(seed=1), hooks).pixels

    def plain_user():
        barrier.wait()
        results["plain"] = generate(tiny_pipe, request(seed=1)).pixels

    threads = [threading.Thread(target=edited_user), threading.Thread(target=plain_user)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Two threads share the CPU's BLAS pool, so float sums may differ in the last bits (a CI run
    # saw it); a leaked +10 edit would move pixels by far more than this tolerance.
    leaked = (results["plain"] - reference).abs().max()
    applied = (results["edited"] - reference).abs().max()
    assert leaked < 1e-4, f"the plain run moved by {leaked:.2e}: it saw the other thread's edit"
    assert applied > 1e-2, f"the edited run moved by {applied:.2e} only"


def test_unet_call_without_step_is_refused(tiny_pipe):
    with BlockHooks(tiny_pipe.unet, capture=[MID]):
        with pytest.raises(ConceptLabError, match="set_step"):
            generate_without_step(tiny_pipe)


def generate_without_step(pipe):
    """The plain diffusers pipeline knows nothing of our hooks' step."""
    pipe("a red circle", num_inference_steps=1, height=64, width=64, output_type="pt")


def test_a_hook_half_registered_while_another_thread_runs_is_ignored(tiny_pipe):
    """Torch adds a hook to a module before it marks it as taking kwargs, so another thread's forward
    in that instant calls it as (module, args, output). That call is not the hook owner's: it must pass
    through, not fail (a class of users once hit it: "hook() missing 1 required positional argument")."""
    name = next(iter(transformer_blocks(tiny_pipe.unet)))
    module = transformer_blocks(tiny_pipe.unet)[name]
    with BlockHooks(tiny_pipe.unet, capture=[name]):
        (hook,) = [h for h in module._forward_hooks.values()]
        seen = []
        other = threading.Thread(target=lambda: seen.append(hook(module, (torch.zeros(1),), torch.zeros(1))))
        other.start()
        other.join()
        assert seen == [None]
        assert hook(module, (torch.zeros(1),), torch.zeros(1)) is None  # even in the owner's thread, the short call is left alone
