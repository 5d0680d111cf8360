"""Rich consoles for the commands: tables keep their width in pipes and CI logs."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

__all__ = ["PIPE_WIDTH", "make_console"]

PIPE_WIDTH = 200  # columns when the output is not a terminal (rich would use 80) and $COLUMNS is unset


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A rich Console; when writing to a pipe or a file it is PIPE_WIDTH wide instead of 80, so that
    tables in logs are not cut (``$COLUMNS`` still wins)."""
    console = Console(stderr=stderr, **kwargs)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip() and "width" not in kwargs:
        console.width = PIPE_WIDTH
    return console
