"""What every tab shares: the registry and device, the GPU decorator, number parsing from widgets,
the user-error wrapper, Gradio's progress bar, and the sampling inputs each tab repeats.

Per-user data lives in each tab's `gr.State`, never here: these globals are read-only after start.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from contextlib import nullcontext
from typing import Callable

import gradio as gr

from concepts.batching import batching_enabled
from concepts.errors import ConceptLabError, InvalidInputError, RequestCancelled, one_line
from concepts.generation import SHARED_PIPELINES
from concepts.progress import cancellable
from concepts.registry import load_registry
from concepts.saes import SAES
from concepts.steps import StepWindow, sae_stage
from concepts.torch_threads import one_thread_rule, serving, use_threads
from ui import cancellation

try:  # ZeroGPU Spaces: GPU work must run inside functions decorated with spaces.GPU
    import spaces

    gpu = spaces.GPU
except ImportError:  # everywhere else the decorator is a no-op

    def gpu(fn):
        return fn


log = logging.getLogger("concept_lab.ui")
REGISTRY = load_registry()
DEVICE = os.environ.get("CONCEPT_LAB_DEVICE", "auto")
WINDOWS = ["early", "middle", "final", "all"]
HEAVY = {"concurrency_limit": int(os.environ.get("CONCEPT_LAB_HEAVY_PLACES", "2")), "concurrency_id": "model-heavy"}
"""The long requests (explore, steer, evolution, erase, lessons, opened links, icons and top images)
share two places on the model, so that a class's generations (batched, `concepts.batching`, in their
own group) stay quick beside them: with eight places a class of 30 ended 20 % sooner and the long
requests' median halved, but generate p95 rose from 3.4 s to 7.5 s (docs/speed.md, "How many long
requests at once"). In a five-minute class that never runs out of work, batching (as it was before it
scheduled by step) answered 501 to 543 requests with 2, 4 or 8 places, the unbatched server fewer the more places it had (about 500, 389,
351): more places do not raise what the server can do. `CONCEPT_LAB_HEAVY_PLACES` sets another count."""
LESSON_PLACES = {"concurrency_limit": HEAVY["concurrency_limit"], "concurrency_id": "lesson"}
"""Lessons queue apart from the long requests: the teacher's link gives a whole class the same lesson
and seed, whose reading is kept after its first run (`concepts.lessons.catalog`), so all but the first
students get it at once rather than after the others' steerings and erases; lessons not kept yet
compute at most this many at once (their UNet work still shares the batcher's calls)."""
STATE_TTL_S = 1800
"""Per-session results (an exploration's maps, an evolution, a lesson's reading) are dropped 30 minutes
after their last update, and Gradio drops them an hour after the page closes."""
FIT = "fit-content"
"""A gallery's height: as tall as its images. Gradio's "auto" keeps a gallery between 450 px and 55 %
of the window and scrolls the rest, which hid the second row's "after" images and their captions."""


def as_number(value: object, field: str) -> float:
    """A float from whatever a widget or an API client sends (None, text, a list ...), or a message."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise InvalidInputError(field, "is empty")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(field, f"must be a number, got {repr(value)[:40]}") from None


def as_int(value: object, field: str) -> int:
    """A whole number from a UI widget (which may hand over a float, None or NaN)."""
    number = as_number(value, field)
    if not math.isfinite(number) or number != int(number):
        raise InvalidInputError(field, f"must be a whole number, got {repr(value)[:40]}")
    return int(number)


def as_float(value: object, field: str) -> float:
    number = as_number(value, field)
    if not math.isfinite(number):
        raise InvalidInputError(field, f"must be a finite number, got {repr(value)[:40]}")
    return number


def user_error(exc: ConceptLabError) -> gr.Error:
    """The message a user sees for their mistake, logged as one line: Gradio would print the whole
    traceback of every gr.Error, and a server log full of user typos hides the real faults."""
    message = one_line(exc)
    log.info("user error: %s", message)
    return gr.Error(message, print_exception=False)


def serve_on_one_thread() -> None:
    """With batching on, the calling thread runs its torch ops on one thread, so that the batcher's
    worker is the only thread with every core (`concepts.torch_threads` says why)."""
    if batching_enabled() and one_thread_rule():
        use_threads(1)


def user_errors(fn: Callable) -> Callable:
    """Turn the core's errors into messages the user sees (gr.Error), never a traceback; run the
    handler as a request that stops once its page is gone (`ui.cancellation`); and, in a served
    app's request thread, on one torch thread (`concepts.torch_threads` says why)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        served = threading.current_thread() is not threading.main_thread()
        if served:
            serve_on_one_thread()  # a served request's thread: the UNet's work runs on the batcher's cores
        try:
            with cancellable(cancellation.still_wanted()), (serving() if served else nullcontext()):
                return fn(*args, **kwargs)
        except RequestCancelled:
            log.info("request stopped: its page closed or it was cancelled")
            raise gr.Error("stopped: the request was cancelled", print_exception=False) from None
        except ConceptLabError as exc:
            raise user_error(exc) from None

    return wrapper


@user_errors
def model_defaults(model: str, prompt: str | None = None):
    """When the model changes: its own default steps and guidance, and its first example as the
    prompt unless the user typed their own (a toy caption means nothing to SD1.4, and back)."""
    world = REGISTRY.get(model)
    examples = {e for name in REGISTRY.names for e in REGISTRY.get(name).examples}
    untouched = not (prompt or "").strip() or prompt in examples
    return (gr.update(value=first_example(world)) if untouched else gr.update(),
            gr.update(value=world.defaults.steps), gr.update(value=world.defaults.guidance))


def progress_callback(progress: gr.Progress | None) -> Callable[[float, str], None] | None:
    """The core's progress callback, shown as Gradio's progress bar."""
    if progress is None:
        return None
    return lambda fraction, what: progress(fraction, desc=what)


@user_errors
def model_blocks(model: str):
    """When the model changes: its SAE blocks (mid block first, as in the paper)."""
    world = REGISTRY.get(model)
    return gr.update(choices=world.blocks, value=default_block(world))


def first_example(world) -> str:
    """The prompt a tab opens with: the world's first example."""
    return world.examples[0] if world.examples else ""


def default_block(world) -> str | None:
    """The block a tab opens on: the mid block (the paper's), else the world's first."""
    blocks = world.blocks
    return next((b for b in blocks if b.startswith("mid_block")), blocks[0] if blocks else None)


def sampling_inputs(world, example: str, prefix: str = ""):
    """Prompt, seed, steps and guidance widgets (each tab has its own; ids start with `prefix`)."""
    prompt = gr.Textbox(label="Prompt", value=example, elem_id=f"{prefix}prompt")
    with gr.Row():
        seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id=f"{prefix}seed", info="the same seed gives the same image")
        steps = gr.Slider(1, 100, value=world.defaults.steps, step=1, label="Denoising steps", elem_id=f"{prefix}steps",
                          info="more steps: slower, finer")
        guidance = gr.Slider(0, 20, value=world.defaults.guidance, step=0.5, label="Guidance", elem_id=f"{prefix}guidance",
                             info="how strongly the prompt is followed (0: ignored)")
    return prompt, seed, steps, guidance


def sae_dictionary(model: str, block: str, window: str, steps: int):
    """The concept dictionary of the SAE that serves (block, window) at `steps` steps."""
    world = REGISTRY.get(model)
    stage = sae_stage(StepWindow.parse(window, steps), steps)
    pipe = SHARED_PIPELINES.get(world, DEVICE)
    return SAES.get(world, block, stage, "cond", pipe.unet), stage
