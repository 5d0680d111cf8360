"""``edtalk crop``: write the model-size face crops of images and videos, as ``edtalk render`` cuts them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from edtalk_cli.commands.consoles import make_console, print_error

console = make_console(emoji=False)
err_console = make_console(stderr=True, emoji=False)


def crop(
    inputs: list[Path] = typer.Argument(..., help="Images or videos of a face."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for <stem>.png / <stem>.mp4."),
    size: int = typer.Option(256, "--size", help="Crop side in pixels (the model size)."),
    mode: str = typer.Option("auto", "--mode", help="auto (official alignment) or box (square box)."),
    fps: float | None = typer.Option(
        None, "--fps", help="Resample videos to this rate (default: their own)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Crop the face of each input to SIZE x SIZE exactly as `edtalk render` would (check a crop before a batch).

    Images become DIR/<stem>.png; videos DIR/<stem>.mp4 with their audio. Exits 1 if any input
    failed (the others are written), 2 if nothing was done (existing outputs, clashing names).
    """
    from edtalk_cli.pipeline.crop_media import crop_media

    outcomes = crop_media(inputs, out, size=size, mode=mode, overwrite=overwrite, fps=fps)
    table = Table(title=f"face crops ({mode}, {size}x{size})")
    for column in ("input", "output", "frames", "no-face frames", "notes"):
        table.add_column(column)
    failed = [o for o in outcomes if o.error is not None]
    for o in outcomes:
        if o.error is None:
            table.add_row(
                escape(str(o.input)),
                escape(str(o.output)),
                str(o.frames),
                str(o.missing_frames),
                escape("; ".join(o.notes)),
            )
        else:
            table.add_row(escape(str(o.input)), "-", "-", "-", "[red]failed[/]")
    console.print(table)
    for o in failed:
        print_error(err_console, o.error)
    if failed:
        err_console.print(f"{len(failed)} of {len(outcomes)} inputs failed; the others were written")
        raise typer.Exit(1)
