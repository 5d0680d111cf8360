"""The run's event file and the parent's background threads: following the workers' JSON-lines
events as they are appended, and keeping the run's output locks fresh."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edtalk_cli.runner.locks import OutputLock

__all__ = ["follow_events", "keep_locks_fresh", "read_events"]

Record = dict[str, Any]


def _records(lines: Iterable[str]) -> Iterable[Record]:
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:  # a line cut short by a killed worker
            continue


def read_events(path: Path) -> list[Record]:
    """Every complete record in the event file ``path`` so far (none when it cannot be read)."""
    try:
        return list(_records(path.read_text().splitlines()))
    except OSError:
        return []


def follow_events(path: Path, stop: threading.Event, on_record: Callable[[Record], None]) -> None:
    """Call ``on_record`` for each record appended to ``path`` until ``stop`` is set (then drains)."""
    buffer = ""
    with open(path) as fh:
        while True:
            chunk = fh.read()
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for record in _records(lines):
                    on_record(record)
                continue
            if stop.is_set():
                return
            stop.wait(0.1)


def keep_locks_fresh(
    stop: threading.Event, lock_timeout: float, held: Callable[[], list[OutputLock]]
) -> None:
    """Refresh the locks ``held()`` returns, often enough for ``lock_timeout``, until ``stop`` is set."""
    every = max(0.5, min(30.0, lock_timeout / 4))
    while not stop.wait(every):
        for lock in held():
            lock.refresh()
