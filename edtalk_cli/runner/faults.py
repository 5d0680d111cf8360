"""Fault injection for testing the batch runner's recovery paths (off unless ``$EDTALK_FAULTS`` is set).

``EDTALK_FAULTS="job_a:OSError:1;job_b:OOM:2:4"`` makes job ``job_a`` raise an OSError on its first
attempt and job ``job_b`` raise a CUDA out-of-memory error on its first two attempts, each after
``after`` frames (default 2). Kinds: ``OSError``, ``RuntimeError`` (transient), ``OOM``,
``MediaError`` (a user error: never retried), ``EXIT`` (the worker process dies).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from edtalk_cli.errors import MediaError

FAULTS_ENV = "EDTALK_FAULTS"


@dataclass(frozen=True)
class Fault:
    job: str
    kind: str
    attempts: int
    after: int = 2


def parse_faults(text: str | None = None) -> dict[str, Fault]:
    text = os.environ.get(FAULTS_ENV, "") if text is None else text
    faults: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fields = item.split(":")
        job, kind, attempts = fields[0], fields[1], int(fields[2]) if len(fields) > 2 else 1
        after = int(fields[3]) if len(fields) > 3 else 2
        faults[job] = Fault(job, kind, attempts, after)
    return faults


def maybe_fail(job: str, attempt: int, frames_done: int) -> None:
    """Raise the fault configured for ``job`` on this attempt once ``frames_done`` frames are out."""
    fault = parse_faults().get(job)
    if fault is None or attempt > fault.attempts or frames_done != fault.after:
        return
    message = f"injected fault for job {job!r}, attempt {attempt}"
    if fault.kind == "OSError":
        raise OSError(message)
    if fault.kind == "RuntimeError":
        raise RuntimeError(message)
    if fault.kind == "OOM":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({message})")
    if fault.kind == "MediaError":
        raise MediaError(message)
    if fault.kind == "EXIT":
        os._exit(70)
    raise ValueError(f"{FAULTS_ENV}: unknown fault kind {fault.kind!r}")
