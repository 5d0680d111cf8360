"""Content-addressed cache of per-input work: face crops, source encodings, reference tracks.

Entries are keyed by the sha256 of the input file's bytes (or of the image's pixels) plus every
parameter the value depends on, so a renamed or copied clip still hits, an edited one misses, and
jobs that share a source or a pose clip compute it once. The cache lives in ``$EDTALK_CACHE`` or
``<user cache dir>/edtalk/cache``::

    crops/ab/<key>.npz        FaceCrops (crops, optional frames, crop transforms)
    tracks/ab/<key>.npz       CoefficientTrack (mouth, pose, expression)
    encodings/ab/<key>.pt     SourceEncoding tensors (loaded with weights_only=True)
    digests/ab/<key>          sha256 of files by (path, size, mtime), see hashing.py

Every entry is written to an exclusively created temporary name and renamed, so concurrent
workers at worst compute the same value twice. Unreadable entries are recomputed. A write that
fails (full disk, read-only folder, any error of the serialiser) only costs speed: the value is
used uncached, the temporary file is deleted and ``write_error`` keeps the first failure so that
the caller can warn once. ``edtalk cache info`` / ``clear`` manage it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk_cli.atomic import TempFile
from edtalk_cli.errors import error_text
from edtalk_cli.hashing import FileHasher
from edtalk_cli.model.generator import SourceEncoding
from edtalk_cli.pipeline.engine import CoefficientTrack
from edtalk_cli.pipeline.faces import FaceCrops
from edtalk_cli.video import AlignTransform, CropTransform

CACHE_ENV = "EDTALK_CACHE"
FORMAT = 1
KINDS = ("crops", "tracks", "encodings")
MAX_FRAMES_BYTES = 512 << 20  # keep full source frames in an entry only up to this size


def cache_root() -> Path:
    """``$EDTALK_CACHE``, else ``platformdirs.user_cache_dir("edtalk")/cache``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("edtalk", appauthor=False))
    except ImportError:  # platformdirs is optional: the XDG default
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edtalk"
    return base / "cache"


def digest_store(root: Path) -> Path:
    return root / "digests"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class CacheStats:
    """Hits and misses per kind, for reports and tests."""

    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, hit: bool) -> None:
        target = self.hits if hit else self.misses
        target[kind] = target.get(kind, 0) + 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"hits": dict(self.hits), "misses": dict(self.misses)}


class ContentCache:
    """A :class:`edtalk_cli.pipeline.render.RenderCache` on disk."""

    def __init__(self, root: str | Path | None = None, hasher: FileHasher | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.hasher = hasher or FileHasher(digest_store(self.root))
        self.stats = CacheStats()
        self.write_error: str | None = None  # the first failed write, for one warning
        self.fail_writes = False  # fault injection: every write fails as on a full disk

    # ----- keys and files -----------------------------------------------------------------
    def _entry(self, kind: str, content: str, params: dict[str, Any], suffix: str) -> Path:
        key = hashlib.sha256(_canonical([FORMAT, kind, content, params]).encode()).hexdigest()
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def _lookup(self, kind: str, entry: Path, load: Callable[[Path], Any]) -> Any:
        if entry.is_file():
            try:
                value = load(entry)
            except Exception:  # corrupt or foreign entry: recompute and overwrite
                value = None
            if value is not None:
                self.stats.count(kind, True)
                return value
        self.stats.count(kind, False)
        return None

    def _store(self, entry: Path, save: Callable[[Path], None]) -> None:
        temp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            temp = TempFile(entry, f".tmp{entry.suffix}")
            temp.close_fd()
            if self.fail_writes:
                raise OSError(28, "No space left on device (injected fault)", str(temp.path))
            save(temp.path)
            temp.publish()
        except _TooLargeError:
            if temp is not None:
                temp.discard()
        except Exception as exc:  # full or read-only disk, serialiser errors: only costs speed
            if temp is not None:
                temp.discard()
            if self.write_error is None:
                self.write_error = error_text(exc).splitlines()[0]

    def _get_or_compute(self, kind: str, entry: Path, load: Callable, save: Callable, compute: Callable):
        """The cached value of ``entry``, else ``compute()``, stored (best effort) for next time."""
        value = self._lookup(kind, entry, load)
        if value is not None:
            return value
        value = compute()
        self._store(entry, lambda tmp: save(value, tmp))
        return value

    # ----- crops --------------------------------------------------------------------------
    def crops(self, path: Path, params: dict[str, Any], compute: Callable[[], FaceCrops]) -> FaceCrops:
        entry = self._entry("crops", self.hasher.digest(path), params, ".npz")
        return self._get_or_compute("crops", entry, _load_crops, _save_crops, compute)

    # ----- reference coefficient tracks ---------------------------------------------------
    def coefficients(
        self, path: Path, params: dict[str, Any], compute: Callable[[], CoefficientTrack]
    ) -> CoefficientTrack:
        entry = self._entry("tracks", self.hasher.digest(path), params, ".npz")
        return self._get_or_compute("tracks", entry, _load_track, _save_track, compute)

    # ----- source encodings ---------------------------------------------------------------
    def source_encoding(
        self, image: np.ndarray, params: dict[str, Any], compute: Callable[[], SourceEncoding]
    ) -> SourceEncoding:
        pixels = np.ascontiguousarray(image)
        content = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes()).hexdigest()
        entry = self._entry("encodings", content, params, ".pt")
        return self._get_or_compute("encodings", entry, _load_encoding, _save_encoding, compute)


