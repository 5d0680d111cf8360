"""``edtalk render``: render every job of one or more manifests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


def render(
    manifests: list[Path] = typer.Argument(..., help="Manifest files or directories of manifests."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights directory (overrides manifests)."),
    model: str | None = typer.Option(None, "--model", help="auto, edtalk or lip_pose (overrides manifests)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16, fp16 or fp64."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Frames rendered per batch."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failing job."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; errors only."),
    log_json: bool = typer.Option(False, "--log-json", help="Print JSON-lines events on stdout."),
    report: Path | None = typer.Option(None, "--report", help="Write a JSON report of every job here."),
) -> None:
    """Render every job of the manifests to muxed mp4 files. Exits 1 if any job failed."""
    from edtalk_cli.manifest import load_manifests
    from edtalk_cli.runner.batch import BatchRunner

    loaded = load_manifests(manifests)  # every validation problem at once, before rendering
    jobs = [job for manifest in loaded for job in manifest.jobs]
    runner = BatchRunner(
        device=device,
        precision=precision,
        batch_size=batch_size,
        weights=weights,
        model=model,
        fail_fast=fail_fast,
    )

    def emit(event: str, payload: dict) -> None:
        if log_json:
            sys.stdout.write(json.dumps({"event": event, **payload}, default=str) + "\n")
            sys.stdout.flush()
        if event == "model_loaded" and payload["demo"] and not log_json:
            from edtalk_cli.pipeline.models import DEMO_NOTICE

            console.print(f"[yellow]note:[/] {DEMO_NOTICE}", highlight=False)
        if event == "job_failed" and not log_json:
            console.print(f"[bold red]failed:[/] {payload['name']}: {payload['error']}", highlight=False)

    show_bars = not quiet and not log_json
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_bars,
    )
    with progress:
        overall = progress.add_task("all jobs", total=len(jobs), rate="")

        def progress_for(job):
            task = progress.add_task(f"  {job.name}", total=None, rate="")
            state = {"t0": None}

            def update(done: int, total: int) -> None:
                import time

                if state["t0"] is None:
                    state["t0"] = time.perf_counter()
                elapsed = time.perf_counter() - state["t0"]
                rate = f"{done / elapsed:.1f} fps" if elapsed > 0 else ""
                progress.update(task, completed=done, total=total, rate=rate)

            return update

        def on_event(event: str, payload: dict) -> None:
            emit(event, payload)
            if event in ("job_done", "job_failed"):
                progress.advance(overall)

        outcomes = runner.run(jobs, on_event=on_event, progress_for=progress_for)

    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_name(f".{report.name}.tmp")
        tmp.write_text(json.dumps({"jobs": [o.to_dict() for o in outcomes]}, indent=2))
        tmp.replace(report)
    failed = [o for o in outcomes if o.status == "failed"]
    if not quiet and not log_json:
        table = Table(title="render summary")
        for column in ("job", "status", "frames", "fps", "output / error"):
            table.add_column(column)
        for o in outcomes:
            detail = o.output if o.status == "done" else (o.error or "")
            table.add_row(o.name, o.status, str(o.frames), f"{o.frames_per_s:.1f}", detail)
        console.print(table)
    if failed or len(outcomes) < len(jobs):
        raise typer.Exit(1)
