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


class UsageError(EdtalkError):
    """The command line asks for something that cannot be done as given (nothing was done)."""

    exit_code = 2


class ManifestError(EdtalkError):
    """A manifest is malformed or refers to something that does not exist."""

    exit_code = 2  # as a usage error: nothing was rendered (1 means that a job failed)


_OS_ERROR_HINTS = {
    "EISDIR": "a folder is in the way: remove or rename it, or choose another output path",
    "ENOTDIR": "a part of the path is a file, not a folder: fix the path",
    "EACCES": "no permission: make the folder writable or choose another path",
    "EPERM": "no permission: make the folder writable or choose another path",
    "EROFS": "the file system is read-only: choose another path",
    "ENOSPC": "the disk is full: free some space or choose another folder",
    "EDQUOT": "the disk quota is used up: free some space or choose another folder",
    "ENOENT": "the file or folder does not exist: check the path",
    "ENAMETOOLONG": "the path is too long: shorten it",
    "ELOOP": "too many symbolic links in the path: fix the path",
}


def deterministic_os_error(exc: BaseException) -> bool:
    """True for OS errors that fail the same way every time (a retry cannot help)."""
    import errno

    return isinstance(exc, OSError) and errno.errorcode.get(exc.errno or 0, "") in _OS_ERROR_HINTS


def os_error_text(exc: OSError) -> str:
    """``<strerror>: '<path>' (hint: <fix>)`` for an OSError, naming every path it carries."""
    import errno

    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(f"'{p}'" for p in paths)
    text = f"{exc.strerror or type(exc).__name__}" + (f": {where}" if where else "")
    if not paths and not exc.strerror:
        text = f"{type(exc).__name__}: {exc}"
    hint = _OS_ERROR_HINTS.get(errno.errorcode.get(exc.errno or 0, ""))
    return text + (f" (hint: {hint})" if hint else "")


def error_text(exc: BaseException) -> str:
    """The one-line message of ``exc`` for reports, events and logs.

    An :class:`EdtalkError` gives its message and ``(hint: ...)``; an OSError with an errno
    gives its class and :func:`os_error_text`; anything else its class and text.
    """
    if isinstance(exc, EdtalkError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__}: {os_error_text(exc)}"
    return f"{type(exc).__name__}: {exc}"
