"""What a run reports per job: :class:`JobOutcome` rows, their statuses and the event callback type.

Free of torch, so reports, the API's types and ``--dry-run`` load without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edtalk_cli.manifest.model import Job
from edtalk_cli.runner.fingerprint import Fingerprint

if TYPE_CHECKING:
    from edtalk_cli.runner.worker import TaskResult

__all__ = ["STATUSES", "EventFn", "JobOutcome", "job_outcome", "outcome_from_result", "sum_cache"]

STATUSES = ("done", "skipped", "failed", "cancelled")

EventFn = Callable[[str, dict], None]  # (event name, payload)


@dataclass
class JobOutcome:
    """One line of the batch report."""

    name: str
    manifest: str
    status: str  # done, skipped, failed or cancelled
    output: str
    device: str = ""
    frames: int = 0
    wall_s: float = 0.0
    frames_per_s: float = 0.0
    error: str | None = None
    notes: list[str] | None = None
    frames_without_face: int = 0  # dubbing: frames passed through unchanged because no face was found
    encoder: str | None = None  # the ffmpeg video encoder that wrote the mp4 (libx264, h264_nvenc, ...)
    attempts: int = 0
    worker: str | None = None
    batch_size: int | None = None
    threads: int | None = None  # torch CPU threads of the worker that rendered it
    chunks: int = 0
    fingerprint: str | None = None
    inputs: dict[str, dict[str, str]] | None = None  # role -> {"path", "sha256"}
    cache: dict[str, dict[str, int]] | None = None  # {"hits": {kind: n}, "misses": {...}}

    def to_dict(self) -> dict:
        return asdict(self)


def job_outcome(job: Job, fingerprint: Fingerprint | None, status: str, **fields: Any) -> JobOutcome:
    """The outcome row of ``job`` with ``status``; speed and the fingerprint's digest and inputs filled in."""
    outcome = JobOutcome(job.name, str(job.manifest), status, str(job.output), **fields)
    if outcome.frames and outcome.wall_s > 0:
        outcome.frames_per_s = outcome.frames / outcome.wall_s
    if fingerprint is not None:
        outcome.fingerprint = outcome.fingerprint or fingerprint.digest
        outcome.inputs = fingerprint.inputs
    return outcome


def outcome_from_result(
    job: Job, fingerprint: Fingerprint | None, result: TaskResult, status: str
) -> JobOutcome:
    """The outcome row of ``job`` from a worker's :class:`~edtalk_cli.runner.worker.TaskResult`."""
    outcome = job_outcome(
        job,
        fingerprint,
        status,
        device=result.device or "",
        frames=result.frames,
        wall_s=result.wall_s,
        error=result.error,
        notes=result.notes or None,
    )
    outcome.attempts = result.attempts
    outcome.frames_without_face = result.frames_without_face
    outcome.encoder = result.encoder
    outcome.worker = result.worker
    outcome.batch_size = result.batch_size
    outcome.threads = result.threads
    outcome.cache = result.cache
    if result.fingerprint:
        outcome.fingerprint = result.fingerprint
    return outcome


def sum_cache(items: list[dict | None]) -> dict[str, dict[str, int]] | None:
    """Cache hits and misses of several results (chunks) added up; None when none used the cache."""
    total: dict[str, dict[str, int]] = {"hits": {}, "misses": {}}
    seen = False
    for item in items:
        if not item:
            continue
        seen = True
        for side in ("hits", "misses"):
            for kind, n in item.get(side, {}).items():
                total[side][kind] = total[side].get(kind, 0) + n
    return total if seen else None
