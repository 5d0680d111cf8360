"""``edtalk schema``, ``edtalk validate`` and ``edtalk presets``: thin layer over edtalk_cli.manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edtalk_cli.commands.consoles import make_console
from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest.probe import MAX_FRAME_SIDE, MIN_SOURCE_SIDE

if TYPE_CHECKING:  # the manifest model (pydantic, YAML) loads when a command runs, not for --help
    from edtalk_cli.manifest import EmotionSpec, Job, PoseSpec

__all__ = ["presets_app", "schema", "validate"]

presets_app = typer.Typer(
    help="List and show emotion presets (bundled, and user presets from $EDTALK_PRESETS).",
    no_args_is_help=True,
    add_completion=False,
)


def _out() -> Console:
    return make_console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return make_console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def schema(
    indent: int = typer.Option(2, "--indent", min=0, help="JSON indentation (0: one line)."),
) -> None:
    """Print the JSON Schema of the manifest format (version 1)."""
    from edtalk_cli.manifest import manifest_json_schema

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


def _pose_text(pose: PoseSpec) -> str:
    return pose.kind if pose.path is None else f"{pose.kind} {pose.path.name} ({pose.mode})"


def _segment_table(job: Job, num_frames: int | None) -> Table:
    """The job's segments in time order: times, the output frames each covers, emotion and pose."""
    from edtalk_cli.pipeline.timeline import segment_frames

    table = Table(title=f"Segments of {escape(job.name)} (transition {job.transition:g}s)")
    for column in ("#", "start", "end", "frames"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("emotion", overflow="fold")
    table.add_column("pose", overflow="fold")
    for index, segment in enumerate(job.segments):
        end = "end" if segment.end is None else f"{segment.end:.3f}s"
        if num_frames is None:  # --no-media: frames from the times alone
            limit = 10**9 if segment.end is None else math.ceil(segment.end * job.fps) + 1
            first, stop = segment_frames(segment.start, segment.end, job.fps, limit)
            covered = f"{first}-" if segment.end is None else f"{first}-{stop - 1}"
        else:
            first, stop = segment_frames(segment.start, segment.end, job.fps, num_frames)
            covered = f"{first}-{stop - 1}" if stop > first else "none"
        table.add_row(
            str(index),
            f"{segment.start:.3f}s",
            end,
            covered,
            "(job's)" if segment.emotion is None else escape(_emotion_text(segment.emotion)),
            "(job's)" if segment.pose is None else escape(_pose_text(segment.pose)),
        )
    return table


def validate(
    manifests: list[Path] = typer.Argument(
        None, help="Manifest files or directories of manifests; - reads a manifest from stdin."
    ),
    jobs_jsonl: Path | None = typer.Option(
        None, "--jobs-jsonl", help="As for render: one job per line (JSON Lines; - for stdin)."
    ),
    no_media: bool = typer.Option(
        False,
        "--no-media",
        help="Only check the manifest and that files exist (no decoding, no face detection).",
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights directory the render will use (overrides manifests)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="auto, edtalk, lip_pose or demo (overrides manifests), as for render."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="As for render: existing outputs without a sidecar may be replaced."
    ),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="As for render: allow outputs outside the folder of their manifest."
    ),
    max_frame_size: int = typer.Option(
        MAX_FRAME_SIDE, "--max-frame-size", min=MIN_SOURCE_SIDE, help="Largest input image/video side in px."
    ),
) -> None:
    """Check manifests without rendering: every problem at once, then a table of the jobs.

    Emotions are checked against the weights the render will use (--weights, else each job's
    'weights', $EDTALK_WEIGHTS or the cache): names the model lacks, or any emotion with lip+pose.
    """
    from edtalk_cli import api
    from edtalk_cli.manifest import ManifestValidationError
    from edtalk_cli.manifest.yaml_marks import display_path

    out, err = _out(), _err()
    try:  # keeps manifest problems, so that the jobs that resolved are checked in the same run
        validation = api.check(
            manifests or None,
            jobs_jsonl=jobs_jsonl,
            media=not no_media,
            weights=weights,
            model=model,
            allow_outside=allow_outside,
            overwrite=overwrite,
            max_frame_size=max_frame_size,
        )
    except ManifestError as exc:
        lines = (
            [p.format() for p in exc.problems] if isinstance(exc, ManifestValidationError) else [exc.message]
        )
        for line in lines:
            err.print(f"[bold red]error:[/] {escape(line)}")
        err.print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was rendered.")
        raise typer.Exit(ManifestError.exit_code) from None
    loaded = validation.jobs.manifests
    results = validation.results

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
    problems = validation.problems
    total_s = 0.0
    segment_tables: list[Table] = []
    for result in results:
        job = result.job
        duration, frames = "-", "-"
        if result.audio_s is not None:
            duration = f"{result.audio_s:.2f}s"
            total_s += result.audio_s
        if result.num_frames is not None:
            frames = f"{result.num_frames} @ {job.fps:g}"
        table.add_row(
            *([display_path(job.manifest)] if several else []),
            job.name,
            f"{job.source.path.name} ({job.source.kind})",
            job.audio.name,
            duration,
            frames,
            _job_emotion(job),
            display_path(job.output),
        )
        if job.segments:
            segment_tables.append(_segment_table(job, result.num_frames))
    if results:
        out.print(table)
        for segment_table in segment_tables:
            out.print(segment_table)
    if problems:
        for problem in problems:
            err.print(f"[bold red]error:[/] {escape(problem.format())}")
        err.print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; nothing was rendered.")
        raise typer.Exit(ManifestError.exit_code)
    count = len(results)
    summary = f"OK: {count} job{'s' if count != 1 else ''}"
    if not no_media:
        summary += f", {total_s:.1f}s of audio in total"
    out.print(summary)


@presets_app.command("list")
def list_presets() -> None:
    """List the presets: bundled ones, overridden by the user presets directory."""
    from edtalk_cli.manifest import discover_presets

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
    from edtalk_cli.manifest import discover_presets
    from edtalk_cli.manifest.problems import did_you_mean

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
