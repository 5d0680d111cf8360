"""A sequential frame tracker run on consecutive spans of a video in threads, with the result of
running it over the whole video in one thread.

A tracker carries state from frame to frame (which face it follows, its last landmarks), so a span
tracked from a fresh start is only right when its first frame resets everything but a small
``state`` (the face the track follows) and that state would have led to the same choice there. The
tracker says so (:meth:`SpanResult.continues`); a span that does not continue the track is
tracked again, from the true state, in the calling thread. Spans are cut every ``span`` frames,
where the tracker's recipe restarts by itself, so one thread and many give the same result.

The calling thread decodes (``frames`` is consumed there) and stitches; at most ``threads + 1``
spans of frames are held at once. Used only with trackers whose detector serves several threads at
once (:attr:`~edtalk_cli.video.faces.FaceDetector.thread_safe`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = ["SpanResult", "SpanTracker", "track_in_spans"]

State = Any  # what a span hands to the next one (the tracker's own type)


class SpanResult(Protocol):
    """What a tracker gives for one span of frames."""

    start: int  # index of the span's first frame in the video
    exit_state: State  # the state the next span starts from

    def continues(self, state: State) -> bool:
        """True when tracking this span from ``state`` (the previous span's exit) gives this result."""
        ...


Result = TypeVar("Result", bound=SpanResult)


class SpanTracker(Protocol[Result]):
    """A tracker fed the frames of one span in order."""

    def feed(self, frame: np.ndarray) -> None: ...

    def finish(self, last: bool) -> Result:
        """The span's result; ``last``: it ends the video."""
        ...


# new_tracker(start, state): a tracker for the span starting at frame ``start``, from ``state``
# (None: a fresh start, the state of a video's first frame)
NewTracker = Callable[[int, State | None], SpanTracker]


def _track(
    new_tracker: NewTracker, start: int, state: State | None, frames: Sequence[np.ndarray], last: bool
):
    tracker = new_tracker(start, state)
    for frame in frames:
        tracker.feed(frame)
    return tracker.finish(last)


def track_in_spans(frames: Iterable[np.ndarray], new_tracker: NewTracker, *, span: int, threads: int) -> list:
    """The results of tracking ``frames`` span by span (``span`` frames each, the last one shorter),
    in order; the same as one tracker over every frame would give, cut at the spans. ``threads`` <= 1
    tracks every frame with one tracker in this thread. No frames: an empty list."""
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    stream = iter(frames)
    if threads <= 1:
        tracker = new_tracker(0, None)
        count = 0
        for frame in stream:
            tracker.feed(frame)
            count += 1
        return [tracker.finish(True)] if count else []

    results: list = []
    state: State | None = None
    pending: deque[tuple[int, list[np.ndarray], bool, Future]] = deque()

    def stitch() -> None:
        nonlocal state
        start, chunk, last, future = pending.popleft()
        result = future.result()
        if start > 0 and not result.continues(state):
            result = _track(new_tracker, start, state, chunk, last)
        state = result.exit_state
        results.append(result)

    with ThreadPoolExecutor(threads, thread_name_prefix="edtalk-track") as pool:
        try:
            start = 0
            upcoming = next(stream, None)
            while upcoming is not None:
                chunk = [upcoming, *islice(stream, span - 1)]
                upcoming = next(stream, None)
                last = upcoming is None
                pending.append(
                    (start, chunk, last, pool.submit(_track, new_tracker, start, None, chunk, last))
                )
                start += len(chunk)
                while len(pending) > threads:
                    stitch()
            while pending:
                stitch()
        except BaseException:
            for *_, future in pending:
                future.cancel()
            raise
    return results
