"""Read and edit what the UNet's transformer blocks add to the residual stream.

`BlockHooks` is a context manager in the spirit of TransformerLens' `hooks()`: it registers forward
hooks on named `Transformer2DModel` blocks when entered and removes every one of them in `finally`,
so an exception inside the block never leaves a hook behind.

What is read (docs/paper.md): Δ = output − input of the whole block, one d-vector per position
(`reads="delta"`), or the block's output itself (`reads="output"`, as SAeUron's SAEs expect).
Under classifier-free guidance the UNet batch is `[uncond, cond]`; captures keep the halves apart and
edits touch only the branch they name.

Isolation: hooks live on a model that several users may share, so each hook acts only while its own
`BlockHooks` is active in the calling thread or task (a `ContextVar`). Another user's concurrent
sampling through the same UNet passes through untouched. When several users' requests share one
UNet batch (`concepts.batching`), each user's hooks are given their `rows` of it and act on those
rows alone, exactly as they would on a batch of their own.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, NamedTuple, Sequence

import torch
from torch import nn

from .errors import ConceptLabError, InvalidInputError, UnknownNameError
from .steps import READS, StepInfo, StepWindow

Reads = Literal["delta", "output"]
Branch = Literal["cond", "uncond", "both"]
EditFn = Callable[[StepInfo, torch.Tensor], torch.Tensor]
"""An edit: (step, read [b, H, W, d] of the chosen branch rows) → new read of the same shape."""

# Ids of the BlockHooks objects active in the current thread / asyncio task.
_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("concept_lab_active_hooks", default=frozenset())


_OWNERS: dict[int, int] = {}
"""Torch hook handle id → id of the `ScopedHooks` that registered it (while it is registered)."""


def hooks_acting_on(module: nn.Module) -> bool:
    """Whether a forward hook on `module` may act in the calling thread or task: one of an entered
    `ScopedHooks` that is active here, or any hook this module did not register (a pre-hook too).
    Another user's hooks on the shared model pass this thread's calls through untouched, so they do
    not count (`concepts.traced_blocks` runs a block as a traced graph only when none may act inside it)."""
    if module._forward_pre_hooks:
        return True
    if not module._forward_hooks:
        return False
    active = _ACTIVE.get()
    handles = tuple(module._forward_hooks)  # one step: another user's `with` may add or remove hooks meanwhile
    return any((owner := _OWNERS.get(handle)) is None or owner in active for handle in handles)


def any_active() -> bool:
    """Whether hooks or weight edits are active for the calling thread or task (its images are its own)."""
    return bool(_ACTIVE.get())


@contextmanager
def only_these_active(hooks: Iterable["ScopedHooks"]) -> Iterator[None]:
    """Inside: of the hooks entered in this thread, only `hooks` act. The batcher's worker has every
    request in flight entered at once, but one group's UNet call must run that group's hooks alone:
    another group's (another image size, or CFG off) would act on rows that are not theirs."""
    token = _ACTIVE.set(frozenset(id(h) for h in hooks) & _ACTIVE.get())
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def transformer_blocks(unet: nn.Module) -> dict[str, nn.Module]:
    """All hookable blocks of a UNet: the `Transformer2DModel`s, by diffusers module name."""
    return {name: m for name, m in unet.named_modules() if type(m).__name__ == "Transformer2DModel"}


def block_width(block: nn.Module) -> int:
    """Channel count d of a transformer block's input and output."""
    return int(block.in_channels)


