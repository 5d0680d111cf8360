"""What runs inside a worker process (loky, dask, or the main process for one worker).

A worker claims one device slot for its lifetime (see devices.py) and keeps its loaded models in
a module-level cache keyed by (weights, model, device, precision, engine, export) and checked
against the model's content identity before every task, so a worker loads each model once
however many jobs it renders, and again after its files were edited in place. :func:`run_task`
renders one job (or one chunk of one) with the task's own
:class:`~edtalk_cli.pipeline.options.RenderOptions` (the cached renderer serves any batch size
without being changed) and retries, writes the sidecar of the finished mp4 just before renaming
it into place (so a kill between the two never loses a complete output), and returns a
:class:`TaskResult`.

A worker told the task it runs next (the inline backend knows it) prepares that task's job
while rendering the current one, once the current job's own inputs are ready (and a task's own
job while its model loads, :func:`_prepare_while_loading`): its audio
features and a photo source's crops or a video source's face track are computed in one background thread (:class:`Preparer`, at most one job ahead; the models stay in the
rendering thread). Pool workers (loky, dask) cannot know their next task: there the runner's
parent process prepares the tasks it hands out next (runner/lookahead.py) and each carries its
:class:`PreparedAhead`. Either way on CUDA devices, where the CPU is otherwise idle while the GPU
renders (:func:`slots_prepare_ahead`); ``$EDTALK_PREPARE_AHEAD`` (``1`` / ``0``) forces it on or off.

Events (task start, model loads, progress, retries) are appended as JSON lines to the run's
event file when the worker can reach it (the parent tails it for live progress); the important
ones also travel back in the result, so nothing is lost on a remote cluster.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import socket
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edtalk_cli.errors import EdtalkError, deterministic_os_error, error_text
from edtalk_cli.manifest.model import Job
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.runner import faults
from edtalk_cli.runner.devices import SlotClaim, claim_slot, resolve_device, threads_per_worker
from edtalk_cli.runner.fingerprint import Fingerprint, sidecar_path, write_sidecar

if TYPE_CHECKING:
    from edtalk_cli.pipeline.render import PreparedJob

_PROGRESS_EVERY_S = 0.25
_OWNER_CHECK_S = 0.5
PREPARE_AHEAD_ENV = "EDTALK_PREPARE_AHEAD"  # "1": prepare the next job ahead, "0": never, unset: on CUDA


@dataclass(frozen=True)
class WorkerConfig:
    """Settings shared by every task of a run (the render settings travel with each task)."""

    run: str
    slots: tuple[str, ...]  # device per slot; "auto" is resolved on the worker's host
    weights: str | None = None
    model: str | None = None
    retries: int = 0
    cache_root: str | None = None  # content cache (None: off)
    digest_root: str | None = None  # persistent file-hash cache (None: memory only)
    events: str | None = None  # JSON-lines event file of the run
    owner: tuple[str, int] | None = None  # (host, pid) of the parent: stop when it is gone
    set_threads: bool = True  # split the host's cores between the slots (not for inline runs)


@dataclass(frozen=True)
class PreparedAhead:
    """A job prepared before its task runs (:func:`prepare_counted`), pickled with the task from
    the runner's parent process for pool backends."""

    prepared: PreparedJob
    started: float  # wall-clock seconds
    ready: float
    cache_use: dict[str, dict[str, int]]  # content-cache hits and misses of this preparation
    cache_error: str | None = None  # a cache write of this preparation failed (warned by the task)


@dataclass(frozen=True)
class Task:
    """One job, or one chunk ``frame_range`` of it written to ``chunk_file``."""

    key: str  # the job's output path: unique within a run
    job: Job
    fingerprint: Fingerprint
    options: RenderOptions  # the job's, resolved once by the runner (RunOptions.render_options)
    chunk: int | None = None
    frame_range: tuple[int, int] | None = None
    chunk_file: str | None = None
    attempt: int = 0  # attempts already spent by the parent (worker crashes)
    prepared: PreparedAhead | None = None  # the job prepared by the runner's parent (pool backends)


