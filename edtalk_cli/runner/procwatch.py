"""Which local worker process died first.

When one loky worker dies, the pool kills every other worker too, so after a crash all the
workers are dead and the exit codes cannot tell the culprit (a kill -9 and the pool's own SIGKILL
look the same). :class:`ProcessWatch` waits on a pidfd per worker in a thread and numbers the
wake-ups ("waves"): the process that really crashed is seen dead in an earlier wave than the ones
the pool killed afterwards. Linux 5.3+; elsewhere nothing is recorded and callers fall back to
blaming every job in flight.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

__all__ = ["ProcessWatch"]


class ProcessWatch:
    """Records the wave in which each watched process exited."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # pid -> pidfd
        self._deaths: dict[int, int] = {}  # pid -> wave
        self._wave = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="edtalk-procwatch", daemon=True)
        self._thread.start()

    @property
    def wave(self) -> int:
        with self._lock:
            return self._wave

    def watch(self, pid: int) -> None:
        """Start watching ``pid`` (a no-op if it is watched already, or pidfds are unavailable)."""
        with self._lock:
            if pid in self._fds or pid in self._deaths or self._stop:
                return
            try:
                fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
            except (AttributeError, OSError):
                return
            self._fds[pid] = fd
        os.write(self._wake_w, b"x")

    def deaths(self, pids: set[int], after: int = 0) -> dict[int, int]:
        """pid -> wave for the processes of ``pids`` seen dead in a wave later than ``after``."""
        with self._lock:
            return {p: w for p, w in self._deaths.items() if p in pids and w > after}

    def wait_dead(self, pids: set[int], timeout: float) -> None:
        """Wait up to ``timeout`` seconds until every watched process of ``pids`` is seen dead."""
        event = threading.Event()
        for _ in range(max(1, int(timeout / 0.02))):
            with self._lock:
                alive = [p for p in pids if p in self._fds]
            if not alive:
                return
            event.wait(0.02)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    break
                by_fd = {fd: pid for pid, fd in self._fds.items()}
            poller = select.poll()
            for fd in (self._wake_r, *by_fd):
                poller.register(fd, select.POLLIN)
            ready = [fd for fd, _ in poller.poll(1000)]
            with self._lock:
                self._wave += 1
                for fd in ready:
                    if fd == self._wake_r:
                        os.read(self._wake_r, 4096)
                        continue
                    pid = by_fd[fd]
                    self._deaths[pid] = self._wave
                    self._fds.pop(pid, None)
                    os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
