"""The UNet's resnets and transformer blocks as traced graphs: one interpreter hand-off per block, not per op.

A toy UNet call runs 512 torch functions from Python, and each lets go of Python's interpreter lock
and must take it back. In a served app other threads run Python meanwhile (Gradio, figures, the
judge), so each taking-back waits for them: a toy generation of 4 images on one torch thread took
0.67 s alone and 2.29 s beside one thread spinning in Python. A block traced with `torch.jit.trace`
runs all its ops inside TorchScript's interpreter without the lock; with every block traced 32 calls
from Python remain, and the same generation took 0.67 s alone and 1.07 s beside the busy thread
(2.14×; 2.62× beside two), with identical images (`python benchmarks/bench_traced_blocks.py`).

Only the blocks are traced, not the whole UNet: the steering, capture and concept-map hooks sit on
the `Transformer2DModel`s themselves (`concepts.hooks`), and a module's forward hooks fire around
whatever its forward does, so they still see and change every block's output. Hooks *inside* a
block (an erase's `AblationHooks` on its feed-forward and K/V layers) would be skipped by a traced
graph, so a block runs eagerly when such a hook may act on the call (the caller's own, or any hook
that is not a `ScopedHooks`; another user's erase in flight does not count), as does any call with
gradients on (CAD's attribution), on a device other than the CPU, or with arguments the trace did not
see (an attention mask, LoRA scales).

The first time a block meets an input shape (batch size, image size, prompt length) its output is
checked once against the eager block on the same inputs: a graph traced for another shape is reused
when it gives the same numbers (on the toy one graph served 1 to 16 rows alike), else the block is
traced again; a shape where no graph is bit-identical runs eagerly. At most `SHAPES_KEPT` shapes are
remembered per block, least recently used out. A torch whose tracer fails on a block (TorchScript is
in maintenance; torch 2.13 traces these blocks) only loses the speed: the block runs eagerly. The graphs share the block's
parameters (tracing a module keeps them as attributes, read at every call), so they can never run
stale weights. Callers opt in per call with `traced_blocks(unet)` (the batcher's shared steps and
solo generation do); $CONCEPT_LAB_TRACED_BLOCKS=0 turns it off.
"""

from __future__ import annotations

import contextvars
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .hooks import hooks_acting_on

SHAPES_KEPT = 32
"""Input shapes remembered per block, each with its checked graph (several shapes may share one)."""
TRACED_TYPES = ("ResnetBlock2D", "Transformer2DModel")

_PLAIN_EXECUTION = True
"""Graphs run by TorchScript's plain interpreter, not its optimizing executor: the optimizer keeps a
profiled plan per input shape (25 MB more for 16 batch sizes of the toy), and the plain interpreter
runs the same ops, also without the interpreter lock."""
_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("concept_lab_traced_blocks", default=False)
_INSTALL_LOCK = threading.Lock()
_INSTALLED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
"""UNets whose blocks already have their forwards: `install` walks a UNet's modules only once."""


def traced_blocks_enabled() -> bool:
    return os.environ.get("CONCEPT_LAB_TRACED_BLOCKS", "1") not in ("0", "false", "off")


@contextmanager
def traced_blocks(unet: nn.Module) -> Iterator[None]:
    """Inside: this thread's calls of `unet` run its blocks as traced graphs where that is safe (see
    the module docstring); outside, and for everyone else, the blocks run as they always did."""
    if not (traced_blocks_enabled() and _on_cpu(unet)):
        yield
        return
    install(unet)
    token = _ON.set(True)
    optimizing = torch._C._get_graph_executor_optimize()
    torch._C._set_graph_executor_optimize(False)  # see `_PLAIN_EXECUTION` (per thread)
    try:
        yield
    finally:
        torch._C._set_graph_executor_optimize(optimizing)
        _ON.reset(token)


def _on_cpu(unet: nn.Module) -> bool:
    try:
        return next(unet.parameters()).device.type == "cpu"
    except StopIteration:
        return False


def install(unet: nn.Module) -> None:
    """Give each resnet and transformer block of `unet` a forward that can take its traced graph
    (once per UNet; the eager forward stays what runs unless `traced_blocks` is on)."""
    if unet in _INSTALLED:  # every UNet call comes here: no walk over its modules after the first
        return
    with _INSTALL_LOCK:
        for module in unet.modules():
            if type(module).__name__ in TRACED_TYPES and not isinstance(getattr(module, "forward", None), _BlockForward):
                module.forward = _BlockForward(module)
        _INSTALLED.add(unet)


