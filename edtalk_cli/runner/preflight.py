"""Checks before a batch renders: what would make one job fail or destroy a file the user has.

A job refused here fails alone (its outcome names the manifest line and the fix); the other jobs
render. ``edtalk validate`` runs the same checks and lists every problem of every job at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from edtalk_cli.manifest.loader import ManifestCheck
from edtalk_cli.manifest.model import Job
from edtalk_cli.manifest.probe import MAX_FRAME_SIDE, probe_job
from edtalk_cli.manifest.problems import Problem
from edtalk_cli.runner.fingerprint import sidecar_path

__all__ = ["JobCheck", "check_job", "check_jobs", "output_problems_on_disk", "refused_outcome"]


@dataclass
class JobCheck:
    """The preflight of one job: its problems and the audio duration the header gave."""

    job: Job
    problems: list[Problem] = field(default_factory=list)
    audio_s: float | None = None
    num_frames: int | None = None  # output frames (known when the media were decoded)


def output_problems_on_disk(job: Job, *, overwrite: bool = False) -> list[Problem]:
    """An existing output that edtalk did not write (no ``<output>.edtalk.json``) is never replaced
    unless ``overwrite``; a folder at the output path is refused always."""
    origin = dict(job.origins).get("output") or job.origin_of("name")
    output = job.output
    if output.is_dir():
        return [
            Problem.at(
                origin, f"job {job.name!r}: output {output} is a folder", "Remove it or change the output"
            )
        ]
    if output.exists() and not overwrite and not sidecar_path(output).is_file():
        return [
            Problem.at(
                origin,
                f"job {job.name!r}: output {output} already exists and was not written by edtalk "
                f"(no {sidecar_path(output).name})",
                "Move it away, change the output, or pass --overwrite to replace it",
            )
        ]
    return []


def check_job(
    job: Job,
    known: Sequence[Problem] = (),
    *,
    overwrite: bool = False,
    max_frame_side: int = MAX_FRAME_SIDE,
) -> JobCheck:
    """Every problem of ``job`` found without decoding: ``known`` ones (missing files, from the
    loader), frame sizes, audio header, segment times, and an output it must not replace."""
    probe = probe_job(job, max_frame_side=max_frame_side)
    problems = [*known, *probe.problems, *output_problems_on_disk(job, overwrite=overwrite)]
    return JobCheck(job, problems, probe.audio_s)


def refused_outcome(job: Job, problems: Sequence[Problem]):  # -> JobOutcome
    """The ``failed`` outcome of a job refused before rendering."""
    from edtalk_cli.runner.outcomes import JobOutcome

    error = "; ".join(p.format() for p in problems)
    return JobOutcome(job.name, str(job.manifest), "failed", str(job.output), error=error)


def check_jobs(
    check: ManifestCheck,
    *,
    media: bool = True,
    overwrite: bool = False,
    max_frame_side: int = MAX_FRAME_SIDE,
) -> list[JobCheck]:
    """:func:`check_job` on every job of ``check``; with ``media``, the jobs that pass are also
    decoded and their source's face detected (``edtalk validate``)."""
    from edtalk_cli.manifest.media import inspect_media

    results = []
    for manifest in check.manifests:
        for job in manifest.jobs:
            result = check_job(
                job, check.problems_of(job), overwrite=overwrite, max_frame_side=max_frame_side
            )
            if media and not result.problems:
                report = inspect_media(job)
                result.problems.extend(report.located)
                result.audio_s = report.duration_s if report.duration_s is not None else result.audio_s
                result.num_frames = report.num_frames
            results.append(result)
    return results
