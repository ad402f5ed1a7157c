"""Make a tokenizer safe to share between concurrent requests.

A fast (Rust-backed) tokenizer keeps its padding and truncation settings on its one backend and
rewrites them at the start of every call. Two users encoding at once through the same pipeline can
then each encode with the other's settings: a prompt padded to the full context comes back
unpadded, the text encoder reads a different sequence and the image changes, silently. Pipelines
are shared by every request (`pipeline.PipelineCache`), so their tokenizers encode one call at a time.
"""

from __future__ import annotations

import threading
from typing import TypeVar

# One lock for every shared tokenizer: an encode takes microseconds, so a single lock costs nothing
# and, unlike a lock per instance, survives `copy.deepcopy`.
_ENCODING_LOCK = threading.RLock()
_SERIALISED_CLASSES: dict[type, type] = {}
T = TypeVar("T")


class _SerialisedEncoding:
    """Mixin: `_encode_plus`, which `__call__`, `encode` and `tokenize` all go through, holds the lock
    from setting the backend's padding and truncation to reading the encodings."""

    def _encode_plus(self, *args, **kwargs):
        with _ENCODING_LOCK:
            return super()._encode_plus(*args, **kwargs)  # type: ignore[misc]


def shared_safely(tokenizer: T) -> T:
    """The same tokenizer object, made safe for concurrent users (its class gains the lock above).

    Slow (pure Python) tokenizers hold no per-call state and are returned unchanged. The class keeps
    its name, so saving the tokenizer writes the same `tokenizer_class`.
    """
    cls = type(tokenizer)
    if isinstance(tokenizer, _SerialisedEncoding) or not hasattr(cls, "set_truncation_and_padding"):
        return tokenizer
    if cls not in _SERIALISED_CLASSES:
        _SERIALISED_CLASSES[cls] = type(cls.__name__, (_SerialisedEncoding, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    tokenizer.__class__ = _SERIALISED_CLASSES[cls]
    return tokenizer
