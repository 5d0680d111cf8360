"""``edtalk extract``: save mouth/pose/expression coefficient tracks of images or videos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edtalk_cli.commands.consoles import make_console
from edtalk_cli.defaults import EXTRACT_BATCH_SIZE, FPS

console = make_console(emoji=False)


def extract(
    inputs: list[Path] = typer.Argument(..., help="Images or videos of a face."),
    out: Path = typer.Option(Path("tracks"), "--out", "-o", help="Directory for the .npz/.npy tracks."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights directory."),
    model: str = typer.Option("auto", "--model", help="auto, edtalk or lip_pose."),
    fps: float = typer.Option(FPS, "--fps", help="Resample videos to this frame rate first."),
    crop: str = typer.Option(
        "auto", "--crop", help="auto (aligned face), box (square box) or none (input is a crop)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... or auto."),
    batch_size: int = typer.Option(EXTRACT_BATCH_SIZE, "--batch-size", help="Frames encoded per batch."),
) -> None:
    """Extract coefficient tracks (mouth 20, pose 6, expression 10 per frame) for reuse in manifests.

    Writes NAME.npz (all tracks) and NAME_{mouth,pose,expression}.npy, each (T, dim) float32.
    """
    from edtalk_cli.pipeline.extract import extract_tracks
    from edtalk_cli.runner.devices import resolve_device

    device = resolve_device(device, option="--device")
    model_name, tracks = extract_tracks(
        inputs, out, weights=weights, model=model, fps=fps, crop=crop, device=device, batch_size=batch_size
    )
    table = Table(title=f"coefficient tracks ({model_name})")
    for column in ("input", "frames", "no-face frames", "written"):
        table.add_column(column)
    for track in tracks:
        table.add_row(
            str(track.source),
            str(track.frames),
            str(track.missing_frames),
            ", ".join(path.name for path in track.written),
        )
    console.print(table)