@dataclass
class TaskResult:
    """What :func:`run_task` reports for one task (pickled back from a worker process)."""

    key: str  # the task's key: the job's output path
    chunk: int | None = None  # the chunk's index; None for a whole job
    status: str = "failed"  # "done" or "failed"
    error: str | None = None  # the one-line message of a failed task
    error_kind: str | None = None  # "user" for an EdtalkError, else the exception's class name
    traceback: str | None = None
    frames: int = 0
    frames_without_face: int = 0
    duration_s: float | None = None  # of the finished mp4 (whole jobs)
    encoder: str | None = None  # the ffmpeg video encoder that wrote the mp4 (whole jobs)
    device: str | None = None
    worker: str | None = None  # "host:pid"; None for a chunk kept from an earlier run
    attempts: int = 0
    batch_size: int | None = None
    threads: int | None = None
    notes: list[str] = field(default_factory=list)
    cache: dict[str, dict[str, int]] | None = None  # content-cache hits and misses of this task
    fingerprint: str | None = None  # digest with the weights the worker resolved
    weights: dict[str, Any] | None = None  # the model's content identity the worker resolved
    wall_s: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)  # the important events, kept
    resumed: bool = False  # a chunk finished by an earlier run, not rendered now

    @classmethod
    def resumed_chunk(cls, key: str, chunk: int, frames: int) -> TaskResult:
        """The result standing for chunk ``chunk`` (``frames`` long) left finished by an earlier run."""
        return cls(key, chunk, status="done", frames=frames, resumed=True)


class OwnerGone(BaseException):
    """The process that started the run died: abort (BaseException, so nothing retries it)."""


# ----- per-process state --------------------------------------------------------------------
_claim: SlotClaim | None = None
_renderers: dict[
    tuple[str, ...], Any
] = {}  # (weights, model, device, precision, engine, export) -> JobRenderer
_hashers: dict[str | None, Any] = {}
_caches: dict[str, Any] = {}
_cache_warned = False
_ahead: _Ahead | None = None  # the job being (or already) prepared for the next task
_preparer: Preparer | None = None


def _host() -> str:
    return socket.gethostname()


def _slot(config: WorkerConfig, threads: int | None) -> SlotClaim:
    """This process's device slot for the run, claimed (and its CPU threads set) on first use."""
    global _claim, _cache_warned
    if _claim is None or _claim.run != config.run:
        _cache_warned = False  # one cache warning per run and worker
        if _claim is not None:
            _claim.release()
        _claim = claim_slot(config.run, list(config.slots))
        if config.owner is None or config.owner[1] != os.getpid():
            _leave_ctrl_c_to_the_parent()
        if threads is not None:
            torch.set_num_threads(threads)
        elif config.set_threads:
            torch.set_num_threads(threads_per_worker(list(config.slots)))
    return _claim


def _leave_ctrl_c_to_the_parent() -> None:
    """In a worker process: ignore Ctrl-C, which a terminal sends to the whole process group.

    The parent stops the run (runner/signals.py) and then the workers; a worker raising its own
    KeyboardInterrupt would race with that and reach the parent as a task result instead.
    """
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: nothing to do
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _hasher(config: WorkerConfig):
    from edtalk_cli.hashing import FileHasher

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


def new_renderer(
    weights: str | None,
    model: str,
    device: str,
    *,
    options: RenderOptions,
    hasher: Any = None,
):
    """A JobRenderer with its model loaded (for the run's workers and for ``edtalk_cli.api.frames``).

    ``options`` fix how the model is evaluated and are the renderer's default render options.
    ``hasher``: the FileHasher for the model's content identity (default: the process's).
    """
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.weights.bundle import ModelBundle

    onnx = options.engine == "onnxruntime"
    # onnx: torch only holds the model
    bundle = ModelBundle.from_dir(weights, model, device="cpu" if onnx else device, hasher=hasher)
    return JobRenderer(bundle, device=device, options=options)


