"""User-facing error types.

Every error a user can cause (bad file, bad manifest, missing weights) is raised as an
:class:`EdtalkError`. Its message names the file or field at fault and says how to fix it;
the CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations


class EdtalkError(Exception):
    """An error caused by user input, with a message fit to print as is."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class WeightsError(EdtalkError):
    """A weights file is missing, corrupt, of the wrong model, or has mismatched keys."""


class MediaError(EdtalkError):
    """An image, video or audio file is missing, unreadable, empty, or has no face."""


class ManifestError(EdtalkError):
    """A manifest is malformed or refers to something that does not exist."""
