"""``edtalk render``: render every job of one or more manifests (see docs/batch.md)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from edtalk_cli.commands.consoles import make_console
from edtalk_cli.defaults import CPU_BATCH_SIZE, ENGINE, GPU_BATCH_SIZE, PRECISION
from edtalk_cli.manifest.probe import MAX_FRAME_SIDE, MIN_SOURCE_SIDE

console = make_console(stderr=True, emoji=False)
REPORT_NAME = "edtalk-report.json"


def _default_report(sources: list[Path]) -> Path:
    """Next to the first manifest (or jobs file) read from disk; in the working directory for stdin."""
    files = [path.resolve() for path in sources if str(path) != "-"]
    if not files:
        return Path.cwd() / REPORT_NAME
    return (files[0] if files[0].is_dir() else files[0].parent) / REPORT_NAME


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render(  # noqa: C901
    manifests: list[Path] = typer.Argument(
        None, help="Manifest files or directories of manifests; - reads a manifest (YAML or JSON) from stdin."
    ),
    jobs_jsonl: Path | None = typer.Option(
        None,
        "--jobs-jsonl",
        help='One job per line (JSON Lines; - for stdin); an optional first line {"defaults": ...}.',
    ),
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
    precision: str = typer.Option(
        PRECISION, "--precision", help="fp32 (TF32 off), tf32, bf16, fp16 or fp64."
    ),
    engine: str = typer.Option(
        ENGINE, "--engine", help="What evaluates the model: torch, or onnxruntime (needs --onnx-dir)."
    ),
    onnx_dir: Path | None = typer.Option(
        None, "--onnx-dir", help="The graphs `edtalk export onnx` wrote, for --engine onnxruntime."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Frames rendered per batch (default: {CPU_BATCH_SIZE} on CPUs, {GPU_BATCH_SIZE} on GPUs).",
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
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing output files that edtalk did not write (no sidecar)."
    ),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Allow outputs outside the folder of their manifest."
    ),
    max_frame_size: int = typer.Option(
        MAX_FRAME_SIDE, "--max-frame-size", min=MIN_SOURCE_SIDE, help="Largest input image/video side in px."
    ),
    retries: int = typer.Option(0, "--retries", min=0, help="Retries of a job after a transient error."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop handing out jobs after a failure."),
    on_locked: str = typer.Option(
        "wait", "--on-locked", help="Jobs another edtalk render is writing: wait for them, or skip."
    ),
    lock_timeout: float = typer.Option(
        300.0, "--lock-timeout", min=1.0, help="Seconds after which an unrefreshed lock is stale."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the crop/encoding/track cache."),
    enhance: bool = typer.Option(
        False,
        "--enhance",
        help="Enhance faces (GFPGANv1.4 from the weights dir, 2x) in jobs without their own 'enhance'.",
    ),
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
    from edtalk_cli import api
    from edtalk_cli.runner.batch import RunOptions

    # every manifest problem at once, before rendering; bad JSONL lines are skipped and reported
    loaded = api.load(manifests or None, jobs_jsonl=jobs_jsonl, allow_outside=allow_outside)
    jobs = loaded.jobs
    for invalid in loaded.invalid:
        for problem in invalid.problems:
            console.print(f"[bold red]invalid job:[/] {escape(problem.format())}", highlight=False)
    options = RunOptions(
        devices=devices,
        workers_per_device=workers_per_device,
        backend=backend,
        scheduler=scheduler,
        precision=precision,
        engine=engine,
        onnx_dir=onnx_dir,
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
        enhance=enhance,
        overwrite=overwrite,
        max_frame_size=max_frame_size,
    )
    if dry_run:
        _dry_run(jobs, options, log_json=log_json)
        if loaded.invalid:
            raise typer.Exit(1)
        return
    from edtalk_cli.runner.report import check_report_path
    from edtalk_cli.runner.signals import interrupts_raise

    sources = [*(manifests or []), *([jobs_jsonl] if jobs_jsonl is not None else [])]
    report_path = None if no_report else (report or _default_report(sources))
    if report_path is not None:  # before any job: a report that cannot be written fails now
        check_report_path(report_path, "--report")
    if report_csv is not None:
        check_report_path(report_csv, "--report-csv")
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
        overall = progress.add_task("all jobs", total=len(jobs) + len(loaded.invalid), rate="")
        bars: dict[str, int] = {}
        started = time.perf_counter()
        job_t0: dict[str, float] = {}
        frames_done: dict[str, int] = {}

        def on_event(event: str, payload: dict) -> None:
            if log_json:
                emit_json(event, payload)
            if event == "run_start" and payload.get("threads_note"):
                progress.update(overall, description=f"all jobs ({payload['threads_note']})")
            elif event == "cache_warning" and not quiet and not log_json:
                console.print(
                    f"[yellow]warning:[/] {escape(str(payload.get('error')))} writing the cache "
                    f"'{escape(str(payload.get('root')))}': rendering goes on without caching",
                    highlight=False,
                )
            elif event == "model_loaded":
                described = f"weights: {payload.get('description')}"
                if not quiet and not log_json and described not in notices:
                    notices.add(described)  # which weights are in use, once per model
                    console.print(escape(described), highlight=False)
                    if payload.get("demo"):
                        from edtalk_cli.weights.bundle import DEMO_NOTICE

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

        with interrupts_raise():  # Ctrl-C / SIGTERM / SIGHUP: stop, clean up, report what finished
            result = api.render(loaded, options=options, on_event=on_event)

    outcomes = result.outcomes
    stopped = result.interrupted
    if report_path is not None:
        extra = {"interrupted": str(stopped)} if stopped is not None else {}
        result.write_json(report_path, devices=devices, **extra)
    if report_csv is not None:
        result.write_csv(report_csv)
    if stopped is not None:
        finished = sum(o.status in ("done", "skipped") for o in outcomes)
        code = getattr(stopped, "exit_code", 130)
        where = f"; report: {report_path}" if report_path is not None else ""
        console.print(
            f"[bold red]stopped by {escape(str(stopped) or 'SIGINT')}:[/] {finished} of {len(outcomes)} jobs "
            f"finished, the rest cancelled, temporary files removed{escape(where)}",
            highlight=False,
            soft_wrap=True,  # one line, however narrow the terminal
        )
        raise typer.Exit(code)
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
        for o in outcomes:
            if o.frames_without_face:
                console.print(
                    f"[yellow]no face:[/] {escape(o.name)}: {o.frames_without_face} of {o.frames} frames had no "
                    "face and are the source frames unchanged",
                    highlight=False,
                )
    if bad or len(outcomes) < len(jobs):
        raise typer.Exit(1)


def _dry_run(jobs, options, *, log_json: bool) -> None:
    """Print the plan; exit 1 when a job is invalid."""
    from edtalk_cli.runner.estimate import plan_batch

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
        out = make_console(highlight=False)
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
