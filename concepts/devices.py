"""Where a pipeline runs and in which dtype, looked up in microseconds.

diffusers' `pipe._execution_device` and `pipe.device` walk every module of every component, and
`pipe.unet.dtype` every UNet parameter: 2.0, 0.9 and 0.6 ms on toy-shapes, all of it Python holding
the interpreter lock that a busy server's other threads wait for. The batcher's worker asked four
times for each request it started (its scheduler, text, noise), and starting a request took 10.1 to
10.5 ms; with the answers kept it takes 2.8 to 3.2 ms (`python benchmarks/bench_request_overhead.py`,
docs/speed.md, "A served burst, looked into"). The answers only change when the pipeline moves, so
they are kept per pipeline under the device and dtype of its UNet's first parameter, which a move
changes. The app never offloads a pipeline (accelerate's hooks would keep the parameters where they
are while the execution device changes), so that key is enough here.
"""

from __future__ import annotations

import threading
import weakref

import torch

_known: "weakref.WeakKeyDictionary[object, tuple[tuple, torch.device, torch.dtype]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _key(pipe) -> tuple:
    first = next(pipe.unet.parameters())
    return (first.device, first.dtype)


def _lookup(pipe) -> tuple[torch.device, torch.dtype]:
    key = _key(pipe)
    with _lock:
        known = _known.get(pipe)
    if known is not None and known[0] == key:
        return known[1], known[2]
    device, dtype = pipe._execution_device, pipe.unet.dtype
    with _lock:
        _known[pipe] = (key, device, dtype)
    return device, dtype


def execution_device(pipe) -> torch.device:
    """`pipe._execution_device`, without walking the pipeline's modules each time."""
    return _lookup(pipe)[0]


def unet_dtype(pipe) -> torch.dtype:
    """`pipe.unet.dtype`, without walking its parameters each time."""
    return _lookup(pipe)[1]
