"""What runs inside a worker process (loky, dask, or the main process for one worker).

A worker claims one device slot for its lifetime (see devices.py) and keeps its loaded models in
a module-level cache keyed by (weights, model, device, precision), so a worker loads each model
once however many jobs it renders. :func:`run_task` renders one job (or one chunk of one) with
retries, writes the sidecar right after the mp4 is in place, and returns a plain dict.

Events (task start, model loads, progress, retries) are appended as JSON lines to the run's
event file when the worker can reach it (the parent tails it for live progress); the important
ones also travel back in the result, so nothing is lost on a remote cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.model import Job
from edtalk_cli.runner import faults
from edtalk_cli.runner.devices import SlotClaim, claim_slot, resolve_device, threads_per_worker
from edtalk_cli.runner.fingerprint import Fingerprint, weights_identity, write_sidecar

_PROGRESS_EVERY_S = 0.25
_OWNER_CHECK_S = 0.5


@dataclass(frozen=True)
class WorkerConfig:
    """Settings shared by every task of a run."""

    run: str
    slots: tuple[str, ...]  # device per slot; "auto" is resolved on the worker's host
    precision: str = "fp32"
    batch_size: int = 8
    weights: str | None = None
    model: str | None = None
    retries: int = 0
    cache_root: str | None = None  # content cache (None: off)
    digest_root: str | None = None  # persistent file-hash cache (None: memory only)
    events: str | None = None  # JSON-lines event file of the run
    owner: tuple[str, int] | None = None  # (host, pid) of the parent: stop when it is gone
    set_threads: bool = True  # split the host's cores between the slots (not for inline runs)
    threads: int | None = None  # explicit CPU threads per worker (edtalk render --threads)


@dataclass(frozen=True)
class Task:
    """One job, or one chunk ``frame_range`` of it written to ``chunk_file``."""

    key: str  # the job's output path: unique within a run
    job: Job
    fingerprint: Fingerprint
    chunk: int | None = None
    frame_range: tuple[int, int] | None = None
    chunk_file: str | None = None
    attempt: int = 0  # attempts already spent by the parent (worker crashes)


class OwnerGone(BaseException):
    """The process that started the run died: abort (BaseException, so nothing retries it)."""


# ----- per-process state --------------------------------------------------------------------
_claim: SlotClaim | None = None
_renderers: dict[tuple[str, str, str, str], Any] = {}  # (weights, model, device, precision) -> JobRenderer
_weights: dict[tuple[str, str, str, str], dict[str, Any]] = {}
_hashers: dict[str | None, Any] = {}
_caches: dict[str, Any] = {}


def _host() -> str:
    return socket.gethostname()


def _slot(config: WorkerConfig) -> SlotClaim:
    global _claim
    if _claim is None or _claim.run != config.run:
        if _claim is not None:
            _claim.release()
        _claim = claim_slot(config.run, list(config.slots))
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        elif config.set_threads:
            torch.set_num_threads(threads_per_worker(list(config.slots)))
    return _claim


def _hasher(config: WorkerConfig):
    from edtalk_cli.runner.hashing import FileHasher

    if config.digest_root not in _hashers:
        _hashers[config.digest_root] = FileHasher(config.digest_root)
    return _hashers[config.digest_root]


def _cache(config: WorkerConfig):
    if config.cache_root is None:
        return None
    if config.cache_root not in _caches:
        from edtalk_cli.runner.cache import ContentCache

        _caches[config.cache_root] = ContentCache(config.cache_root, _hasher(config))
    return _caches[config.cache_root]


class _Events:
    """Emits worker events to the run's event file and keeps the non-progress ones for the result."""

    def __init__(self, path: str | None, task: Task) -> None:
        self.task = task
        self.kept: list[dict[str, Any]] = []
        self._fd: int | None = None
        if path is not None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except OSError:  # another host: results still carry the events
                self._fd = None

    def emit(self, event: str, payload: dict[str, Any], *, keep: bool = True) -> None:
        record = {
            "event": event,
            "id": uuid.uuid4().hex,
            "key": self.task.key,
            "job": self.task.job.name,
            "chunk": self.task.chunk,
            "pid": os.getpid(),
            "host": _host(),
            **payload,
        }
        if keep:
            self.kept.append(record)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _renderer(config: WorkerConfig, job: Job, device: str, events: _Events):
    """The cached JobRenderer for this job's model on ``device`` (loaded on first use)."""
    from edtalk_cli.pipeline.models import load_bundle
    from edtalk_cli.pipeline.render import JobRenderer

    weights = config.weights or (str(job.weights) if job.weights is not None else None)
    model = config.model or job.model
    key = (str(weights), model, device, config.precision)
    if key not in _renderers:
        started = time.perf_counter()
        bundle = load_bundle(weights, model, device=device)
        renderer = JobRenderer(
            bundle, device=device, precision=config.precision, batch_size=config.batch_size
        )
        root = bundle.files[0].parent / "predefined_exp_weights"
        emotions = sorted(root.glob("*.npy")) if root.is_dir() else []
        _weights[key] = weights_identity(bundle.kind, bundle.files, emotions, _hasher(config))
        _renderers[key] = renderer
        events.emit(
            "model_loaded",
            {
                "description": bundle.description,
                "demo": bundle.is_demo,
                "device": device,
                "identity": bundle.identity,
                "load_s": round(time.perf_counter() - started, 3),
            },
        )
    renderer = _renderers[key]
    renderer.cache = _cache(config)
    return renderer, _weights[key]


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, EdtalkError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError | RuntimeError) and not isinstance(exc, EdtalkError)


