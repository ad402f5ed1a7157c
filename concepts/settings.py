"""Numbers the app reads from its environment ($CONCEPT_LAB_…): a value that does not parse or is out
of range is refused with one log line, never a traceback, and the default is used."""

from __future__ import annotations

import logging
import os
from typing import Callable, TypeVar

N = TypeVar("N", int, float)


def number_setting(name: str, default: N, parse: Callable[[str], N], valid: Callable[[N], bool], expected: str,
                   log: logging.Logger) -> N:
    """$name parsed with `parse` when set and `valid`, else `default`; `expected` says what a good
    value is in the log line ("a whole number from 1 to 64")."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not valid(value):  # `valid` must also refuse NaN
        log.warning("%s=%r is not %s; using %s", name, raw, expected, default)
        return default
    return value
