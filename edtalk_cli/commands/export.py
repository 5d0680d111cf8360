"""``edtalk export``: write the model in other formats (thin layer over edtalk_cli.pipeline.onnx_export)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Export the model for other runtimes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("onnx")
def onnx_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the ONNX graphs into."),
    weights: Path | None = typer.Option(
        None, "--weights", "-w", help="Weights directory (default: $EDTALK_WEIGHTS, else the per-user cache)."
    ),
    model: str = typer.Option("auto", "--model", help="auto, edtalk, lip_pose or demo."),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty directory, replacing its graphs."
    ),
) -> None:
    """Export the encoder, motion heads (bases folded in), decoder and Audio2Lip as ONNX (dynamic batch).

    Render through them with `edtalk render --engine onnxruntime --onnx-dir DIR`.
    """
    from edtalk_cli.pipeline.onnx_export import METADATA_NAME, OPSET, export_onnx

    exported = export_onnx(weights, output, model=model, overwrite=force)
    cfg = exported.metadata["config"]
    typer.echo(f"exported {exported.description} ({cfg['size']} px, opset {OPSET}) to {exported.directory}")
    for name, path in exported.files.items():
        typer.echo(f"  {name:<13} {path.name}  {path.stat().st_size / 2**20:.1f} MiB")
    typer.echo(f"  {'metadata':<13} {METADATA_NAME}")
