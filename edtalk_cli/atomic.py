"""Atomic file writes: an exclusively created temporary file next to the target, then a rename.

The temporary file is made with :func:`tempfile.mkstemp` (``O_CREAT | O_EXCL``, an unpredictable
name) in the target's own folder, so a file or symlink planted there in advance is never opened or
followed, and the final :func:`os.replace` stays on one file system. Before the rename the name is
checked to still be the file that was created (same inode), so a name swapped for a symlink
meanwhile is refused instead of moved into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["TempFile", "atomic_write", "write_json_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class TempFile:
    """An exclusively created temporary file beside ``target`` (name ``.TARGET.<random><suffix>``).

    ``fd`` is open for writing; :meth:`publish` renames it onto ``target``; :meth:`discard` deletes
    it. The file gets the permissions a plain ``open(target, "w")`` would (0o666 minus the umask).
    """

    def __init__(self, target: str | Path, suffix: str = ".tmp") -> None:
        self.target = Path(target)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=suffix, dir=self.target.parent)
        self.fd: int | None = fd
        self.path = Path(name)
        os.fchmod(fd, 0o666 & ~_umask())
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)

    def is_ours(self) -> bool:
        """True while ``path`` is still the regular file this object created (not a swapped-in link)."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == self._identity

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def publish(self) -> Path:
        """Rename the temporary file onto ``target`` (refused if the name no longer is our file)."""
        self.close_fd()
        if not self.is_ours():
            raise OSError(f"temporary file '{self.path}' was replaced by something else; not publishing it")
        os.replace(self.path, self.target)
        return self.target

    def discard(self) -> None:
        """Close and delete the temporary file (idempotent; never deletes what replaced it)."""
        self.close_fd()
        if self.is_ours():
            with contextlib.suppress(OSError):
                self.path.unlink()


@contextlib.contextmanager
def atomic_write(target: str | Path, mode: str = "w", suffix: str = ".tmp") -> Iterator[Any]:
    """``with atomic_write(path) as fh: fh.write(...)``: the file appears whole at ``path`` or not at all.

    Text modes write UTF-8 whatever the locale; ``"wb"`` gives a binary file object (for
    ``torch.save``, ``np.save``, ``PIL.Image.save(fh, format=...)``).
    """
    temp = TempFile(target, suffix)
    assert temp.fd is not None
    encoding = None if "b" in mode else "utf-8"
    try:
        with os.fdopen(temp.fd, mode, encoding=encoding, closefd=False) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        temp.publish()
    except BaseException:
        temp.discard()
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (fsynced)."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, default=str)
