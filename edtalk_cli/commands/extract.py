"""``edtalk extract``: save mouth/pose/expression coefficient tracks of images or videos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console(emoji=False)


def extract(
    inputs: list[Path] = typer.Argument(..., help="Images or videos of a face."),
    out: Path = typer.Option(Path("tracks"), "--out", "-o", help="Directory for the .npz/.npy tracks."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights directory."),
    model: str = typer.Option("auto", "--model", help="auto, edtalk or lip_pose."),
    fps: float = typer.Option(25.0, "--fps", help="Resample videos to this frame rate first."),
    crop: str = typer.Option("auto", "--crop", help="auto (detect the face) or none (input is a crop)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... or auto."),
    batch_size: int = typer.Option(16, "--batch-size", help="Frames encoded per batch."),
) -> None:
    """Extract coefficient tracks (mouth 20, pose 6, expression 10 per frame) for reuse in manifests.

    Writes NAME.npz (all tracks) and NAME_{mouth,pose,expression}.npy, each (T, dim) float32.
    """
    from edtalk_cli.errors import EdtalkError
    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.pipeline.faces import face_crops
    from edtalk_cli.pipeline.models import load_bundle
    from edtalk_cli.runner.devices import resolve_device

    device = resolve_device(device, option="--device")
    if crop not in ("auto", "none"):
        raise EdtalkError(f"--crop must be 'auto' or 'none', got {crop!r}")
    for path in inputs:
        if not path.exists():
            raise EdtalkError(f"input file '{path}' does not exist", hint="check the path")
    bundle = load_bundle(weights, model, device=device)
    engine = RenderEngine(bundle.generator, device=device, batch_size=batch_size)
    table = Table(title=f"coefficient tracks ({bundle.description})")
    for column in ("input", "frames", "no-face frames", "written"):
        table.add_column(column)
    for path in inputs:
        faces = face_crops(path, size=engine.size, fps=fps, crop=crop)
        track = engine.extract_coefficients(faces.crops)
        out.mkdir(parents=True, exist_ok=True)
        npz = track.save(out / f"{path.stem}.npz")
        parts = track.save_components(out, path.stem)
        table.add_row(
            str(path),
            str(len(track)),
            str(faces.missing_frames),
            ", ".join(p.name for p in [npz, *parts.values()]),
        )
    console.print(table)
