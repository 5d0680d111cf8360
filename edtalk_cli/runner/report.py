"""Batch reports: ``report.json`` (everything) and an optional flat CSV."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edtalk_cli import __version__
from edtalk_cli.atomic import TempFile, atomic_write, write_json_atomic
from edtalk_cli.errors import UsageError, os_error_text
from edtalk_cli.runner.outcomes import STATUSES, JobOutcome

CSV_COLUMNS = (
    "name",
    "manifest",
    "status",
    "error",
    "device",
    "worker",
    "frames",
    "frames_without_face",
    "wall_s",
    "frames_per_s",
    "attempts",
    "batch_size",
    "threads",
    "chunks",
    "output",
    "fingerprint",
    "inputs",
)


def check_report_path(path: Path, option: str = "--report") -> None:
    """Raise :class:`UsageError` (exit 2) unless a report can be written at ``path`` (checked before rendering).

    Creates the missing folders and a temporary file beside ``path`` (deleted at once), which is
    exactly what writing the report will need.
    """
    fix = f"pass a writable file path to {option}"
    if path.is_dir():
        raise UsageError(f"{option} '{path}' is a folder", hint=f"{fix}, e.g. '{path / 'report.json'}'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        TempFile(path).discard()
    except OSError as exc:
        raise UsageError(f"{option}: cannot write '{path}': {os_error_text(exc)}", hint=fix) from None


def report_data(outcomes: Sequence[JobOutcome], **meta: Any) -> dict[str, Any]:
    """The JSON report: tool, host, time, counts per status, run settings (``meta``) and every job."""
    return {
        "tool": f"edtalk {__version__}",
        "host": socket.gethostname(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": {status: sum(o.status == status for o in outcomes) for status in STATUSES},
        **meta,
        "jobs": [o.to_dict() for o in outcomes],
    }


def write_report_json(path: Path, outcomes: Sequence[JobOutcome], **meta: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, report_data(outcomes, **meta))
    return path


def _inputs_cell(inputs: dict[str, dict[str, str]] | None) -> str:
    return ";".join(f"{role}={item['sha256']}" for role, item in (inputs or {}).items())


def write_report_csv(path: Path, outcomes: Sequence[JobOutcome]) -> Path:
    """One row per job; ``inputs`` is ``role=sha256;...``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for o in outcomes:
        row = {k: v for k, v in o.to_dict().items() if k in CSV_COLUMNS}
        row["inputs"] = _inputs_cell(o.inputs)
        row["wall_s"] = f"{o.wall_s:.3f}"
        row["frames_per_s"] = f"{o.frames_per_s:.2f}"
        writer.writerow(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())
    return path
