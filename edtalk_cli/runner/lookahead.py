"""The runner's parent process prepares the jobs a worker pool (loky, dask) takes next.

A pool worker cannot know its next task (joblib hands each task to whichever worker is free),
so the parent does for the pool what an inline worker does for itself (worker.py):
:class:`PoolLookahead` sits between the runner's task generator and the pool, keeps up to
``depth`` tasks handed out ahead of the pool, and prepares their jobs (the audio's mel, a photo's
crops or a video's face track: :func:`~edtalk_cli.pipeline.render.prepare_job`) in one daemon thread. No model is loaded:
the crop size comes from the model's files (:meth:`~edtalk_cli.weights.bundle.ModelFiles.crop_size`).
Each task then carries its :class:`~edtalk_cli.runner.worker.PreparedAhead` to its worker.

When the pool asks for a task, a preparation that is done or running is waited for and sent
with it; one not yet started is cancelled and the task goes out bare (its worker prepares it, as
without the lookahead), so a parent slower than the pool never holds the devices up. The chunk
tasks of one job share one preparation (its cache hits and misses are counted with the first).
A preparation whose errors would not survive pickling is not sent: the worker then meets the
same error itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from edtalk_cli.manifest.model import Job
from edtalk_cli.runner.worker import PreparedAhead, Preparer, Task, prepare_counted

_WAIT_S = 0.2  # how often a wait for a preparation looks whether the lookahead was closed


@dataclass
class _Queued:
    """A task handed out by the runner and not yet taken by the pool."""

    task: Task
    future: Future | None  # -> PreparedAhead; None: not prepared here (its model size is unknown)
    first: bool  # the first task using this preparation: it carries the cache hits and misses


class PoolLookahead:
    """An iterator over ``tasks`` for a pool, each with its job prepared meanwhile where possible.

    ``depth``: tasks kept prepared (or being prepared) behind the one the pool takes (the number
    of worker slots keeps memory bounded). ``crop_size(job)``: the crop size of the model the job
    renders with, None when it cannot be told here (the task then goes out bare). ``cache``: the
    content cache, or None. ``keep(task)``: whether a task handed out earlier is still wanted
    (False once the run stopped or its chunked job failed); ``drop(task)``: undo handing it out.
    Call :meth:`close` when the round ends: it drops what the pool did not take.
    """

    def __init__(
        self,
        tasks: Iterator[Task],
        *,
        depth: int,
        crop_size: Callable[[Job], int | None],
        cache: Any,
        keep: Callable[[Task], bool],
        drop: Callable[[Task], None],
    ) -> None:
        self._tasks = tasks
        self._depth = max(1, depth)
        self._crop_size = crop_size
        self._cache = cache
        self._keep = keep
        self._drop = drop
        self._preparer = Preparer()
        self._queued: deque[_Queued] = deque()
        self._last: _Queued | None = None  # the last task queued (its chunks share its preparation)
        self._lock = threading.Lock()  # the pool may ask from more than one thread
        self._exhausted = False
        self._closed = False

    def __iter__(self) -> PoolLookahead:
        return self

    def __next__(self) -> Task:
        with self._lock:
            self._fill()
            while self._queued and not self._closed:
                item = self._queued.popleft()
                if not self._keep(item.task):
                    self._discard(item)
                    continue
                self._fill()
                task = self._with_preparation(item)
                if task is None:  # closed while waiting
                    self._discard(item)
                    break
                return task
            raise StopIteration

    def close(self) -> None:
        """Stop: cancel the preparations not started and drop the tasks the pool did not take."""
        self._closed = True  # a wait in __next__ (holding the lock) sees it within _WAIT_S
        with self._lock:
            while self._queued:
                self._discard(self._queued.popleft())

    # ----- internals ----------------------------------------------------------------------
    def _fill(self) -> None:
        while not self._exhausted and not self._closed and len(self._queued) < self._depth:
            task = next(self._tasks, None)
            if task is None:
                self._exhausted = True
                return
            self._queued.append(self._submit(task))

    def _submit(self, task: Task) -> _Queued:
        last = self._last
        if last is not None and last.task.key == task.key and last.task.job is task.job:
            item = _Queued(task, last.future, first=False)  # another chunk of the same job
        else:
            size = self._crop_size(task.job)
            future = None
            if size is not None:
                preparer, cache = self._preparer, self._cache
                future = preparer.submit(
                    lambda: prepare_counted(
                        task.job, size, cache, attempt=task.attempt, detector=preparer.detector
                    )
                )
            item = _Queued(task, future, first=True)
        self._last = item
        return item

    def _with_preparation(self, item: _Queued) -> Task | None:
        """``item``'s task with its preparation, or bare; None when closed while waiting."""
        future = item.future
        if future is None or future.cancel():  # not started: its worker prepares it sooner
            return item.task
        while True:
            try:
                ahead: PreparedAhead = future.result(timeout=_WAIT_S)
                break
            except TimeoutError:
                if self._closed:
                    return None
            except Exception:  # a bug in preparing: the worker meets it again and reports it
                return item.task
        if not ahead.prepared.portable():
            return item.task
        if not item.first:
            ahead = replace(ahead, cache_use={"hits": {}, "misses": {}}, cache_error=None)
        return replace(item.task, prepared=ahead)

    def _discard(self, item: _Queued) -> None:
        if item.future is not None and item.first:
            item.future.cancel()
        self._drop(item.task)