# ----- (de)serialisation: plain arrays and tensors only, never pickles -------------------------
class _TooLargeError(Exception):
    """A value the cache does not keep by design (not a write failure)."""


def _save_crops(value: FaceCrops, tmp: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "crops": value.crops,
        "meta": np.array([value.missing_frames, int(value.is_video), int(value.transforms is not None)]),
    }
    if value.transforms and isinstance(value.transforms[0], AlignTransform):  # crop: auto
        arrays["align_matrices"] = np.stack([t.matrix for t in value.transforms])  # (K, 2, 3)
        first = value.transforms[0]
        arrays["align_shape"] = np.array([first.size, *first.image_shape], dtype=np.int64)
    elif value.transforms is not None:
        arrays["transforms"] = np.array(
            [[t.x0, t.y0, t.side, t.size, t.image_shape[0], t.image_shape[1]] for t in value.transforms],
            dtype=np.int64,
        ).reshape(-1, 6)
    for name in ("landmarks", "found"):
        if getattr(value, name) is not None:
            arrays[name] = getattr(value, name)
    if value.frames is not None:
        if value.frames.nbytes > MAX_FRAMES_BYTES:
            raise _TooLargeError()  # not cached: recomputed every time
        arrays["frames"] = value.frames
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_crops(entry: Path) -> FaceCrops:
    with np.load(entry, allow_pickle=False) as data:
        missing, is_video, has_transforms = (int(v) for v in data["meta"])
        transforms = None
        if has_transforms and "align_matrices" in data.files:
            size, h, w = (int(v) for v in data["align_shape"])
            transforms = [AlignTransform(m, size, (h, w)) for m in data["align_matrices"]]
        elif has_transforms:
            transforms = [
                CropTransform(int(x0), int(y0), int(side), int(size), (int(h), int(w)))
                for x0, y0, side, size, h, w in data["transforms"]
            ]
        frames = data["frames"] if "frames" in data.files else None
        landmarks = data["landmarks"] if "landmarks" in data.files else None
        found = data["found"] if "found" in data.files else None
        return FaceCrops(data["crops"], transforms, frames, missing, bool(is_video), landmarks, found)


def _save_track(value: CoefficientTrack, tmp: Path) -> None:
    arrays = {"mouth": value.mouth, "pose": value.pose}
    if value.expression is not None:
        arrays["expression"] = value.expression
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_track(entry: Path) -> CoefficientTrack:
    with np.load(entry, allow_pickle=False) as data:
        expression = data["expression"] if "expression" in data.files else None
        return CoefficientTrack(mouth=data["mouth"], pose=data["pose"], expression=expression)


def _save_encoding(value: SourceEncoding, tmp: Path) -> None:
    payload = {
        "latent": value.latent.detach().cpu(),
        "feats": [f.detach().cpu() for f in value.feats],
        "eem": None if value.eem_normalized is None else [n.detach().cpu() for n in value.eem_normalized],
    }
    torch.save(payload, tmp)


def _load_encoding(entry: Path) -> SourceEncoding:
    data = torch.load(entry, map_location="cpu", weights_only=True)
    return SourceEncoding(
        data["latent"], list(data["feats"]), None if data["eem"] is None else list(data["eem"])
    )


# ----- management --------------------------------------------------------------------------
@dataclass
class CacheInfo:
    """Entries and bytes per kind (``digests`` included)."""

    root: Path
    entries: dict[str, int]
    bytes: dict[str, int]

    @property
    def total_entries(self) -> int:
        return sum(self.entries.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def cache_info(root: str | Path | None = None) -> CacheInfo:
    """Count the entries and bytes under the cache root (temporary files excluded)."""
    root = Path(root) if root is not None else cache_root()
    entries: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for kind in (*KINDS, "digests"):
        count = size = 0
        folder = root / kind
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.startswith("."):
                    count += 1
                    size += path.stat().st_size
        entries[kind] = count
        sizes[kind] = size
    return CacheInfo(root, entries, sizes)


def clear_cache(root: str | Path | None = None) -> CacheInfo:
    """Delete every entry; returns what was there."""
    root = Path(root) if root is not None else cache_root()
    before = cache_info(root)
    for kind in (*KINDS, "digests"):
        shutil.rmtree(root / kind, ignore_errors=True)
    return before
