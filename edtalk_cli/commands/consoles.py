"""Rich consoles for the commands: tables keep their width in pipes and CI logs; user errors printed one way."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from edtalk_cli.errors import EdtalkError

__all__ = ["PIPE_WIDTH", "make_console", "print_error"]

PIPE_WIDTH = 200  # columns when the output is not a terminal (rich would use 80) and $COLUMNS is unset


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A rich Console; when writing to a pipe or a file it is PIPE_WIDTH wide instead of 80, so that
    tables in logs are not cut (``$COLUMNS`` still wins)."""
    console = Console(stderr=stderr, **kwargs)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip() and "width" not in kwargs:
        console.width = PIPE_WIDTH
    return console


def print_error(console: Console, exc: EdtalkError) -> None:
    """Print a user error as every command does: ``error: <message>``, then ``  hint: <fix>`` if any."""
    console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        console.print(f"  [yellow]hint:[/] {escape(exc.hint)}", highlight=False)
