"""The scheduler's bookkeeping for one job (:class:`JobState`: lock, fingerprint, chunks, progress)
and the files a run leaves behind (partial outputs of killed writers, temporary run folders).

A chunked job (longer than ``chunk_frames``) is planned by :func:`plan_job_chunks` (its frame
count, batch-aligned ranges and the blocks an interrupted run left), handed out as
:meth:`JobState.chunk_tasks`, followed chunk by chunk (:meth:`JobState.record_chunk`,
:meth:`JobState.chunk_failure`, :meth:`JobState.take_join`) and encoded by
:func:`join_chunked_job`. The scheduler calls the :class:`JobState` methods holding its mutex and
the two functions (file work) without it.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edtalk_cli.errors import EdtalkError, error_text
from edtalk_cli.hashing import FileHasher
from edtalk_cli.manifest.model import Job
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.runner.chunks import (
    chunk_dir,
    chunk_path,
    join_chunks,
    plan_chunks,
    prepare_chunk_dir,
    remove_chunks,
    remove_partial_blocks,
)
from edtalk_cli.runner.fingerprint import Fingerprint, write_sidecar
from edtalk_cli.runner.locks import OutputLock
from edtalk_cli.runner.outcomes import JobOutcome, job_outcome, sum_cache

if TYPE_CHECKING:
    from edtalk_cli.runner.worker import Task, TaskResult

__all__ = [
    "ChunkPlan",
    "JobState",
    "clean_partials",
    "file_version",
    "join_chunked_job",
    "plan_job_chunks",
    "remove_dead_run_dirs",
]

ChunkPlan = tuple[list[tuple[int, int]], list[bool]]  # [start, stop) ranges; per chunk: block on disk


@dataclass
class JobState:
    """The parent's bookkeeping for one job."""

    job: Job
    key: str
    lock: OutputLock
    options: RenderOptions  # the job's render options, resolved once (RunOptions.render_options)
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

    def chunk_tasks(self, plan: ChunkPlan) -> list[Task]:
        """Start the chunked render of ``plan``: blocks already on disk count as done (resumed), the
        tasks of the others are returned."""
        from edtalk_cli.runner.worker import Task, TaskResult

        assert self.fingerprint is not None
        ranges, done = plan
        self.ranges = ranges
        self.chunk_error = None
        self.dispatch_done = False
        self.progress = {}
        for index, finished in enumerate(done):
            if finished:
                frames = ranges[index][1] - ranges[index][0]
                self.chunk_results.setdefault(index, TaskResult.resumed_chunk(self.key, index, frames))
                self.progress[index] = frames
        folder = chunk_dir(self.job.output)
        return [
            Task(
                self.key,
                self.job,
                self.fingerprint,
                self.options,
                chunk=index,
                frame_range=(start, stop),
                chunk_file=str(chunk_path(folder, index)),
                attempt=self.crashes,
            )
            for index, (start, stop) in enumerate(ranges)
            if not done[index]
        ]

    def record_chunk(self, result: TaskResult) -> None:
        """Keep a chunk's result; the first failed chunk becomes the job's error."""
        assert result.chunk is not None
        chunk = result.chunk
        self.chunk_results[chunk] = result
        if result.status != "done" and self.chunk_error is None:
            start, stop = (self.ranges or [(0, 0)] * (chunk + 1))[chunk]
            self.chunk_error = f"chunk {chunk} (frames {start}-{stop - 1}): {result.error}"

    def chunk_failure(self) -> JobOutcome | None:
        """The failed outcome of a chunked job once a chunk failed, every chunk was handed out and
        none is in flight; None while it can still go on."""
        if self.outcome is not None or self.chunk_error is None or not self.dispatch_done or self.inflight:
            return None
        results = [r for r in self.chunk_results.values() if not r.resumed]
        outcome = job_outcome(self.job, self.fingerprint, "failed", error=self.chunk_error)
        outcome.attempts = max((r.attempts for r in results), default=0)
        outcome.chunks = len(self.ranges or [])
        return outcome

    def take_join(self) -> bool:
        """True (once) when every chunk is on disk and none is in flight: the caller joins them."""
        if (
            self.outcome is None
            and self.ranges
            and not self.inflight
            and not self.joining
            and self.all_chunks_done()
        ):
            self.joining = True
            return True
        return False


