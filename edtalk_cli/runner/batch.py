"""The batch runner: many jobs on many devices, resumable, locked, reported.

The parent process plans and books; workers render (see worker.py):

1. every job gets a fingerprint (content hashes of its inputs, resolved settings, weights, tool
   version; see fingerprint.py);
2. jobs are handed to a joblib pool one at a time (``return_as="generator_unordered"``, one task
   per worker in flight), so a long job never idles the other devices. Just before a job is
   handed out, its output lock is taken (``.NAME.edtalk.lock``; a job locked by another live
   ``edtalk render`` is deferred and waited for), leftovers of killed runs are removed, and an
   output whose sidecar matches the fingerprint is skipped;
3. a job longer than ``chunk_frames`` is split into batch-aligned chunks rendered by several
   workers and joined into one encode (planned, followed and joined in jobstate.py; the chunk
   files in chunks.py);
4. every job ends as done, skipped, failed or cancelled (``--fail-fast``), reported as events and
   as :class:`JobOutcome` rows.

Backends: ``inline`` (this process, one worker), ``loky`` (local worker processes, one per
slot) and ``dask`` (joblib's dask backend on a ``distributed`` cluster).

This module is the scheduler; beside it: the options and their checks (options.py), report rows
(outcomes.py), per-job state, chunk bookkeeping and leftovers of killed runs (jobstate.py), the
event file and the lock heartbeat (events.py). ``RunOptions``, ``JobOutcome`` and the rest stay
importable from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from edtalk_cli.errors import EdtalkError, error_text
from edtalk_cli.hashing import FileHasher
from edtalk_cli.manifest.model import Job
from edtalk_cli.runner.cache import ContentCache, cache_root, digest_store
from edtalk_cli.runner.chunks import remove_chunks
from edtalk_cli.runner.devices import cpu_budget, job_batch_size, resolve_device, slots_dir
from edtalk_cli.runner.events import follow_events, keep_locks_fresh, read_events
from edtalk_cli.runner.fingerprint import (
    Fingerprint,
    job_fingerprint,
    read_sidecar,
    sidecar_path,
    sidecar_status,
)
from edtalk_cli.runner.jobstate import (
    JobState,
    clean_partials,
    file_version,
    join_chunked_job,
    plan_job_chunks,
    remove_dead_run_dirs,
)
from edtalk_cli.runner.locks import OutputLock
from edtalk_cli.runner.lookahead import PoolLookahead
from edtalk_cli.runner.options import BACKENDS, RunOptions, resolve_run
from edtalk_cli.runner.outcomes import (
    STATUSES,
    EventFn,
    JobOutcome,
    job_outcome,
    outcome_from_result,
)
from edtalk_cli.runner.procwatch import ProcessWatch
from edtalk_cli.runner.signals import Interrupted
from edtalk_cli.runner.worker import (
    Task,
    TaskResult,
    WorkerConfig,
    discard_prepared,
    model_crop_size,
    run_task,
    slots_prepare_ahead,
)

__all__ = ["BACKENDS", "STATUSES", "BatchRunner", "EventFn", "JobOutcome", "RunOptions", "resolve_device"]

MAX_CRASHES = 2  # a task whose own worker died this many times is retried; one more fails it


class BatchRunner:
    """Runs jobs per :class:`RunOptions`; ``run()`` returns one :class:`JobOutcome` per job, in order.

    ``on_event(name, payload)`` receives: ``run_start``, ``job_start``, ``model_loaded``,
    ``job_progress``, ``job_retry``, ``job_batch_halved``, ``job_done``, ``job_skipped``,
    ``job_failed``, ``job_cancelled``, ``job_waiting`` (locked by another process),
    ``cache_warning`` (a cache write failed: once per run), ``job_prepared_ahead`` (the job's
    audio and photo were prepared before its turn: by the inline worker while the job before it
    rendered, or by this process for a pool; ``started``/``ready`` wall-clock times), ``run_done``.
    It is called from the runner's threads, one call at a time.

    Ctrl-C, or :class:`~edtalk_cli.runner.signals.Interrupted` raised by a signal handler, stops
    the run: workers are stopped, temporary files deleted, locks released, and ``run()`` returns
    the outcomes with the unfinished jobs ``cancelled``; ``interrupted`` then holds the exception.
    """

    def __init__(self, options: RunOptions | None = None, **overrides: Any) -> None:
        if "device" in overrides:  # the single-device spelling of earlier versions
            overrides["devices"] = overrides.pop("device")
        known = {f.name for f in fields(RunOptions)}
        for key in overrides:
            if key not in known:
                raise TypeError(f"unknown run option {key!r}")
        # the caller's options stay as they are: the run works on a resolved copy
        opts, self.backend, self.slots = resolve_run(replace(options or RunOptions(), **overrides))
        self.options = opts
        self.root = Path(opts.cache_root) if opts.cache_root is not None else cache_root()
        self.hasher = FileHasher(digest_store(self.root))
        self._mutex = threading.RLock()
        self._emit: EventFn = lambda name, payload: None
        self._states: dict[str, JobState] = {}
        self._seen: set[str] = set()
        self._stop = False
        self._weights: dict[tuple[str, str], dict[str, Any]] = {}
        self._cluster = None
        self._crashed = False
        self._events_path: Path | None = None
        self._task_pids: dict[tuple[str, int | None], int] = {}  # (key, chunk) -> worker pid
        self._watch: ProcessWatch | None = None
        self._round_wave = 0
        self._cache_warned = False
        self._codecs_checked: set[str] = set()  # encode.codecs whose NVENC fallback was shown
        self.interrupted: Interrupted | None = None
        self.threads: int | None = None  # CPU threads per worker of the last run (None: per host)
        self.threads_note = ""  # how that number was chosen

    # ----- planning -----------------------------------------------------------------------
    def weights_for(self, job: Job) -> dict[str, Any]:
        """Content identity of the model files ``job`` renders with (resolved once per weights/model
        and run; the files' hashes are cached per file version, so an edited file is noticed)."""
        from edtalk_cli.weights.bundle import ModelFiles

        weights, model = job.model_choice(self.options.weights, self.options.model)
        key = (str(weights), model)
        if key not in self._weights:
            self._weights[key] = ModelFiles.from_dir(weights, model).content_identity(self.hasher)
        return self._weights[key]

    def job_for(self, job: Job) -> Job:
        """``job`` as this run renders it: its batch size resolved (:func:`job_batch_size`) and
        with the default face enhancement under ``--enhance``."""
        batch_size = job_batch_size(job.batch_size, self.options.batch_size, self.slots)
        if batch_size != job.batch_size:
            job = job.model_copy(update={"batch_size": batch_size})
        if not self.options.enhance:
            return job
        from edtalk_cli.pipeline.enhance import with_default_enhancement

        return with_default_enhancement(job)

    def fingerprint(self, job: Job) -> Fingerprint:
        from edtalk_cli.pipeline.enhance import enhancer_weights_file

        enhancer = enhancer_weights_file(job, self.options.weights)
        try:
            return job_fingerprint(
                job,
                hasher=self.hasher,
                weights=self.weights_for(job),
                precision=self.options.precision,
                engine=self.options.engine,
                model=job.model_choice(self.options.weights, self.options.model)[1],
                extra_inputs={"enhance.weights": enhancer} if enhancer is not None else None,
            )
        except FileNotFoundError as exc:
            raise EdtalkError(f"job '{job.name}': input file '{exc.filename}' is missing") from None

    # ----- running ------------------------------------------------------------------------
    def run(self, jobs: list[Job], *, on_event: EventFn | None = None) -> list[JobOutcome]:
        """Render (or skip) every job; never raises for a job's failure."""
        self._emit = on_event or (lambda name, payload: None)
        self._stop = False
        jobs = [self.job_for(job) for job in jobs]
        self._seen.clear()
        self._weights.clear()  # weights files may have been edited since the last run
        self._states = {}
        self._task_pids = {}
        self._cache_warned = False
        self._codecs_checked = set()
        self.interrupted = None
        remove_dead_run_dirs()
        run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        opts = self.options
        self.threads, self.threads_note = opts.threads, f"{opts.threads} thread(s) per worker (--threads)"
        if opts.threads is None and self.backend != "dask":  # dask: each worker host decides
            budget = cpu_budget()
            self.threads = budget.threads_per_worker(len(self.slots))
            self.threads_note = budget.describe(len(self.slots))
        elif opts.threads is None:
            self.threads_note = "threads per worker: each host's free cores"
        states = []
        for job in jobs:
            key = str(job.output)
            state = JobState(
                job,
                key,
                OutputLock(job.output, stale_after=self.options.lock_timeout, run=run_id),
                opts.render_options(job, self.slots, threads=self.threads),  # once per job
            )
            if self.options.force:
                state.sidecar_before = file_version(sidecar_path(job.output))
            states.append(state)
            self._states[key] = state
        import torch  # lazily: planning and dry runs need no torch

        caller_threads = torch.get_num_threads()
        run_dir = Path(tempfile.mkdtemp(prefix=f"edtalk-run-{os.getpid()}-"))
        events_path = run_dir / "events.jsonl"
        events_path.touch()
        self._events_path = events_path
        config = WorkerConfig(
            run=run_id,
            slots=tuple(self.slots),
            weights=str(opts.weights) if opts.weights is not None else None,
            model=opts.model,
            retries=opts.retries,
            cache_root=str(self.root) if opts.cache else None,
            digest_root=str(digest_store(self.root)),
            events=str(events_path),
            owner=(socket.gethostname(), os.getpid()) if self.backend != "dask" else None,
            set_threads=self.backend != "inline",
        )
        stop_threads = threading.Event()
        tail = threading.Thread(
            target=follow_events, args=(events_path, stop_threads, self._worker_event), daemon=True
        )
        beat = threading.Thread(
            target=keep_locks_fresh, args=(stop_threads, opts.lock_timeout, self._held_locks), daemon=True
        )
        self._send(
            "run_start",
            {
                "jobs": len(jobs),
                "backend": self.backend,
                "slots": list(self.slots),
                "run": run_id,
                "threads": self.threads,
                "threads_note": self.threads_note,
            },
        )
        client = None
        self._watch = ProcessWatch() if self.backend == "loky" else None
        try:
            for state in states:
                try:
                    state.fingerprint = self.fingerprint(state.job)
                except EdtalkError as exc:
                    self._finish(state, self._failed(state, error_text(exc)))
            tail.start()
            beat.start()
            if self.backend == "dask":
                client = self._dask_client()
            pending = [s for s in states if s.outcome is None]
            while pending and not self._stop:
                self._crashed = False
                self._round(pending, config, client)
                left = [s for s in states if s.outcome is None]
                stuck = [] if self._stop or self._crashed else [s for s in left if s.locked_by is None]
                for state in stuck:  # a safety net: never loop on a job that cannot progress
                    self._finish(state, self._failed(state, "internal error: the job was not handed out"))
                    state.lock.release()
                pending = self._next_round([s for s in left if s.outcome is None])
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (runner/signals.py)
            self.interrupted = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
            self._stop = True
            self._clean_after_interrupt(states)
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            torch.set_num_threads(caller_threads)  # an inline run with --threads ran in this process
            stop_threads.set()
            if tail.is_alive():
                tail.join(timeout=5)
            if beat.is_alive():
                beat.join(timeout=5)
            for state in states:
                state.lock.release()
            if client is not None:
                self._close_dask(client)
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(slots_dir(run_id), ignore_errors=True)
        for state in states:
            if state.outcome is None:
                why = "not run: --fail-fast stopped the batch after a failure" if self._stop else "not run"
                if self.interrupted is not None:
                    why = f"not finished: the run was stopped ({self.interrupted})"
                self._finish(state, self._outcome(state, "cancelled", error=why))
        outcomes = [s.outcome for s in states if s.outcome is not None]
        counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
        self._send("run_done", counts)
        return outcomes

    def _parallel(self):
        from joblib import Parallel

        if self.backend == "loky":
            return Parallel(
                n_jobs=len(self.slots),
                backend="loky",
                return_as="generator_unordered",
                batch_size=1,
                pre_dispatch="n_jobs",
            )
        return Parallel(n_jobs=-1, return_as="generator_unordered", batch_size=1, pre_dispatch="n_jobs")

    def _dask_client(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EdtalkError(
                "--backend dask needs the 'distributed' package", hint="pip install 'dask[distributed]'"
            ) from None
        address = self.options.scheduler
        if address:
            try:
                return Client(address, timeout="20s")
            except OSError as exc:
                raise EdtalkError(
                    f"cannot reach the dask scheduler at {address}: {exc}",
                    hint="start it with `dask scheduler` and check the address (tcp://HOST:8786)",
                ) from None
        self._cluster = LocalCluster(
            n_workers=len(self.slots), threads_per_worker=1, processes=True, dashboard_address=None
        )
        return Client(self._cluster)

    def _close_dask(self, client) -> None:
        client.close()
        if self._cluster is not None:  # the LocalCluster this run started
            self._cluster.close()
            self._cluster = None

    def _round(self, pending: list[JobState], config: WorkerConfig, client) -> None:
        """Hand out every pending job once; returns when all handed-out work came back."""
        import contextlib

        from joblib import delayed, parallel_config

        def tasks() -> Iterator[Task]:
            for state in pending:
                if self._stop:
                    return
                for task in self._prepare(state):
                    if self._stop or state.chunk_error is not None:
                        break
                    with self._mutex:
                        state.inflight.add(task.chunk)
                        self._task_pids.pop((state.key, task.chunk), None)
                        if state.started is None:
                            state.started = time.perf_counter()
                    yield task
                with self._mutex:
                    state.dispatch_done = True
                    self._maybe_end_chunked(state)

        context = parallel_config(backend="dask") if self.backend == "dask" else contextlib.nullcontext()
        if self._watch is not None:
            self._round_wave = self._watch.wave
        with context:
            lookahead = None
            if self.backend == "inline":
                results = self._inline_results(config, tasks())
            else:
                handed: Iterator[Task] = tasks()
                lookahead = self._lookahead(handed)
                if lookahead is not None:
                    handed = lookahead
                results = self._parallel()(delayed(run_task)(config, task) for task in handed)
            try:
                while True:
                    try:
                        result = next(results)
                    except StopIteration:
                        break
                    except Exception as exc:  # a worker died (or the cluster went away)
                        self._pool_broke(exc)
                        break
                    self._on_result(result)
            except BaseException:
                import warnings

                with warnings.catch_warnings():  # closing stops the workers (joblib warns about it)
                    warnings.simplefilter("ignore")
                    results.close()
                raise
            finally:
                if lookahead is not None:
                    lookahead.close()
        with self._mutex:
            ready = [s for s in pending if s.take_join()]
        for state in ready:  # every chunk is on disk (e.g. resumed): join now
            self._join(state)

    def _inline_results(self, config: WorkerConfig, tasks: Iterator[Task]) -> Iterator[TaskResult]:
        """Run ``tasks`` here one at a time. Where the slot prepares ahead (worker.slots_prepare_ahead:
        CUDA), each is told the task after it, which is handed out (locked, checked) before the
        current one runs and prepared meanwhile; it is dropped unrun if the run stopped or its
        chunked job failed meanwhile, as it would then not have been handed out."""
        ahead = slots_prepare_ahead(self.slots)
        try:
            task = next(tasks, None)
            while task is not None:
                if not self._still_wanted(task):
                    self._drop_task(task)
                    task = None if self._stop else next(tasks, None)
                    continue
                # the next task is handed out before this one runs only when it is prepared meanwhile
                upcoming = next(tasks, None) if ahead and not self._stop else None
                yield run_task(config, task, upcoming)
                task = upcoming if ahead else (None if self._stop else next(tasks, None))
        finally:
            discard_prepared()

    def _lookahead(self, tasks: Iterator[Task]) -> PoolLookahead | None:
        """For a pool: ``tasks`` with their jobs prepared in this process before the pool takes
        them (runner/lookahead.py), where the run's slots prepare ahead
        (worker.slots_prepare_ahead); None where they do not."""
        if not slots_prepare_ahead(self.slots):
            return None
        sizes: dict[tuple[str, str], int | None] = {}

        def crop_size(job: Job) -> int | None:
            weights, model = job.model_choice(self.options.weights, self.options.model)
            key = (str(weights), model)
            if key not in sizes:
                sizes[key] = model_crop_size(job, self.options.weights, self.options.model)
            return sizes[key]

        # its own file hasher: the preparing thread hashes beside the pool's dispatching thread
        cache = ContentCache(self.root, FileHasher(digest_store(self.root))) if self.options.cache else None
        return PoolLookahead(
            tasks,
            depth=len(self.slots),
            crop_size=crop_size,
            cache=cache,
            keep=self._still_wanted,
            drop=self._drop_task,
        )

    def _still_wanted(self, task: Task) -> bool:
        """Whether a task handed out ahead is still to run: the run goes on and its chunked job has not failed."""
        return not self._stop and self._states[task.key].chunk_error is None

    def _drop_task(self, task: Task) -> None:
        """Undo handing out ``task``, which will not run (a chunked job may then end as failed)."""
        state = self._states[task.key]
        with self._mutex:
            state.inflight.discard(task.chunk)
            self._maybe_end_chunked(state)

    def _crashed_pids(self, inflight: list[JobState]) -> set[int] | None:
        """The worker pids that died first (the crash), or None when that cannot be told."""
        if self._watch is None:
            return None
        self._drain_events()  # every task_start written so far, with its worker's pid
        with self._mutex:
            known = [
                self._task_pids.get((state.key, chunk)) for state in inflight for chunk in state.inflight
            ]
        pids = {pid for pid in known if pid is not None}
        if not pids or len(pids) < len(known):  # a task whose worker is unknown: cannot tell
            return None
        self._watch.wait_dead(pids, timeout=2.0)  # the pool kills the others: let the watch see it
        deaths = self._watch.deaths(pids, after=self._round_wave)
        if not deaths:
            return None
        first = min(deaths.values())
        return {pid for pid, wave in deaths.items() if wave == first}

    def _pool_broke(self, exc: BaseException) -> None:
        message = error_text(exc).splitlines()[0]
        with self._mutex:
            inflight = [s for s in self._states.values() if s.outcome is None and s.inflight]
        if not inflight:
            raise exc  # nothing was running: not a worker crash but a bug; do not loop on it
        culprits = self._crashed_pids(inflight)
        with self._mutex:
            self._crashed = True
            for state in inflight:
                pids = {self._task_pids.get((state.key, chunk)) for chunk in state.inflight}
                for chunk in state.inflight:
                    self._task_pids.pop((state.key, chunk), None)
                state.inflight.clear()
                if culprits is not None and not pids & culprits:  # its worker was stopped by the pool
                    self._send(
                        "job_retry",
                        {
                            "name": state.job.name,
                            "key": state.key,
                            "error": "another worker died; resubmitted",
                        },
                    )
                    continue
                state.crashes += 1
                if state.crashes > MAX_CRASHES:
                    self._finish(
                        state,
                        self._failed(state, f"worker process died {state.crashes} times: {message}"),
                    )
                    clean_partials(state.job.output)
                    remove_chunks(state.job.output)
                    state.lock.release()
                else:
                    self._send("job_retry", {"name": state.job.name, "key": state.key, "error": message})

    def _drain_events(self) -> None:
        """Process the whole event file now (records already seen are skipped)."""
        if self._events_path is None:
            return
        for record in read_events(self._events_path):
            self._worker_event(record)

    def _clean_after_interrupt(self, states: list[JobState]) -> None:
        """After Ctrl-C / SIGTERM / SIGHUP: delete what the stopped workers were writing (locks still held)."""
        for state in states:
            if state.lock.held and state.outcome is None:
                with contextlib.suppress(OSError):
                    clean_partials(state.job.output)

    def _next_round(self, left: list[JobState]) -> list[JobState]:
        """Jobs for the next round: after a crash at once; jobs locked elsewhere once a lock frees."""
        if not left or self._stop:
            return left
        locked = [s for s in left if s.locked_by is not None]
        if len(locked) < len(left):
            return left
        if self.options.on_locked == "skip":
            for state in locked:
                note = f"locked by {state.locked_by} (another edtalk render); not rendered here"
                self._finish(state, self._outcome(state, "skipped", notes=[note]))
            return []
        for state in locked:
            self._send(
                "job_waiting", {"name": state.job.name, "key": state.key, "locked_by": state.locked_by}
            )
        while True:
            for state in locked:
                info, age = state.lock.read()
                if age is None or state.lock.is_stale(info, age):
                    return left
            time.sleep(0.25)

    def _prepare(self, state: JobState) -> list[Task]:
        """Lock, clean up, skip if up to date, else the tasks of the job (called as it is handed out)."""
        try:
            tasks = self._prepare_locked(state)
            if tasks:
                self._show_encoder_fallback(state.job)
            return tasks
        except Exception as exc:  # never let the task generator raise: joblib would stop the round
            self._finish(
                state, self._failed(state, f"cannot prepare '{state.job.output}': {error_text(exc)}")
            )
            state.lock.release()
            return []

    def _show_encoder_fallback(self, job: Job) -> None:
        """Warn, once per run and ``encode.codec``, that the NVENC codec a job about to be handed
        out asks for falls back to libx264 (video/encoders.py), for runs whose jobs render in other
        processes: those do not show it (worker.run_task), and one line beats one per worker. An
        inline run's writer warns in this process itself. Each job still records the encoder that
        ran (reports, events, sidecar). The probe is this host's: a dask worker elsewhere may differ.
        """
        codec = job.encode.codec
        if self.backend == "inline" or codec in self._codecs_checked:
            return
        self._codecs_checked.add(codec)
        from edtalk_cli.video.encoders import choose_encoder

        choose_encoder(codec).warn()  # the fallback of an explicit NVENC codec does not depend on CUDA

    def _prepare_locked(self, state: JobState) -> list[Task]:
        opts = self.options
        assert state.fingerprint is not None
        if not state.lock.acquire():
            info, _ = state.lock.read()
            state.locked_by = info.describe() if info is not None else "another process"
            return []
        state.locked_by = None
        output = state.job.output
        try:
            clean_partials(output)
            if output.is_dir():
                raise EdtalkError(
                    f"job '{state.job.name}': the output path '{output}' is a folder",
                    hint="remove or rename that folder, or change the job's output",
                )
            # --force renders again, except what another run rendered since this one started
            rendered_meanwhile = opts.force and file_version(sidecar_path(output)) != state.sidecar_before
            if not opts.force or rendered_meanwhile:
                ok, _ = sidecar_status(output, state.fingerprint.digest, self.hasher)
                if ok:
                    side = read_sidecar(output) or {}
                    note = f"up to date (rendered {side.get('created', '?')})"
                    if rendered_meanwhile:
                        note = (
                            f"rendered by another edtalk render during this run ({side.get('worker', '?')})"
                        )
                    outcome = self._outcome(
                        state,
                        "skipped",
                        frames=int(side.get("frames", 0)),
                        device=str(side.get("device", "")),
                        encoder=side.get("encoder"),
                        notes=[note],
                    )
                    self._finish(state, outcome)
                    state.lock.release()
                    return []
            # the old sidecar stays until the new one replaces it, just before the new mp4's rename:
            # it still describes the old mp4 (so a kill meanwhile never orphans a file of ours)
            output.parent.mkdir(parents=True, exist_ok=True)
            if opts.chunk_frames > 0:
                plan = plan_job_chunks(state, opts.chunk_frames)
                if plan is not None:
                    with self._mutex:
                        return state.chunk_tasks(plan)
            remove_chunks(output)
            return [Task(state.key, state.job, state.fingerprint, state.options, attempt=state.crashes)]
        except EdtalkError as exc:
            self._finish(state, self._failed(state, error_text(exc)))
        except OSError as exc:
            self._finish(state, self._failed(state, f"cannot prepare '{output}': {exc}"))
        state.lock.release()
        return []

    # ----- results ------------------------------------------------------------------------
    def _on_result(self, result: TaskResult) -> None:
        join = None
        with self._mutex:
            state = self._states[result.key]
            for record in result.events:
                self._worker_event(record)
            chunk = result.chunk
            state.inflight.discard(chunk)
            if state.outcome is not None:
                return
            if chunk is None:
                if result.status == "done":
                    outcome = self._outcome_from(state, result, "done")
                else:
                    outcome = self._outcome_from(state, result, "failed")
                self._finish(state, outcome)
                state.lock.release()
                return
            state.record_chunk(result)
            if self._maybe_end_chunked(state):
                return
            if state.take_join():
                join = state
        if join is not None:
            self._join(join)

    def _maybe_end_chunked(self, state: JobState) -> bool:
        """Fail a chunked job once a chunk failed and nothing of it is in flight (holding the mutex)."""
        outcome = state.chunk_failure()
        if outcome is None:
            return False
        self._finish(state, outcome)
        remove_chunks(state.job.output)
        state.lock.release()
        return True

    def _join(self, state: JobState) -> None:
        """Encode a chunked job's blocks into its mp4 (without the mutex: it takes a while), then finish it."""
        outcome = join_chunked_job(state, self.hasher)
        with self._mutex:
            self._finish(state, outcome)
            state.lock.release()

    # ----- outcomes and events ------------------------------------------------------------
    def _outcome(self, state: JobState, status: str, **fields: Any) -> JobOutcome:
        return job_outcome(state.job, state.fingerprint, status, **fields)

    def _failed(self, state: JobState, error: str) -> JobOutcome:
        return self._outcome(state, "failed", error=error)

    def _outcome_from(self, state: JobState, result: TaskResult, status: str) -> JobOutcome:
        outcome = outcome_from_result(state.job, state.fingerprint, result, status)
        if status == "failed" and result.traceback:
            self._send("job_traceback", {"name": state.job.name, "traceback": result.traceback})
        return outcome

    def _finish(self, state: JobState, outcome: JobOutcome) -> None:
        with self._mutex:
            state.outcome = outcome
            if outcome.status == "failed" and self.options.fail_fast:
                self._stop = True
            self._send(f"job_{outcome.status}", outcome.to_dict())

    def _send(self, event: str, payload: dict) -> None:
        with self._mutex:
            try:
                self._emit(event, payload)
            except Exception:  # a broken event consumer must not break the batch
                traceback.print_exc()

    def _worker_event(self, record: dict) -> None:
        """Turn a worker event (streamed or returned) into runner events, once each."""
        with self._mutex:
            if record.get("id") in self._seen:
                return
            self._seen.add(record.get("id", ""))
            state = self._states.get(record.get("key", ""))
            if state is None:
                return
            event = record.get("event")
            base = {"name": state.job.name, "key": state.key}
            if event == "task_start" and record.get("chunk") in state.inflight:
                pid = int(record.get("pid", 0))
                self._task_pids[(state.key, record.get("chunk"))] = pid
                if self._watch is not None and record.get("host") == socket.gethostname():
                    self._watch.watch(pid)
            if event == "cache_warning" and not self._cache_warned:
                self._cache_warned = True
                self._send("cache_warning", {"error": record.get("error"), "root": record.get("root")})
            if event == "task_start" and not state.announced:
                state.announced = True
                self._send(
                    "job_start",
                    {
                        **base,
                        "output": str(state.job.output),
                        "device": record.get("device"),
                        "worker": f"{record.get('host')}:{record.get('pid')}",
                        "chunks": len(state.ranges or []),
                        "frames": state.num_frames,
                    },
                )
            elif event == "progress" and state.outcome is None:
                state.progress[record.get("chunk")] = int(record.get("done", 0))
                total = state.num_frames if state.ranges else int(record.get("total", 0))
                self._send("job_progress", {**base, "done": sum(state.progress.values()), "total": total})
            elif event == "model_loaded":
                keep = ("description", "demo", "device", "identity", "load_s", "pid", "host")
                self._send("model_loaded", {k: record.get(k) for k in keep})
            elif event == "retry":
                self._send(
                    "job_retry", {**base, "attempt": record.get("attempt"), "error": record.get("error")}
                )
            elif event == "batch_halved":
                self._send("job_batch_halved", {**base, "batch_size": record.get("batch_size")})
            elif event == "prepared_ahead":
                timing = {k: record.get(k) for k in ("started", "ready", "prepare_s")}
                self._send("job_prepared_ahead", {**base, "chunk": record.get("chunk"), **timing})

    def _held_locks(self) -> list[OutputLock]:
        with self._mutex:
            return [s.lock for s in self._states.values() if s.lock.held]
