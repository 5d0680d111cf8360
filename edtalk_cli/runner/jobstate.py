"""The scheduler's bookkeeping for one job (:class:`JobState`: lock, fingerprint, chunks, progress)
and the files a run leaves behind (partial outputs of killed writers, temporary run folders)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edtalk_cli.manifest.model import Job
from edtalk_cli.runner.chunks import remove_partial_blocks
from edtalk_cli.runner.fingerprint import Fingerprint
from edtalk_cli.runner.locks import OutputLock
from edtalk_cli.runner.outcomes import JobOutcome

if TYPE_CHECKING:
    from edtalk_cli.runner.worker import TaskResult

__all__ = ["JobState", "clean_partials", "file_version", "remove_dead_run_dirs"]


@dataclass
class JobState:
    """The parent's bookkeeping for one job."""

    job: Job
    key: str
    lock: OutputLock
    fingerprint: Fingerprint | None = None
    outcome: JobOutcome | None = None
    locked_by: str | None = None
    crashes: int = 0
    announced: bool = False
    inflight: set = field(default_factory=set)  # chunk ids (None for a whole job) handed out
    started: float | None = None
    # chunked jobs
    num_frames: int | None = None
    ranges: list[tuple[int, int]] | None = None
    chunk_results: dict[int, TaskResult] = field(default_factory=dict)
    chunk_error: str | None = None
    dispatch_done: bool = False
    progress: dict = field(default_factory=dict)  # chunk id -> frames done
    joining: bool = False
    sidecar_before: tuple[int, int, int] | None = None  # the sidecar when the run began (--force)

    def all_chunks_done(self) -> bool:
        """True when the job is chunked and every chunk rendered."""
        return self.ranges is not None and all(
            i in self.chunk_results and self.chunk_results[i].status == "done"
            for i in range(len(self.ranges))
        )


def file_version(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of ``path``, None if absent: tells a file rewritten since."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def clean_partials(output: Path) -> list[Path]:
    """Delete what killed writers leave next to ``output`` (call only while holding its lock)."""
    removed = []
    name = glob.escape(output.name)
    for pattern in (f".{name}.*.part.mp4", f".{name}.edtalk.json.*.tmp"):
        for path in output.parent.glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    remove_partial_blocks(output)
    return removed


def remove_dead_run_dirs() -> None:
    """Delete the temporary folders (events, slots) of killed runs on this host."""
    from edtalk_cli.runner.locks import pid_alive

    for folder in Path(tempfile.gettempdir()).glob("edtalk-*-*"):
        parts = folder.name.split("-")
        dead = len(parts) >= 3 and parts[1] in ("run", "slots") and parts[2].isdigit()
        if dead and not pid_alive(int(parts[2])):
            shutil.rmtree(folder, ignore_errors=True)