def resolve_blocks(unet: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Look up block modules by name; an unknown name lists the valid ones (accepts a leading 'unet.')."""
    available = transformer_blocks(unet)
    found = {}
    for name in names:
        key = name.removeprefix("unet.")
        if key not in available:
            raise UnknownNameError("block", name, sorted(available))
        found[key] = available[key]
    return found


class BatchRows(NamedTuple):
    """A request's images inside a shared batch of `size` images: rows start..stop of each CFG half."""

    start: int
    stop: int
    size: int

    def index(self, batch: int) -> torch.Tensor:
        """The rows of a UNet batch of `batch` rows that are this request's: [start, stop) of the batch
        without CFG, of both halves ([uncond…; cond…]) with it."""
        own = torch.arange(self.start, self.stop)
        if batch == self.size:
            return own
        if batch == 2 * self.size:
            return torch.cat([own, own + self.size])
        raise ConceptLabError(f"a shared batch of {self.size} images ran the UNet on {batch} rows")


class Capture(NamedTuple):
    """One block's read at one step, channel-last: cond [b, H, W, d]; uncond likewise or None without CFG."""

    step: StepInfo
    cond: torch.Tensor
    uncond: torch.Tensor | None


@dataclass(frozen=True)
class BlockEdit:
    """Change one block's read inside a step window, on one CFG branch."""

    block: str
    """Diffusers module name of the block, e.g. "mid_block.attentions.0"."""
    fn: EditFn
    """Maps (step, read [b, H, W, d]) to the edited read; must keep shape and stay finite."""
    window: StepWindow
    """Steps in which the edit is applied; outside it the block runs untouched."""
    branch: Branch = "cond"
    """Which half of the CFG batch to edit: the paper steers "cond"; "both" also edits uncond."""

    def __post_init__(self) -> None:
        if self.branch not in ("cond", "uncond", "both"):
            raise InvalidInputError("branch", f"{self.branch!r} is not cond, uncond or both")


CaptureSink = Callable[[str, Capture], None]
"""Receives each capture as it happens, e.g. to encode it with an SAE and keep only the codes."""


class ScopedHooks:
    """Forward hooks that exist only inside a `with` and act only for the thread or task that entered it.

    Subclasses register their hooks in `_install(add)` and start each hook with `if not self._mine():
    return None`, so another user's run through the same shared model passes through untouched.
    Leaving the `with`, even by an exception, removes every hook.
    """

    inside_blocks = True
    """Whether these hooks sit on modules inside the transformer blocks and resnets (such blocks
    then run eagerly, `concepts.traced_blocks`); `BlockHooks` sit on the blocks themselves."""

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._entered = False
        self.rows: BatchRows | None = None
        """Set by the batcher when this request shares a UNet batch; None: the whole batch is ours."""

    def _own(self, batch: int) -> torch.Tensor | None:
        """Index of this request's rows in a UNet batch of `batch` rows; None when all are."""
        return None if self.rows is None else self.rows.index(batch)

    def _install(self, add: Callable[[torch.utils.hooks.RemovableHandle], None]) -> None:
        raise NotImplementedError

    def _mine(self) -> bool:
        return id(self) in _ACTIVE.get()

    def __enter__(self):
        if self._handles:
            raise ConceptLabError("these hooks are already active; use a new object for a nested run")

        def add(handle: torch.utils.hooks.RemovableHandle) -> None:
            self._handles.append(handle)
            _OWNERS[handle.id] = id(self)

        try:
            self._install(add)
        except BaseException:
            self._remove()
            raise
        _ACTIVE.set(_ACTIVE.get() | {id(self)})
        self._entered = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
            _OWNERS.pop(handle.id, None)
        self._handles.clear()
        if self._entered:  # only its own id: requests in one shared batch leave in any order (`concepts.batching`)
            _ACTIVE.set(_ACTIVE.get() - {id(self)})
            self._entered = False

    @property
    def active(self) -> bool:
        return bool(self._handles)


class BlockHooks(ScopedHooks):
    """Capture and/or edit the reads of named transformer blocks for the duration of a `with`.

    The sampler tells the hooks where it is with `set_step` before every UNet call; a UNet call made
    with no step set is refused by any hook that would have to decide on a window.
    """

    inside_blocks = False

    def __init__(
        self,
        unet: nn.Module,
        capture: Sequence[str] = (),
        edits: Sequence[BlockEdit] = (),
        reads: Reads = "delta",
        capture_window: StepWindow | None = None,
        sink: CaptureSink | None = None,
        capture_dtype: torch.dtype = torch.float32,
    ) -> None:
        if reads not in READS:
            raise InvalidInputError("reads", f"{reads!r} is not 'delta' or 'output'")
        super().__init__()
        self.unet = unet
        self.reads: Reads = reads
        self.capture_blocks = tuple(b.removeprefix("unet.") for b in capture)
        self.edits = tuple(edits)
        self.capture_window = capture_window
        self.sink = sink
        self.capture_dtype = capture_dtype
        names = list(dict.fromkeys([*self.capture_blocks, *(e.block.removeprefix("unet.") for e in self.edits)]))
        self._modules = resolve_blocks(unet, names)
        self.captures: dict[str, list[Capture]] = {b: [] for b in self.capture_blocks}
        self.step: StepInfo | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def _install(self, add) -> None:
        for name, module in self._modules.items():
            add(module.register_forward_hook(self._make_hook(name), with_kwargs=True))

    def _remove(self) -> None:
        super()._remove()
        self.step = None

    def set_step(self, step: StepInfo) -> None:
        self.step = step

    # -- the hook ------------------------------------------------------------------------------
    def _make_hook(self, name: str) -> Callable:
        edits = [e for e in self.edits if e.block.removeprefix("unet.") == name]
        capturing = name in self.capture_blocks

        def hook(module: nn.Module, args: tuple, *rest: object) -> object:
            # (kwargs, output) as registered; torch adds a hook to the module before it marks it as
            # taking kwargs, so another thread's forward at that instant calls it with (output) alone.
            if not self._mine() or len(rest) != 2:
                return None  # another user's run through the shared model
            kwargs, output = rest
            step = self.step
            if step is None:
                raise ConceptLabError(f"block {name!r} ran with no step set: call set_step before each UNet call")
            block_in = args[0] if args else kwargs["hidden_states"]
            block_out = output[0] if isinstance(output, tuple) else output.sample
            own = self._own(block_out.shape[0])
            mine_in, mine_out = (block_in, block_out) if own is None else (block_in[own], block_out[own])
            read = mine_out - mine_in if self.reads == "delta" else mine_out
            if capturing and (self.capture_window is None or self.capture_window.contains(step.index)):
                self._capture(name, step, read)
            active = [e for e in edits if e.window.contains(step.index)]
            if not active:
                return None  # capture hooks must return None or they replace the output
            change = self._edit_change(name, step, read, active)
            if own is not None:  # only this request's rows of the shared batch change
                change = torch.zeros_like(block_out).index_copy(0, own, change.to(block_out.dtype))
            new_out = block_out + change
            if isinstance(output, tuple):
                return (new_out, *output[1:])
            return type(output)(sample=new_out)

        return hook

    def _capture(self, name: str, step: StepInfo, read: torch.Tensor) -> None:
        channel_last = read.detach().permute(0, 2, 3, 1).to("cpu", self.capture_dtype)
        if step.cfg:
            uncond, cond = channel_last.chunk(2)
        else:
            uncond, cond = None, channel_last
        record = Capture(step, cond, uncond)
        if self.sink is not None:
            self.sink(name, record)
        else:
            self.captures[name].append(record)

    def _edit_change(self, name: str, step: StepInfo, read: torch.Tensor, edits: list[BlockEdit]) -> torch.Tensor:
        """Sum of the edits' changes to the read, channel-first like the block output."""
        current = read.permute(0, 2, 3, 1)  # [B, H, W, d]
        batch = current.shape[0]
        change = torch.zeros_like(current)
        for edit in edits:
            rows = _branch_rows(edit.branch, batch, step.cfg)
            if rows.stop <= rows.start:
                continue
            before = current[rows] + change[rows]
            after = edit.fn(step, before)
            if after.shape != before.shape:
                raise ConceptLabError(
                    f"edit on {name!r} returned shape {tuple(after.shape)}, expected {tuple(before.shape)}"
                )
            if not torch.isfinite(after).all():
                raise InvalidInputError("strength", f"the edit on {name!r} produced non-finite values at step {step.index}")
            change[rows] += after.to(change.dtype) - before
        return change.permute(0, 3, 1, 2)


def _branch_rows(branch: Branch, batch: int, cfg: bool) -> slice:
    """Rows of a UNet batch that belong to a CFG branch; without CFG every row is cond."""
    if not cfg:
        return slice(0, batch) if branch in ("cond", "both") else slice(0, 0)
    half = batch // 2
    return {"uncond": slice(0, half), "cond": slice(half, batch), "both": slice(0, batch)}[branch]

