"""``edtalk cache``: inspect and clear the content-addressed cache (crops, encodings, tracks)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Inspect or clear the cache of face crops, source encodings and reference tracks.",
    no_args_is_help=True,
    add_completion=False,
)

_DIR_HELP = "Cache directory (default: $EDTALK_CACHE, else the per-user cache dir)."


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@app.command("info")
def info(
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Entries and size of the cache, per kind."""
    from edtalk_cli.runner.cache import cache_info

    found = cache_info(cache_dir)
    if as_json:
        data = {
            "root": str(found.root),
            "entries": found.entries,
            "bytes": found.bytes,
            "total_entries": found.total_entries,
            "total_bytes": found.total_bytes,
        }
        typer.echo(json.dumps(data))
        return
    table = Table(title=f"edtalk cache: {found.root}")
    for column in ("kind", "entries", "size"):
        table.add_column(column)
    for kind, count in found.entries.items():
        table.add_row(kind, str(count), _size(found.bytes[kind]))
    table.add_row("total", str(found.total_entries), _size(found.total_bytes))
    Console(highlight=False).print(table)


@app.command("clear")
def clear(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_DIR_HELP)) -> None:
    """Delete every cache entry (outputs and their sidecars are not touched)."""
    from edtalk_cli.runner.cache import clear_cache

    removed = clear_cache(cache_dir)
    typer.echo(f"removed {removed.total_entries} entries ({_size(removed.total_bytes)}) from {removed.root}")
