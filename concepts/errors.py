"""Errors a user can act on.

Every failure caused by input (a bad argument, a missing checkpoint, an unreachable Hub) is raised as
a `ConceptLabError` whose message names the bad field or file and the fix. The CLI prints that
message as one line and the app shows it as a `gr.Error`, so no user ever sees a traceback.
"""

from __future__ import annotations


MAX_MESSAGE_CHARS = 400


def one_line(message: object) -> str:
    """A message as one readable line: whitespace collapsed, and a pasted 20,000-character value
    cut in the middle so the line stays short enough to read."""
    text = " ".join(str(message).split())
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    half = MAX_MESSAGE_CHARS // 2 - 10
    return f"{text[:half]} … ({len(text) - 2 * half} characters cut) … {text[-half:]}"


class ConceptLabError(Exception):
    """Base class: the message is meant for the user, as it is."""


class InvalidInputError(ConceptLabError, ValueError):
    """A user-supplied value is out of range or malformed; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class CheckpointError(ConceptLabError):
    """A checkpoint is missing, corrupt, or does not fit the model it is attached to."""


class HubUnavailableError(CheckpointError):
    """The Hugging Face Hub could not be reached and the file is not in the local cache."""


class UnknownNameError(ConceptLabError, KeyError):
    """A name (model, block, window, concept) is not known; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, list(valid)
        shown = ", ".join(self.valid) if self.valid else "(none)"
        super().__init__(f"unknown {kind} {name!r}; valid: {shown}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class RequestCancelled(ConceptLabError):
    """The person who asked is gone (their page closed, or they pressed stop): the work stops at the
    next denoising step instead of finishing for nobody."""