def installed(unet: nn.Module) -> list["_BlockForward"]:
    """The traced forwards given to `unet`'s blocks (for tests and benchmarks)."""
    return [m.forward for m in unet.modules() if isinstance(getattr(m, "forward", None), _BlockForward)]


class _Piece(nn.Module):
    """What gets traced: the block's own forward (not its `__call__`, so its own hooks stay outside the
    graph) on plain tensors in, one tensor out."""

    def __init__(self, block: nn.Module, run: Callable) -> None:
        super().__init__()
        self.block = block
        self._run = run

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self._run(self.block, *tensors)


def _resnet(block: nn.Module, hidden: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    return type(block).forward(block, hidden, temb)


def _transformer(block: nn.Module, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    return type(block).forward(block, hidden, encoder_hidden_states=context, return_dict=False)[0]


class _BlockForward:
    """A block's forward: its traced graph for this input shape when `traced_blocks` is on and safe,
    else the eager forward."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block
        self.eager = type(block).forward.__get__(block)
        self.kind = type(block).__name__
        self._inner: list[nn.Module] | None = None
        self.graphs: OrderedDict[tuple, Callable | None] = OrderedDict()
        """Per input shape key: the checked graph, or None where the graph did not match."""
        self.lock = threading.Lock()
        self.traced_calls = 0

    def __deepcopy__(self, memo: dict) -> "_BlockForward":
        """A copied model (a test's zeroed copy) gets a forward of its own, bound to its own block,
        with no graphs yet (they would run the original's weights)."""
        import copy

        return _BlockForward(copy.deepcopy(self.block, memo))

    @property
    def inner(self) -> list[nn.Module]:
        """The modules inside the block (found at the first call: a copy's block is still being built
        when its forward is made)."""
        if self._inner is None:
            self._inner = [m for m in self.block.modules() if m is not self.block]
        return self._inner

    def __call__(self, *args, **kwargs):
        tensors = self._plain_inputs(args, kwargs) if _ON.get() else None
        if tensors is None or torch.is_grad_enabled() or self._hooked_inside():
            return self.eager(*args, **kwargs)
        graph = self._graph(tensors)
        if graph is None:
            return self.eager(*args, **kwargs)
        self.traced_calls += 1
        out = graph(*tensors)
        if self.kind == "ResnetBlock2D":
            return out
        if kwargs.get("return_dict", True):
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=out)
        return (out,)

    def _plain_inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...] | None:
        """The call's tensors when it is the plain call the graph was traced for, else None."""
        if self.kind == "ResnetBlock2D":
            if len(args) == 2 and not kwargs and all(isinstance(a, torch.Tensor) for a in args):
                return args
            return None
        hidden = args[0] if args else kwargs.get("hidden_states")
        context = kwargs.get("encoder_hidden_states")
        if len(args) > 1 or not isinstance(hidden, torch.Tensor) or not isinstance(context, torch.Tensor):
            return None
        if any(kwargs.get(k) for k in ("timestep", "added_cond_kwargs", "class_labels", "cross_attention_kwargs")):
            return None
        if kwargs.get("attention_mask") is not None or kwargs.get("encoder_attention_mask") is not None:
            return None
        return hidden, context

    def _hooked_inside(self) -> bool:
        """Whether a hook inside the block may act on this call (the graph would skip it); another
        user's hooks on the shared model do not (`concepts.hooks.hooks_acting_on`)."""
        return any(hooks_acting_on(m) for m in self.inner)

    def _graph(self, tensors: tuple[torch.Tensor, ...]) -> Callable | None:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        with self.lock:
            if key in self.graphs:
                self.graphs.move_to_end(key)
                return self.graphs[key]
            graph = self._trace_and_check(tensors)
            self.graphs[key] = graph
            while len(self.graphs) > SHAPES_KEPT:
                self.graphs.popitem(last=False)
            return graph

    def _trace_and_check(self, tensors: tuple[torch.Tensor, ...]) -> Callable | None:
        """A graph for this shape, checked against the eager block: one traced for another shape
        when it gives the same numbers here too (on the toy one graph served 1 to 16 rows), else a
        new trace; None when neither matches."""
        run = _resnet if self.kind == "ResnetBlock2D" else _transformer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                expected = run(self.block, *tensors)
                for graph in {id(g): g for g in self.graphs.values() if g is not None}.values():
                    if torch.equal(graph(*tensors), expected):
                        return graph
                graph = torch.jit.trace(_Piece(self.block, run), tensors, check_trace=False)
                got = graph(*tensors)
            except Exception:  # a block the tracer cannot follow runs eagerly
                return None
        return graph if torch.equal(got, expected) else None
