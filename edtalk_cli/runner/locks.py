"""Per-output lock files, so that two ``edtalk render`` processes never write the same output.

The lock of ``out/a.mp4`` is ``out/.a.mp4.edtalk.lock``, created with ``O_CREAT | O_EXCL`` (atomic,
also on NFS v3+) and holding JSON: pid, host, process start time, creation time, a random token.

A lock is *stale* when its holder is gone: same host and the pid is dead (or a zombie, or a new
process that reused the pid: the start time differs), or, for any host, when the file was not
refreshed for ``stale_after`` seconds (holders refresh its mtime while they work). A stale lock is
broken under a short-lived ``.break`` lock, and only if it still holds the token that was judged
stale, so two processes breaking the same lock at once never delete a fresh lock.

Anything at the lock path that is not a regular file (a folder, a symlink, a FIFO) is not a lock
any edtalk wrote: :meth:`OutputLock.acquire` raises an error naming it instead of waiting on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from edtalk_cli.errors import EdtalkError

LOCK_SUFFIX = ".edtalk.lock"
_EMPTY_GRACE_S = 10.0  # a lock file still empty after this long lost its writer
_BREAK_STALE_S = 30.0


def lock_path(output: str | Path) -> Path:
    """``dir/.NAME.edtalk.lock`` for ``dir/NAME``."""
    output = Path(output)
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True when process ``pid`` of this host runs (not a zombie; same start time when given)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X"):
            return False
    except OSError:
        pass
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False
    return True


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its holder."""

    pid: int
    host: str
    token: str
    created: float
    start: str | None = None
    run: str | None = None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


class OutputLock:
    """The lock of one output file. ``acquire()`` never blocks; ``release()`` only removes our own lock."""

    def __init__(self, output: str | Path, *, stale_after: float = 300.0, run: str | None = None) -> None:
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.stale_after = stale_after
        self.run = run
        self.token: str | None = None

    @property
    def held(self) -> bool:
        return self.token is not None

    def read(self) -> tuple[LockInfo | None, float | None]:
        """(holder, age in seconds) of the current lock file; (None, None) when there is none."""
        try:
            text = self.path.read_text()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, 0.0
        try:
            data = json.loads(text)
            info = LockInfo(
                int(data["pid"]),
                str(data["host"]),
                str(data["token"]),
                float(data["created"]),
                data.get("start"),
                data.get("run"),
            )
        except (ValueError, KeyError, TypeError):
            return None, age  # being written, or garbage
        return info, age

    def is_stale(self, info: LockInfo | None, age: float | None) -> bool:
        if age is None:
            return False  # no lock at all
        if info is None:
            return age > _EMPTY_GRACE_S
        if age > self.stale_after:
            return True
        return info.host == socket.gethostname() and not pid_alive(info.pid, info.start)

    def _check_not_foreign(self) -> None:
        """Raise when something other than a lock file sits at the lock path (it would never free)."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISREG(mode):
            return
        what = "a folder" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else "a special file"
        raise EdtalkError(
            f"'{self.path}' is {what}, where edtalk keeps the lock file of '{self.output}'",
            hint=f"remove or rename '{self.path}' (edtalk never writes one there), then run again",
        )

    def acquire(self) -> bool:
        """Take the lock if it is free or stale; False when a live holder has it.

        Raises :class:`EdtalkError` when a folder or anything else but a lock file is in the way."""
        if self.token is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            token = secrets.token_hex(8)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                self._check_not_foreign()
                info, age = self.read()
                if age is None:
                    continue  # released meanwhile: try again
                if not self.is_stale(info, age) or not self._break(info):
                    return False
                continue
            pid = os.getpid()
            record = {
                "pid": pid,
                "host": socket.gethostname(),
                "token": token,
                "created": time.time(),
                "start": _proc_start(pid),
                "run": self.run,
            }
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(record))
            self.token = token
            return True
        return False

    def _break(self, judged: LockInfo | None) -> bool:
        """Remove the stale lock ``judged`` unless someone replaced it meanwhile."""
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - breaker.stat().st_mtime > _BREAK_STALE_S:
                    breaker.unlink(missing_ok=True)  # its breaker died
            except OSError:
                pass
            return False
        os.close(fd)
        try:
            info, age = self.read()
            same = (info is None and judged is None) or (
                info is not None and judged is not None and info.token == judged.token
            )
            if age is not None and same:
                self.path.unlink(missing_ok=True)
            return True
        finally:
            breaker.unlink(missing_ok=True)

    def refresh(self) -> None:
        """Touch the lock so that it does not look abandoned (holders call this while working)."""
        if self.token is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Delete the lock file if it is still ours."""
        if self.token is None:
            return
        info, _ = self.read()
        if info is not None and info.token == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None
