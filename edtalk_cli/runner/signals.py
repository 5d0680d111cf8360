"""Stopping a batch on Ctrl-C, SIGTERM or SIGHUP: the signal becomes an :class:`Interrupted` exception.

Inside :func:`interrupts_raise`, the first SIGINT, SIGTERM or SIGHUP raises :class:`Interrupted`
in the main thread (a ``KeyboardInterrupt``, so everything that cleans up on Ctrl-C also cleans up
on the others); later ones are ignored while the batch cleans up. The batch runner catches it,
stops the workers, deletes temporary files, releases its locks and returns the outcomes so far;
the command writes the report and exits with ``128 + signal number`` (130, 143, 129).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["HANDLED", "Interrupted", "interrupts_raise"]

HANDLED = tuple(
    s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s
)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (SIGINT 130, SIGTERM 143, SIGHUP 129)."""
        return 128 + self.signum


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn the first SIGINT / SIGTERM / SIGHUP into :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            return  # already stopping: let the cleanup finish
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
