"""The content identity of a model: which kind it is and the sha256 of every file it reads.

One identity serves fingerprints (the ``weights`` component), the content cache, reports and
the workers' model cache, so editing a weights file in place changes all of them at once.
File hashes are remembered per file version (:class:`edtalk_cli.hashing.FileHasher`), so asking
again costs a ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edtalk_cli.hashing import FileHasher, process_hasher

__all__ = ["identity_digest", "model_identity"]


def model_identity(
    kind: str, files: Iterable[Path], emotions: Iterable[Path], hasher: FileHasher | None = None
) -> dict[str, Any]:
    """``{"kind", "files": {name: sha256}, "emotions": {name: sha256}}`` of a model's files."""
    hasher = hasher or process_hasher()
    return {
        "kind": kind,
        "files": {p.name: hasher.digest(p) for p in files},
        "emotions": {p.name: hasher.digest(p) for p in emotions},
    }


def identity_digest(identity: dict[str, Any]) -> str:
    """A short hex name of :func:`model_identity` (16 characters), for logs and cache keys."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