def _renderer(config: WorkerConfig, job: Job, options: RenderOptions, device: str, events: _Events):
    """The cached JobRenderer for this job's model on ``device`` evaluated as ``options`` say,
    and the model's content identity.

    Loaded on first use, and again when the files' content identity changed (edited in place).
    """
    from edtalk_cli.weights.bundle import ModelFiles

    weights, model = job.model_choice(config.weights, config.model)
    key = _renderer_key(config, job, options, device)
    cached = _renderers.get(key)
    if cached is not None:
        current = ModelFiles.from_dir(weights, model).content_identity(_hasher(config))
        if cached.bundle.content_identity != current:
            del _renderers[key]  # stale: its files changed since it was loaded
            cached = None
    if cached is None:
        started = time.perf_counter()
        renderer = new_renderer(
            weights,
            model,
            device,
            options=options,
            hasher=_hasher(config),
        )
        bundle = renderer.bundle
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
    return renderer, renderer.bundle.content_identity


# ----- preparing the next job ahead -----------------------------------------------------------
class Preparer:
    """One daemon thread running preparations in submission order (it never delays the exit),
    with its own face detector (:meth:`detector`: a detector serves one thread)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Future, Callable[[], Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._detector: Any = None

    def detector(self) -> Any:
        """The preparing thread's FaceDetector, made on first use (call it from that thread)."""
        if self._detector is None:
            from edtalk_cli.video import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    def submit(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._queue.put((future, fn))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="edtalk-prepare", daemon=True)
            self._thread.start()
        return future

    def _work(self) -> None:
        while True:
            future, fn = self._queue.get()
            if not future.set_running_or_notify_cancel():  # discarded before it started
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # prepare() keeps the job's errors: this is a bug, shown there
                future.set_exception(exc)


@dataclass
class _Ahead:
    """A task's job prepared (or being prepared) while the task before it renders or its model loads."""

    run: str
    key: str
    chunk: int | None
    renderer: Any  # the JobRenderer it was prepared with; None: prepared while that model loaded
    future: Future  # -> PreparedAhead


