"""``edtalk train``: run the paper's training stages and build the demo model (thin layer over training/)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from edtalk_cli.training.trainer import ProgressCallback

app = typer.Typer(
    help="Train EDTalk in the paper's stages (0: E/G, 1: mouth-pose, 2: expression, 3: Audio2Lip).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("stage")
def stage(
    config: Path = typer.Argument(..., help="Training config YAML (see configs/train/)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory (checkpoints, losses.jsonl, samples/)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/latest.pt."),
    init: str | None = typer.Option(
        None, "--init", help="Checkpoint of the previous stage (overrides the config)."
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", help="Total iterations (overrides the config)."
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Stop and save after this wall time."
    ),
    data: str | None = typer.Option(None, "--data", help="'synthetic' or a dataset root (docs/dataset.md)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    data_workers: int | None = typer.Option(
        None,
        "--data-workers",
        help="Processes making batches ahead (default: 1 on a CPU with a spare core, up to 8 on a GPU).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run (or resume) one training stage."""
    from edtalk_cli.training import load_config, train
    from edtalk_cli.training.trainer import describe

    overrides = {
        "init": init,
        "iterations": iterations,
        "max_minutes": max_minutes,
        "data": data,
        "device": device,
        "data_workers": data_workers,
    }
    cfg = load_config(config, overrides)
    console = Console(stderr=True)
    console.print(f"{describe(cfg)} -> {out}")
    with _stage_progress_bar(cfg.stage, console, disable=quiet) as on_step:
        result = train(cfg, out, resume=resume, progress=on_step)
    note = " (stopped at --max-minutes)" if result.stopped_early else ""
    terms = ", ".join(f"{k} {v:.4f}" for k, v in result.last_terms.items())
    Console().print(f"{result.checkpoint}: {result.step} iterations in {result.seconds:.0f} s{note}; {terms}")


@contextmanager
def _stage_progress_bar(stage: int, console: Console, disable: bool) -> Iterator[ProgressCallback]:
    """A progress bar of a training stage (steps, last loss, times) and the callback that moves it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"stage {stage}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=disable) as bar:
        tasks: list[TaskID] = []  # added at the first call, so the clock starts with the steps

        def on_step(step: int, iterations: int, terms: dict[str, float]) -> None:
            if not tasks:
                tasks.append(bar.add_task("", total=iterations, completed=step))
            loss = f"loss {terms['loss']:.4f}" if "loss" in terms else ""
            bar.update(tasks[0], completed=step, description=loss)

        yield on_step


@app.command("export")
def export(
    generator: Path = typer.Option(..., "--generator", help="Stage-2 (EDTalk.pt) or stage-1 checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Weights directory to write (safetensors + presets)."),
    audio2lip: Path | None = typer.Option(None, "--audio2lip", help="Stage-3 checkpoint (Audio2Lip.pt)."),
    presets: bool = typer.Option(
        True, "--presets/--no-presets", help="Compute the 8 emotion presets (full model)."
    ),
    identities: int = typer.Option(12, "--identities", help="Identities per emotion for the presets."),
    preset_source: str = typer.Option(
        "auto",
        "--preset-source",
        help="encoder (mean expression coefficients of rendered prototype faces), factors (the "
        "prototypes' exact factors; models trained with weights.anchor), auto (factors when the "
        "checkpoint was trained with the anchor) or fitted (auto's presets, then fitted so that "
        "this model renders the prototype faces of training identities; about 2 s per identity "
        "and preset at 64 px on one CPU thread).",
    ),
    calibrate_expression: bool = typer.Option(
        False,
        "--calibrate-expression/--no-calibrate-expression",
        help="Undo the shrinkage of the expression readout of a model trained with weights.anchor "
        "(variance matching on training identities, folded into exp_fc), so reference clips "
        "drive emotions at full strength.",
    ),
) -> None:
    """Convert trained checkpoints to a weights directory that `edtalk render` loads."""
    import torch
    from rich.progress import Progress

    from edtalk_cli.training.export import check_preset_source, export_trained_model

    check_preset_source(preset_source)
    torch.set_num_threads(1)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        fitting = bar.add_task("fitting presets", visible=False, total=None)

        def on_preset_fitted(done: int, total: int) -> None:
            bar.update(fitting, visible=True, completed=done, total=total)

        written = export_trained_model(
            generator,
            out,
            audio2lip,
            presets=presets,
            identities=identities,
            preset_source=preset_source,
            calibrate_expression=calibrate_expression,
            on_calibrated=Console().print,
            on_preset_fitted=on_preset_fitted,
        )
    for path in written:
        Console().print(str(path))


@app.command("evaluate")
def evaluate(
    generator: Path = typer.Option(
        ..., "--generator", help="Generator checkpoint (.pt) or weights directory."
    ),
    audio2lip: Path | None = typer.Option(
        None, "--audio2lip", help="Audio2Lip checkpoint or weights directory."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
    identities: int = typer.Option(8, "--identities", help="Held-out identities for self-reenactment."),
    expression_ceiling: bool = typer.Option(
        False,
        "--expression-ceiling",
        help="Also test whether the decoder can render expressions at all (full model; ~1.5 min at 64 px on a CPU).",
    ),
) -> None:
    """Measure a trained model on held-out synthetic identities (PSNR, emotion and lip-sync probes, presets)."""
    import json

    import torch

    from edtalk_cli.evaluation.probes import probe_report
    from edtalk_cli.training.trainer import load_any_audio2lip, load_any_generator

    torch.set_num_threads(1)
    gen = load_any_generator(generator)
    a2l = None if audio2lip is None else load_any_audio2lip(audio2lip)
    report = probe_report(
        gen, a2l, identities=identities, expression_ceiling=expression_ceiling, name=str(generator)
    )
    text = json.dumps(report, indent=2)
    Console().print(text)
    if json_out is not None:
        json_out.write_text(text + "\n", encoding="utf-8")
