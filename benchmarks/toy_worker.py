"""Shared by the thread benchmarks: the toy pipeline and a batch of one prompt at the toy's defaults."""

from __future__ import annotations

PROMPT = "a red large solid circle in the center on a white background"


def toy_pipe_and_requests(images: tuple[int, ...]) -> tuple[object, dict, dict]:
    """(the shared toy pipeline on the CPU, {n: a request for n images of PROMPT}, the toy's defaults)."""
    from concepts.generation import SHARED_PIPELINES
    from concepts.quiet import quiet_libraries
    from concepts.registry import load_registry
    from concepts.sampling import GenerationRequest

    quiet_libraries()
    world = load_registry().get("toy-shapes")
    d = world.defaults
    requests = {n: GenerationRequest([PROMPT] * n, seed=0, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width) for n in images}
    return SHARED_PIPELINES.get(world, "cpu"), requests, d