def plan_job_chunks(state: JobState, chunk_frames: int) -> ChunkPlan | None:
    """The chunks of ``state``'s job, its chunk folder prepared (blocks of an interrupted run for the
    same fingerprint kept); None when the job is short enough to render whole."""
    from edtalk_cli.audio import load_audio, num_video_frames

    job = state.job
    if state.num_frames is None:
        wav = load_audio(job.audio, fps=job.fps, allow_silence=job.mouth.kind == "video")
        state.num_frames = num_video_frames(wav.size, job.fps)
    batch = state.options.batch_size  # the batches the workers render: chunks start on them
    ranges = plan_chunks(state.num_frames, chunk_frames, batch)
    if len(ranges) < 2:
        return None
    assert state.fingerprint is not None
    return ranges, prepare_chunk_dir(job.output, state.fingerprint.digest, ranges, batch)


def join_chunked_job(state: JobState, hasher: FileHasher) -> JobOutcome:
    """Encode a chunked job's blocks into its mp4 with the sidecar, delete the blocks, and return the
    job's outcome (failed if the join failed)."""
    job = state.job
    assert state.ranges is not None and state.num_frames is not None and state.fingerprint is not None
    started = time.perf_counter()
    results = [state.chunk_results[i] for i in range(len(state.ranges))]
    rendered = [r for r in results if not r.resumed]
    weights = next((r.weights for r in rendered if r.weights), state.fingerprint.weights)
    fingerprint = state.fingerprint.with_weights(weights)
    devices = sorted({r.device for r in rendered if r.device})
    notes = sorted({n for r in rendered for n in r.notes})
    ranges = state.ranges

    def sidecar_first(tmp: Path, written: Any) -> None:
        write_sidecar(
            job.output,
            fingerprint,
            hasher,
            content=tmp,
            frames=written.frames,
            fps=job.fps,
            duration_s=written.duration_s,
            device=",".join(devices),
            encoder=written.encoder,
            worker="chunks: " + ", ".join(sorted({r.worker or "" for r in rendered})),
            wall_s=round(time.perf_counter() - (state.started or started), 3),
            notes=notes,
            chunks=[list(r) for r in ranges],
        )

    try:
        written = join_chunks(
            job.output,
            len(ranges),
            fps=job.fps,
            audio=job.audio,
            num_frames=state.num_frames,
            crf=job.encode.crf,
            preset=job.encode.preset,
            codec=job.encode.codec,
            cuda=any(d.startswith("cuda") for d in devices),  # the frames were rendered there
            before_publish=sidecar_first,
        )
        wall = time.perf_counter() - (state.started or started)
    except (EdtalkError, OSError, ValueError) as exc:
        remove_chunks(job.output)
        return job_outcome(
            job, state.fingerprint, "failed", error=f"joining the chunks failed: {error_text(exc)}"
        )
    remove_chunks(job.output)
    resumed = len(results) - len(rendered)
    outcome = job_outcome(
        job,
        state.fingerprint,
        "done",
        frames=written.frames,
        device=",".join(devices),
        wall_s=wall,
        notes=[*notes, f"rendered in {len(ranges)} chunks" + (f" ({resumed} resumed)" if resumed else "")],
    )
    outcome.attempts = max((r.attempts for r in rendered), default=0)
    outcome.worker = ", ".join(sorted({r.worker or "" for r in rendered}))
    outcome.chunks = len(ranges)
    outcome.encoder = written.encoder
    outcome.frames_without_face = sum(r.frames_without_face for r in results)
    outcome.fingerprint = fingerprint.digest
    outcome.cache = sum_cache([r.cache for r in rendered])
    return outcome


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