def run_task(config: WorkerConfig, task: Task) -> dict[str, Any]:
    """Render ``task`` in this process; never raises for job errors (they are in the result)."""
    from edtalk_cli.runner.chunks import write_chunk

    started = time.perf_counter()
    events = _Events(config.events, task)
    result: dict[str, Any] = {
        "key": task.key,
        "chunk": task.chunk,
        "status": "failed",
        "error": None,
        "frames": 0,
        "device": None,
        "worker": f"{_host()}:{os.getpid()}",
        "attempts": 0,
        "batch_size": None,
        "threads": None,
        "notes": [],
        "cache": None,
    }
    try:
        claim = _slot(config)
        device = resolve_device(claim.device)
        result["device"] = device
        result["threads"] = torch.get_num_threads()
        events.emit("task_start", {"device": device, "slot": claim.index, "shared_slot": claim.shared})
        renderer, weights = _renderer(config, task.job, device, events)
    except Exception as exc:  # bad device, missing/corrupt weights: the job fails, the worker lives on
        result["error"] = _error_text(exc)
        result["traceback"] = traceback.format_exc(limit=8)
        result["events"] = events.kept
        result["wall_s"] = time.perf_counter() - started
        events.close()
        return result

    fingerprint = task.fingerprint.with_weights(weights)
    if fingerprint.digest != task.fingerprint.digest:
        result["notes"].append("the worker resolved different model files than the planner")
    cache = renderer.cache
    before = cache.stats.snapshot() if cache is not None else None
    job = task.job
    batch = job.batch_size or config.batch_size
    owner = config.owner if config.owner is not None and config.owner[0] == _host() else None
    attempt = task.attempt
    tries = retried = 0
    while True:
        attempt += 1
        tries += 1
        result["attempts"] = attempt
        renderer.engine.batch_size = batch
        result["batch_size"] = batch
        state = {"last": 0.0, "owner": time.monotonic()}

        def progress(done: int, total: int, _run: int = task.attempt + tries, _state: dict = state) -> None:
            fault = faults.due(job.name, _run, done)  # None unless $EDTALK_FAULTS names this job
            now = time.monotonic()
            if owner is not None and now - _state["owner"] > _OWNER_CHECK_S:
                _state["owner"] = now
                from edtalk_cli.runner.locks import pid_alive

                if not pid_alive(owner[1]):
                    raise OwnerGone()
            if done == total or fault is not None or now - _state["last"] >= _PROGRESS_EVERY_S:
                _state["last"] = now
                events.emit("progress", {"done": done, "total": total}, keep=False)
            if fault is not None:
                faults.trigger(fault, _run)

        try:
            if task.frame_range is None:
                rendered = renderer.render(job, progress)
                write_sidecar(
                    job.output,
                    fingerprint,
                    _hasher(config),
                    frames=rendered.frames,
                    fps=job.fps,
                    duration_s=rendered.duration_s,
                    device=device,
                    worker=result["worker"],
                    wall_s=round(time.perf_counter() - started, 3),
                    notes=rendered.notes,
                )
                result["frames"] = rendered.frames
                result["notes"].extend(rendered.notes)
                result["duration_s"] = rendered.duration_s
            else:
                frames, count, notes, _ = renderer.frames(job, task.frame_range)
                assert task.chunk_file is not None
                write_chunk(frames, Path(task.chunk_file), count, lambda k, n=count: progress(k, n))
                result["frames"] = count
                result["notes"].extend(notes)
            result["status"] = "done"
            break
        except OwnerGone:
            events.close()
            os._exit(0)  # the run is over; nothing is waiting for this result
        except Exception as exc:
            error = _error_text(exc)
            if _is_oom(exc) and batch > 1:
                batch = max(1, batch // 2)
                attempt -= 1  # halving the batch is not a retry
                result["notes"].append(f"CUDA out of memory: batch size halved to {batch}")
                events.emit("batch_halved", {"batch_size": batch, "error": error})
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            if _is_transient(exc) and not _is_oom(exc) and retried < config.retries:
                retried += 1
                events.emit("retry", {"attempt": attempt, "error": error})
                time.sleep(min(0.2 * 2**retried, 5.0))
                continue
            result["error"] = error
            result["error_kind"] = "user" if isinstance(exc, EdtalkError) else type(exc).__name__
            result["traceback"] = traceback.format_exc(limit=8)
            break

    if cache is not None and before is not None:
        after = cache.stats.snapshot()
        result["cache"] = {
            side: {
                k: v - before[side].get(k, 0) for k, v in after[side].items() if v - before[side].get(k, 0)
            }
            for side in ("hits", "misses")
        }
    result["fingerprint"] = fingerprint.digest
    result["weights"] = weights
    result["wall_s"] = time.perf_counter() - started
    result["events"] = events.kept
    events.close()
    return result
