"""``edtalk schema``, ``edtalk validate`` and ``edtalk presets``: thin layer over edtalk_cli.manifest."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest import (
    EmotionSpec,
    Job,
    ManifestValidationError,
    discover_presets,
    load_manifests,
    manifest_json_schema,
)
from edtalk_cli.manifest.problems import did_you_mean
from edtalk_cli.manifest.yaml_marks import display_path

__all__ = ["presets_app", "schema", "validate"]

presets_app = typer.Typer(
    help="List and show emotion presets (bundled, and user presets from $EDTALK_PRESETS).",
    no_args_is_help=True,
    add_completion=False,
)


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def schema(
    indent: int = typer.Option(2, "--indent", min=0, help="JSON indentation (0: one line)."),
) -> None:
    """Print the JSON Schema of the manifest format (version 1)."""
    text = json.dumps(manifest_json_schema(), indent=indent or None, ensure_ascii=False)
    typer.echo(text)


def _emotion_text(spec: EmotionSpec) -> str:
    if spec.kind == "blend":
        inner = " + ".join(f"{w:.2g} {c.label}" for w, c in spec.components or ())
        text = f"({inner})"
    elif spec.kind in ("image", "video") and spec.path is not None:
        text = f"{spec.kind} {spec.path.name}"
    elif spec.kind == "coeffs":
        text = "coeffs"
    else:
        text = spec.label
    if spec.label not in ("custom", spec.name) and spec.kind != "name":
        text = f"{spec.label}={text}"
    elif spec.kind == "name" and spec.label != spec.name:
        text = f"{spec.label} ({spec.name})"
    return text if spec.intensity == 1.0 else f"{text} x{spec.intensity:g}"


def _job_emotion(job: Job) -> str:
    text = _emotion_text(job.emotion) if job.emotion_explicit else "neutral"
    if job.segments:
        text += f" +{len(job.segments)} segment{'s' if len(job.segments) != 1 else ''}"
    return text


def validate(
    manifests: list[Path] = typer.Argument(..., help="Manifest files or directories of manifests."),
    no_media: bool = typer.Option(
        False,
        "--no-media",
        help="Only check the manifest and that files exist (no decoding, no face detection).",
    ),
) -> None:
    """Check manifests without rendering: every problem at once, then a table of the jobs."""
    out, err = _out(), _err()
    try:
        loaded = load_manifests(manifests)
    except ManifestError as exc:
        lines = (
            [p.format() for p in exc.problems] if isinstance(exc, ManifestValidationError) else [exc.message]
        )
        for line in lines:
            err.print(f"[bold red]error:[/] {escape(line)}")
        err.print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was rendered.")
        raise typer.Exit(1) from None

    table = Table(title="Jobs", show_lines=False)
    several = len(loaded) > 1
    columns = (
        ("manifest", "job", "source", "audio", "duration", "frames")
        if several
        else ("job", "source", "audio", "duration", "frames")
    )
    for column in columns:
        table.add_column(
            column, no_wrap=True, justify="right" if column in ("duration", "frames") else "left"
        )
    table.add_column("emotion", overflow="fold")
    table.add_column("output", overflow="fold")
    media_problems: list[str] = []
    total_s = 0.0
    count = 0
    for manifest in loaded:
        for job in manifest.jobs:
            duration, frames = "-", "-"
            if not no_media:
                from edtalk_cli.manifest.media import inspect_media

                report = inspect_media(job)
                media_problems.extend(report.problems)
                if report.duration_s is not None:
                    duration = f"{report.duration_s:.2f}s"
                    frames = f"{report.num_frames} @ {job.fps:g}"
                    total_s += report.duration_s
            count += 1
            table.add_row(
                *([manifest.path.name] if several else []),
                job.name,
                f"{job.source.path.name} ({job.source.kind})",
                job.audio.name,
                duration,
                frames,
                _job_emotion(job),
                display_path(job.output),
            )
    out.print(table)
    if media_problems:
        for line in media_problems:
            err.print(f"[bold red]error:[/] {escape(line)}")
        err.print(f"{len(media_problems)} media problem{'s' if len(media_problems) != 1 else ''} found.")
        raise typer.Exit(1)
    summary = f"OK: {count} job{'s' if count != 1 else ''}"
    if not no_media:
        summary += f", {total_s:.1f}s of audio in total"
    out.print(summary)


@presets_app.command("list")
def list_presets() -> None:
    """List the presets: bundled ones, overridden by the user presets directory."""
    presets = discover_presets()
    table = Table(title="Presets")
    for column in ("name", "emotion", "intensity", "pose", "transition", "source"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    broken = []
    for name in sorted(presets):
        preset = presets[name]
        if not preset.ok:
            broken.append(preset)
            table.add_row(name, "[red]invalid[/]", "", "", "", preset.source, escape(str(preset.path)))
            continue
        assert preset.spec is not None
        intensity = preset.intensity_value()
        transition = preset.transition_s
        table.add_row(
            name,
            escape(preset.emotion_text()),
            "1" if intensity is None else f"{intensity:g}",
            preset.spec.pose,
            "-" if transition is None else f"{transition:g}s",
            preset.source,
            escape(preset.description),
        )
    _out().print(table)
    err = _err()
    for preset in broken:
        for problem in preset.problems:
            err.print(f"[yellow]warning:[/] {escape(problem.format())}")


@presets_app.command("show")
def show_preset(name: str = typer.Argument(..., help="Preset name (see `edtalk presets list`).")) -> None:
    """Print a preset's YAML."""
    presets = discover_presets()
    preset = presets.get(name)
    if preset is None:
        guess = did_you_mean(name, presets)
        err = _err()
        err.print(f"[bold red]error:[/] unknown preset {escape(repr(name))}")
        hint = f"did you mean '{guess}'?" if guess else "run `edtalk presets list` to see the presets"
        err.print(f"  [yellow]hint:[/] {escape(hint)}")
        raise typer.Exit(1)
    typer.echo(f"# preset '{preset.name}' ({preset.source}): {preset.path}")
    typer.echo(preset.path.read_text(encoding="utf-8").rstrip("\n"))
    for problem in preset.problems:
        _err().print(f"[yellow]warning:[/] {escape(problem.format())}")
