"""``edtalk render``: render every job of one or more manifests (see docs/batch.md)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True, emoji=False)
REPORT_NAME = "edtalk-report.json"


def _default_report(manifests: list[Path]) -> Path:
    first = manifests[0].resolve()
    return (first if first.is_dir() else first.parent) / REPORT_NAME


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render(
    manifests: list[Path] = typer.Argument(..., help="Manifest files or directories of manifests."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights directory (overrides manifests)."),
    model: str | None = typer.Option(
        None, "--model", help="auto, edtalk, lip_pose or demo (overrides manifests)."
    ),
    devices: str = typer.Option(
        "auto", "--devices", "--device", help="auto, cpu, or a list such as cuda:0,cuda:1 (or cpu,cpu)."
    ),
    workers_per_device: int = typer.Option(
        1, "--workers-per-device", min=1, help="Worker processes per device."
    ),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (TF32 off), tf32, bf16, fp16 or fp64."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Frames rendered per batch (default: 1 on CPUs, 8 on GPUs)."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads per worker (default: the cores split between the workers). "
        "1 is fastest on a CPU that other work keeps busy.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="auto, inline (this process), loky (local workers) or dask."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://HOST:8786); implies --backend dask."
    ),
    chunk_frames: int = typer.Option(
        0, "--chunk-frames", min=0, help="Split jobs longer than this many frames over workers (0: never)."
    ),
    force: bool = typer.Option(False, "--force", help="Render even the outputs that are up to date."),
    retries: int = typer.Option(0, "--retries", min=0, help="Retries of a job after a transient error."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop handing out jobs after a failure."),
    on_locked: str = typer.Option(
        "wait", "--on-locked", help="Jobs another edtalk render is writing: wait for them, or skip."
    ),
    lock_timeout: float = typer.Option(
        300.0, "--lock-timeout", min=1.0, help="Seconds after which an unrefreshed lock is stale."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the crop/encoding/track cache."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate, probe media and estimate the run; render and write nothing."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; errors only."),
    log_json: bool = typer.Option(False, "--log-json", help="Print JSON-lines events on stdout."),
    report: Path | None = typer.Option(
        None, "--report", help=f"JSON report path (default: {REPORT_NAME} next to the first manifest)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Write no JSON report."),
    report_csv: Path | None = typer.Option(None, "--report-csv", help="Also write a CSV report here."),
) -> None:
    """Render every job of the manifests to muxed mp4 files. Exits 1 if any job failed.

    Outputs whose sidecar (<output>.edtalk.json) matches the job are skipped, so an interrupted
    batch resumes where it stopped.
    """
    from edtalk_cli.manifest import load_manifests
    from edtalk_cli.runner.batch import BatchRunner, RunOptions

    loaded = load_manifests(manifests)  # every validation problem at once, before rendering
    jobs = [job for manifest in loaded for job in manifest.jobs]
    options = RunOptions(
        devices=devices,
        workers_per_device=workers_per_device,
        backend=backend,
        scheduler=scheduler,
        precision=precision,
        batch_size=batch_size,
        threads=threads,
        weights=weights,
        model=model,
        fail_fast=fail_fast,
        retries=retries,
        force=force,
        chunk_frames=chunk_frames,
        on_locked=on_locked,
        lock_timeout=lock_timeout,
        cache=not no_cache,
    )
    if dry_run:
        _dry_run(jobs, options, log_json=log_json)
        return
    runner = BatchRunner(options)
    show_bars = not quiet and not log_json
    out_lock = threading.Lock()
    notices: set[str] = set()

    def emit_json(event: str, payload: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps({"event": event, **payload}, default=str) + "\n")
            sys.stdout.flush()

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
        bars: dict[str, int] = {}
        started = time.perf_counter()
        job_t0: dict[str, float] = {}
        frames_done: dict[str, int] = {}

        def on_event(event: str, payload: dict) -> None:
            if log_json:
                emit_json(event, payload)
            if event == "model_loaded" and payload.get("demo") and not log_json and "demo" not in notices:
                from edtalk_cli.pipeline.models import DEMO_NOTICE

                notices.add("demo")
                console.print(f"[yellow]note:[/] {DEMO_NOTICE}", highlight=False)
            elif event == "job_start":
                key = payload["key"]
                job_t0[key] = time.perf_counter()
                bars[key] = progress.add_task(f"  {payload['name']}", total=payload.get("frames"), rate="")
            elif event == "job_progress" and payload["key"] in bars:
                key = payload["key"]
                elapsed = time.perf_counter() - job_t0.get(key, started)
                rate = f"{payload['done'] / elapsed:.1f} fps" if elapsed > 0 else ""
                progress.update(bars[key], completed=payload["done"], total=payload["total"], rate=rate)
                frames_done[key] = payload["done"]
                total_elapsed = time.perf_counter() - started
                progress.update(overall, rate=f"{sum(frames_done.values()) / total_elapsed:.1f} fps")
            elif event == "job_retry" and not log_json and not quiet:
                console.print(
                    f"[yellow]retrying:[/] {escape(payload['name'])}: {escape(str(payload.get('error')))}"
                )
            elif event == "job_waiting" and not log_json and not quiet:
                console.print(
                    f"[yellow]waiting:[/] {escape(payload['name'])} is being rendered by "
                    f"{escape(str(payload['locked_by']))}"
                )
            elif event in ("job_done", "job_skipped", "job_failed", "job_cancelled"):
                key = payload["output"]
                if key in bars:
                    progress.update(bars[key], visible=len(jobs) <= 8)
                progress.advance(overall)
                if event == "job_failed" and not log_json:
                    console.print(
                        f"[bold red]failed:[/] {escape(payload['name'])}: {escape(str(payload['error']))}"
                    )

        outcomes = runner.run(jobs, on_event=on_event)

    meta = {
        "devices": devices,
        "slots": runner.slots,
        "backend": runner.backend,
        "wall_s": round(time.perf_counter() - started, 3),
    }
    if not no_report:
        from edtalk_cli.runner.report import write_report_json

        write_report_json(report or _default_report(manifests), outcomes, **meta)
    if report_csv is not None:
        from edtalk_cli.runner.report import write_report_csv

        write_report_csv(report_csv, outcomes)
    bad = [o for o in outcomes if o.status in ("failed", "cancelled")]
    if not quiet and not log_json:
        table = Table(title="render summary")
        for column in ("job", "status", "frames", "fps", "device", "output / error"):
            table.add_column(column)
        for o in outcomes:
            detail = o.output if o.status in ("done", "skipped") else (o.error or "")
            table.add_row(
                escape(o.name), o.status, str(o.frames), f"{o.frames_per_s:.1f}", o.device, escape(detail)
            )
        console.print(table)
    if bad or len(outcomes) < len(jobs):
        raise typer.Exit(1)


def _dry_run(jobs, options, *, log_json: bool) -> None:
    """Print the plan; exit 1 when a job is invalid."""
    from edtalk_cli.runner.plan import plan_batch

    plan = plan_batch(jobs, options)
    if log_json:
        data = {
            "event": "plan",
            "backend": plan.backend,
            "slots": plan.slots,
            "calibration_fps": plan.calibration,
            "frames": plan.frames,
            "estimate_s": plan.estimate_s,
            "notes": plan.notes,
            "jobs": [
                {
                    "name": j.name,
                    "output": str(j.output),
                    "action": j.action,
                    "frames": j.frames,
                    "duration_s": j.duration_s,
                    "chunks": j.chunks,
                    "estimate_s": j.estimate_s,
                    "problems": j.problems,
                }
                for j in plan.jobs
            ],
        }
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        out = Console(highlight=False)
        table = Table(title="render plan (dry run: nothing is rendered or written)")
        for column in ("job", "action", "frames", "audio", "chunks", "est. alone", "output / problem"):
            table.add_column(column)
        for j in plan.jobs:
            detail = "; ".join(j.problems) if j.problems else str(j.output)
            table.add_row(
                escape(j.name),
                j.action,
                "?" if j.frames is None else str(j.frames),
                "?" if j.duration_s is None else f"{j.duration_s:.2f}s",
                str(j.chunks),
                "" if j.estimate_s is None else _fmt_s(j.estimate_s),
                escape(detail),
            )
        out.print(table)
        actions = {a: sum(j.action == a for j in plan.jobs) for a in ("render", "skip", "locked", "invalid")}
        out.print(
            f"jobs: {len(plan.jobs)} ({', '.join(f'{n} {a}' for a, n in actions.items() if n)}); "
            f"frames to render: {plan.frames}"
        )
        out.print(
            f"devices: {', '.join(dict.fromkeys(plan.slots))}; workers: {len(plan.slots)} ({plan.backend})"
        )
        for device, fps in plan.calibration.items():
            out.print(f"calibration: {fps:.1f} frames/s on {device} (one worker, generator only)")
        if plan.estimate_s is not None:
            out.print(f"estimated time: {_fmt_s(plan.estimate_s)} ({plan.estimate_s:.1f} s)")
        for note in plan.notes:
            out.print(f"note: {escape(note)}")
    if plan.problems:
        for problem in plan.problems:
            console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)
