"""Fault injection for testing the batch runner's recovery paths (off unless ``$EDTALK_FAULTS`` is set).

``EDTALK_FAULTS="job_a:OSError:1;job_b:OOM:2:4"`` makes job ``job_a`` raise an OSError on its first
attempt and job ``job_b`` raise a CUDA out-of-memory error on its first two attempts, each after
``after`` frames (default 2). Kinds: ``OSError``, ``RuntimeError`` (transient), ``OOM``,
``MediaError`` (a user error: never retried), ``EXIT`` (the worker process dies), ``STALL`` (the
worker pauses for ``seconds``, default ``STALL_S``, waking early when its parent process dies, so
that a test can kill a batch at a known point whatever the machine's speed): for example
``EDTALK_FAULTS="job_c:STALL:1:4:2.5"`` pauses job ``job_c`` for 2.5 s after its 4th frame.
``PUBLISHED`` kills the worker process right after the job's mp4 was renamed into place (not at
a frame), ``CACHE_FULL`` makes every write of the content cache fail as on a full disk while the
job renders.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from edtalk_cli.errors import MediaError

FAULTS_ENV = "EDTALK_FAULTS"
STALL_S = 60.0
STAGE_KINDS = ("PUBLISHED", "CACHE_FULL")  # faults tied to a step of the job, not to a frame count


@dataclass(frozen=True)
class Fault:
    job: str
    kind: str
    attempts: int
    after: int = 2
    seconds: float = STALL_S


def parse_faults(text: str | None = None) -> dict[str, Fault]:
    text = os.environ.get(FAULTS_ENV, "") if text is None else text
    faults: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fields = item.split(":")
        job, kind, attempts = fields[0], fields[1], int(fields[2]) if len(fields) > 2 else 1
        after = int(fields[3]) if len(fields) > 3 else 2
        seconds = float(fields[4]) if len(fields) > 4 else STALL_S
        faults[job] = Fault(job, kind, attempts, after, seconds)
    return faults


def due(job: str, attempt: int, frames_done: int) -> Fault | None:
    """The fault configured for ``job`` that fires on this attempt at ``frames_done`` frames, if any."""
    fault = parse_faults().get(job)
    if fault is None or fault.kind in STAGE_KINDS or attempt > fault.attempts or frames_done != fault.after:
        return None
    return fault


def at_stage(job: str, attempt: int, kind: str) -> bool:
    """True when ``$EDTALK_FAULTS`` asks for the stage fault ``kind`` in ``job`` on this attempt."""
    fault = parse_faults().get(job)
    return fault is not None and fault.kind == kind and attempt <= fault.attempts


def exit_worker() -> None:
    """Die at once, as a killed process would (no cleanup, no result)."""
    os._exit(70)


def _stall(seconds: float) -> None:
    parent = os.getppid()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.05)


def trigger(fault: Fault, attempt: int) -> None:
    """Carry out a fault returned by :func:`due` on ``attempt``: raise its error, exit, or stall."""
    if fault.kind == "STALL":
        _stall(fault.seconds)
        return
    message = f"injected fault for job {fault.job!r}, attempt {attempt}"
    if fault.kind == "OSError":
        raise OSError(message)
    if fault.kind == "RuntimeError":
        raise RuntimeError(message)
    if fault.kind == "OOM":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({message})")
    if fault.kind == "MediaError":
        raise MediaError(message)
    if fault.kind == "EXIT":
        exit_worker()
    raise ValueError(f"{FAULTS_ENV}: unknown fault kind {fault.kind!r}")