def prepares_ahead(device: str) -> bool:
    """Whether a worker on ``device`` prepares its next job while rendering: on CUDA devices
    (on a CPU both would compete for the same cores), unless ``$EDTALK_PREPARE_AHEAD`` is 1 or 0."""
    forced = os.environ.get(PREPARE_AHEAD_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return torch.device(device).type == "cuda"


def slots_prepare_ahead(slots: Sequence[str]) -> bool:
    """Whether a run on ``slots`` prepares jobs ahead (:func:`prepares_ahead` of any slot's device,
    resolved on this host; a slot whose device is unusable here does not count)."""
    from edtalk_cli.errors import EdtalkError

    for slot in slots:
        try:
            if prepares_ahead(resolve_device(slot)):
                return True
        except EdtalkError:  # an unusable device: its tasks report it
            continue
    return False


def prepare_counted(
    job: Job, size: int, cache: Any, *, attempt: int, detector: Callable[[], Any], hwaccel: str | None = None
) -> PreparedAhead:
    """Prepare ``job`` for a model of crop size ``size`` (:func:`~edtalk_cli.pipeline.render.prepare_job`)
    ahead of its task: its content-cache hits and misses counted apart (they belong to that task,
    not to the one rendering meanwhile), and when it ran. ``attempt``: attempts the task already
    spent (fault injection); ``detector``: the calling thread's FaceDetector, asked for when needed;
    ``hwaccel``: the video decoder's accelerator (the frames are the same)."""
    from edtalk_cli.pipeline.render import prepare_job

    view = None
    if cache is not None:
        from edtalk_cli.runner.cache import CacheStats

        view = copy.copy(cache)
        view.stats = CacheStats()
        view.write_error = None
        view.fail_writes = faults.at_stage(job.name, attempt + 1, "CACHE_FULL")
    started = time.time()
    prepared = prepare_job(
        job, size, detector=detector() if job.source.crop != "none" else None, cache=view, hwaccel=hwaccel
    )
    ready = time.time()
    if view is None:
        return PreparedAhead(prepared, started, ready, {"hits": {}, "misses": {}})
    return PreparedAhead(prepared, started, ready, view.stats.snapshot(), view.write_error)


def model_crop_size(job: Job, weights: Any, model: Any) -> int | None:
    """The crop size of the model ``job`` renders with (the run's ``weights`` and ``model`` unless
    the job names its own), read from its files without loading it; None where they cannot be read
    (the job's worker reports that when it loads the model)."""
    from edtalk_cli.errors import EdtalkError
    from edtalk_cli.weights.bundle import ModelFiles

    weights, model = job.model_choice(weights, model)
    try:
        return ModelFiles.from_dir(weights, model).crop_size()
    except EdtalkError:
        return None


def _prepare(
    config: WorkerConfig, task: Task, size: int, cache: Any, hwaccel: str | None, renderer: Any
) -> None:
    """Start preparing ``task``'s job for crop size ``size`` in the preparing thread, to be taken by
    :func:`_take_prepared` (one job at most; ``renderer``: the one it is prepared with, None while
    that model loads)."""
    global _ahead, _preparer
    discard_prepared()
    if _preparer is None:
        _preparer = Preparer()
    preparer = _preparer
    future = preparer.submit(
        lambda: prepare_counted(
            task.job, size, cache, attempt=task.attempt, detector=preparer.detector, hwaccel=hwaccel
        )
    )
    _ahead = _Ahead(config.run, task.key, task.chunk, renderer, future)


def _prepare_ahead(config: WorkerConfig, task: Task, renderer: Any) -> None:
    """Start preparing ``task``'s job with ``renderer`` in the background (one job ahead at most)."""
    _prepare(config, task, renderer.engine.size, renderer.cache, renderer.hwaccel, renderer)


def _prepare_while_loading(config: WorkerConfig, task: Task, device: str) -> None:
    """Start preparing ``task``'s job in the preparing thread while its model loads: where this
    worker prepares ahead (:func:`prepares_ahead`), nothing was prepared for the task and its model
    is not loaded yet. The crop size is read from the model's files (:func:`model_crop_size`, as
    the pool's lookahead does; nothing is started where they cannot be read)."""
    if task.prepared is not None or _ahead is not None or not prepares_ahead(device):
        return
    if _renderer_key(config, task.job, task.options, device) in _renderers:
        return
    size = model_crop_size(task.job, config.weights, config.model)
    if size is not None:
        from edtalk_cli.video.hwdecode import decode_accel

        _prepare(config, task, size, _cache(config), decode_accel(device), None)


def _take_prepared(config: WorkerConfig, task: Task, renderer: Any) -> _Ahead | None:
    """What was prepared ahead for ``task`` with ``renderer``, or while its model loaded, if
    anything (anything else is dropped)."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is None:
        return None
    if (
        (ahead.renderer is None or ahead.renderer is renderer)
        and (ahead.run, ahead.key) == (config.run, task.key)
        and ahead.chunk == task.chunk
    ):
        return ahead
    ahead.future.cancel()
    return None


def _own_inputs(
    renderer: Any, job: Job, ahead: PreparedAhead | None, cache: Any, events: _Events
) -> tuple[Any, dict[str, dict[str, int]]]:
    """The job's PreparedJob: ``ahead`` when it fits the renderer's model, else prepared here;
    and the cache hits and misses counted apart while it was prepared ahead (a failed cache write
    of that preparation is passed on to ``cache``'s warning)."""
    none: dict[str, dict[str, int]] = {"hits": {}, "misses": {}}
    if ahead is None or not ahead.prepared.fits(job, renderer.engine.size):
        return renderer.prepare(job), none
    timing = {
        "started": ahead.started,
        "ready": ahead.ready,
        "prepare_s": round(ahead.ready - ahead.started, 3),
    }
    events.emit("prepared_ahead", timing)
    if cache is None:
        return ahead.prepared, none
    if cache.write_error is None:
        cache.write_error = ahead.cache_error
    return ahead.prepared, ahead.cache_use


def _cache_use(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], ahead: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """A task's cache hits and misses: the cache's counts ``after`` less ``before``, plus those
    its preparation ahead counted apart (``ahead``)."""
    use: dict[str, dict[str, int]] = {}
    for side in ("hits", "misses"):
        kinds = set(after[side]) | set(ahead[side])
        counts = {k: after[side].get(k, 0) - before[side].get(k, 0) + ahead[side].get(k, 0) for k in kinds}
        use[side] = {k: v for k, v in counts.items() if v}
    return use


def discard_prepared() -> None:
    """Drop the job prepared ahead or while its model loads, if any (a preparation already running
    ends on its own)."""
    global _ahead
    if _ahead is not None:
        _ahead.future.cancel()
        _ahead = None


def _renderer_key(config: WorkerConfig, job: Job, options: RenderOptions, device: str) -> tuple[str, ...]:
    """Which cached renderer renders ``job`` with ``options`` on ``device``."""
    weights, model = job.model_choice(config.weights, config.model)
    return (str(weights), model, device, options.precision, options.engine, str(options.onnx_dir))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: OS and runtime errors, except those that fail the same way every time
    (a folder at the output path, no permission, a full disk, a missing file: see errors.py)."""
    if isinstance(exc, EdtalkError) or deterministic_os_error(exc):
        return False
    return isinstance(exc, OSError | RuntimeError)


def _cache_warning(cache: Any, events: _Events, result: TaskResult) -> None:
    """Report a failed cache write once per worker process: it costs speed, never the job."""
    global _cache_warned
    error = getattr(cache, "write_error", None)
    if error is None or _cache_warned:
        return
    _cache_warned = True
    cache.write_error = None  # a later run warns again only if a write fails again
    note = f"the cache could not be written ({error}); rendering goes on without storing to it"
    result.notes.append(note)
    events.emit("cache_warning", {"error": error, "root": str(cache.root)})


def run_task(config: WorkerConfig, task: Task, upcoming: Task | None = None) -> TaskResult:
    """Render ``task`` in this process; never raises for job errors (they are in the result).

    ``upcoming``: the task this process runs next, prepared meanwhile when :func:`prepares_ahead`.
    """
    from edtalk_cli.runner.chunks import write_chunk
    from edtalk_cli.userwarnings import install
    from edtalk_cli.video.encoders import EncoderFallbackWarning

    if config.set_threads:  # a worker process (not inline): library warnings as one clear line each
        install()
        # the runner shows an NVENC fallback once per run (BatchRunner._show_encoder_fallback)
        warnings.filterwarnings("ignore", category=EncoderFallbackWarning)

    started = time.perf_counter()
    events = _Events(config.events, task)
    result = TaskResult(task.key, task.chunk, worker=f"{_host()}:{os.getpid()}")
    try:
        claim = _slot(config, task.options.threads)
        device = resolve_device(claim.device)
        result.device = device
        result.threads = torch.get_num_threads()
        events.emit("task_start", {"device": device, "slot": claim.index, "shared_slot": claim.shared})
        _prepare_while_loading(config, task, device)
        renderer, weights = _renderer(config, task.job, task.options, device, events)
    except Exception as exc:  # bad device, missing/corrupt weights: the job fails, the worker lives on
        discard_prepared()
        result.error = error_text(exc)
        result.traceback = traceback.format_exc(limit=8)
        result.events = events.kept
        result.wall_s = time.perf_counter() - started
        events.close()
        return result

    ahead = _take_prepared(config, task, renderer)
    # another model would have to be loaded first: no preparing ahead
    start_next = (
        upcoming is not None
        and prepares_ahead(device)
        and _renderer_key(config, upcoming.job, upcoming.options, device)
        == _renderer_key(config, task.job, task.options, device)
    )
    fingerprint = task.fingerprint.with_weights(weights)
    if fingerprint.digest != task.fingerprint.digest:
        result.notes.append("the worker resolved different model files than the planner")
    cache = renderer.cache
    if cache is not None:
        cache.fail_writes = faults.at_stage(task.job.name, task.attempt + 1, "CACHE_FULL")
    before = cache.stats.snapshot() if cache is not None else None
    job, options = task.job, task.options
    owner = config.owner if config.owner is not None and config.owner[0] == _host() else None
    attempt = task.attempt
    tries = retried = 0
    ahead_counts: dict[str, dict[str, int]] = {"hits": {}, "misses": {}}
    while True:
        attempt += 1
        tries += 1
        result.attempts = attempt
        result.batch_size = options.batch_size
        state = {"last": 0.0, "owner": time.monotonic()}
        sidecars: list[Path] = []  # sidecars written ahead of their mp4 in this attempt

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
            prepared = None
            # a retry prepares its job again
            if tries == 1 and (ahead is not None or task.prepared is not None or start_next):
                carried = ahead.future.result() if ahead is not None else task.prepared
                prepared, ahead_counts = _own_inputs(renderer, job, carried, cache, events)
                if start_next:  # this job's inputs are ready: the next job's do not compete with them
                    assert upcoming is not None
                    _prepare_ahead(config, upcoming, renderer)
            if task.frame_range is None:

                def sidecar_first(tmp: Path, done: Any, _sidecars: list[Path] = sidecars) -> None:
                    _sidecars.append(sidecar_path(job.output))
                    write_sidecar(
                        job.output,
                        fingerprint,
                        _hasher(config),
                        content=tmp,
                        frames=done.frames,
                        fps=job.fps,
                        duration_s=done.duration_s,
                        device=device,
                        encoder=done.encoder,
                        worker=result.worker,
                        wall_s=round(time.perf_counter() - started, 3),
                        notes=done.notes,
                    )

                rendered = renderer.render(
                    job, progress, before_publish=sidecar_first, options=options, prepared=prepared
                )
                if faults.at_stage(job.name, task.attempt + tries, "PUBLISHED"):
                    faults.exit_worker()
                result.frames = rendered.frames
                result.frames_without_face = rendered.frames_without_face
                result.notes.extend(rendered.notes)
                result.duration_s = rendered.duration_s
                result.encoder = rendered.encoder
            else:
                from edtalk_cli.pipeline.render import FrameStats

                stats = FrameStats()
                chunk = renderer.frames(
                    job, task.frame_range, stats=stats, options=options, prepared=prepared
                )
                assert task.chunk_file is not None
                write_chunk(
                    chunk.images, Path(task.chunk_file), chunk.count, lambda k, n=chunk.count: progress(k, n)
                )
                result.frames = chunk.count
                result.frames_without_face = stats.frames_without_face
                result.notes.extend(chunk.notes)
            result.status = "done"
            break
        except OwnerGone:
            events.close()
            os._exit(0)  # the run is over; nothing is waiting for this result
        except Exception as exc:
            if not job.output.is_file():  # the sidecar describes an mp4 that never reached its place
                for written in sidecars:
                    written.unlink(missing_ok=True)
            sidecars.clear()
            error = error_text(exc)
            if _is_oom(exc) and options.batch_size > 1:
                options = replace(options, batch_size=max(1, options.batch_size // 2))
                attempt -= 1  # halving the batch is not a retry
                result.notes.append(f"CUDA out of memory: batch size halved to {options.batch_size}")
                events.emit("batch_halved", {"batch_size": options.batch_size, "error": error})
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            if _is_transient(exc) and not _is_oom(exc) and retried < config.retries:
                retried += 1
                events.emit("retry", {"attempt": attempt, "error": error})
                time.sleep(min(0.2 * 2**retried, 5.0))
                continue
            # a bad input file: say where the manifest names it
            result.error = task.job.locate(error) if isinstance(exc, EdtalkError) else error
            result.error_kind = "user" if isinstance(exc, EdtalkError) else type(exc).__name__
            result.traceback = traceback.format_exc(limit=8)
            break

    if cache is not None and before is not None:
        _cache_warning(cache, events, result)
        result.cache = _cache_use(before, cache.stats.snapshot(), ahead_counts)
    result.fingerprint = fingerprint.digest
    result.weights = weights
    result.wall_s = time.perf_counter() - started
    result.events = events.kept
    events.close()
    return result
