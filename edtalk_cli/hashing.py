"""Content hashes of files, computed once per file version.

A file's sha256 is remembered under a key made of its resolved path, size, mtime (ns), inode and
device, in memory and (optionally) as one small file per entry under ``<cache>/digests/``, so a
250 MB weights file is read once, not at every run. One file per entry keeps concurrent writers
from different processes safe without any locking: each entry is written atomically
(:func:`edtalk_cli.atomic.atomic_write`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edtalk_cli.atomic import atomic_write

__all__ = ["FileHasher", "process_hasher", "sha256_file"]

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class FileHasher:
    """sha256 of file contents, cached by (path, size, mtime_ns, inode).

    ``store``: directory for the persistent cache (None: memory only). ``write=False`` reads the
    store but never writes it (``--dry-run`` writes nothing).
    """

    def __init__(self, store: str | Path | None = None, *, write: bool = True) -> None:
        self.store = Path(store) if store is not None else None
        self.write = write
        self._memory: dict[str, str] = {}

    @staticmethod
    def _key(path: Path) -> str:
        st = path.stat()
        ident = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
        return hashlib.sha1(ident.encode("utf-8", "surrogateescape")).hexdigest()

    def _entry(self, key: str) -> Path | None:
        return None if self.store is None else self.store / key[:2] / key

    def digest(self, path: str | Path) -> str:
        """The sha256 of ``path``'s content (FileNotFoundError when it is missing)."""
        path = Path(path).resolve()
        key = self._key(path)
        if key in self._memory:
            return self._memory[key]
        entry = self._entry(key)
        if entry is not None:
            try:
                value = entry.read_text().strip()
                if len(value) == 64:
                    self._memory[key] = value
                    return value
            except OSError:
                pass
        value = sha256_file(path)
        if self._key(path) != key:  # the file changed while it was read: do not remember it
            return value
        self._memory[key] = value
        if entry is not None and self.write:
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(entry) as fh:
                    fh.write(value)
            except OSError:  # a read-only cache only costs speed
                pass
        return value


_PROCESS_HASHER = FileHasher()


def process_hasher() -> FileHasher:
    """The memory-only hasher shared by this process (for callers without a run's own hasher)."""
    return _PROCESS_HASHER
