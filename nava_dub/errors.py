"""The errors nava-dub raises on purpose. Each says what failed, with the value, and one fix.

Only the CLI renders them; library code raises and never prints.
"""

from __future__ import annotations


class DubError(Exception):
    """A failure the user can act on: `message` names what failed (with the value), `hint` one fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DubError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = 2


class MediaError(DubError):
    """An input or output file cannot be read, decoded or written."""


class TranscriptError(DubError):
    """A transcript file is malformed or does not fit the input."""


class WeightsError(DubError):
    """A weight file is missing, of the wrong size, corrupted or of another model."""


class ModelError(DubError):
    """A model cannot run with the inputs given (shapes, lengths, memory)."""
