"""Fetch the official weights from the Hugging Face Hub and install them into a weights directory.

Every file is verified (checkpoints are read with :func:`read_checkpoint` and must be the
expected model; presets must be ``(1, 10)`` arrays) before it is copied in atomically.
Without network this fails within seconds (a short, retry-free probe of the Hub first) and
then installs from the local Hugging Face cache when the files are there.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import WeightsError
from edtalk_cli.weights.kinds import (
    HUB_FILES_URL,
    HUB_REPO_ID,
    KINDS,
    OFFICIAL_EMOTIONS,
    PRESETS_DIRNAME,
)
from edtalk_cli.weights.store import read_preset

DEFAULT_TIMEOUT = 10.0  # seconds to wait for the Hub to answer


@dataclass(frozen=True)
class RemoteFile:
    """One file of the official release: its path in the Hub repo and under the weights dir."""

    remote: str  # e.g. "ckpts/EDTalk.pt"
    local: str  # e.g. "EDTalk.pt"
    kind: str | None  # model kind of a checkpoint, None for an emotion preset


OFFICIAL_FILES: tuple[RemoteFile, ...] = (
    *(RemoteFile(f"ckpts/{s.filename}", s.filename, s.kind) for s in KINDS.values()),
    *(
        RemoteFile(f"ckpts/{PRESETS_DIRNAME}/{name}.npy", f"{PRESETS_DIRNAME}/{name}.npy", None)
        for name in OFFICIAL_EMOTIONS
    ),
)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _reason(exc: BaseException) -> str:
    """A one-line reason for a Hub failure."""
    from huggingface_hub.errors import HfHubHTTPError

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, HfHubHTTPError):
        return f"the Hugging Face Hub answered with an error: {text}"
    return f"the Hugging Face Hub could not be reached ({text})"


def _run_with_deadline(fn: Callable[[], object], deadline: float) -> BaseException | None:
    """Run ``fn`` in a daemon thread; its exception, a TimeoutError past ``deadline`` s, or None."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # reported to the caller
            outcome.append(exc)

    worker = threading.Thread(target=target, name="edtalk-hub-probe", daemon=True)
    worker.start()
    worker.join(deadline)
    if not outcome:  # e.g. a DNS lookup that ignores socket timeouts
        return TimeoutError(f"no answer within {deadline:.0f} s")
    return outcome[0]


def probe_hub(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    timeout: float = DEFAULT_TIMEOUT,
    endpoint: str | None = None,
) -> str | None:
    """None when the Hub serves ``filename``, else a one-line reason. One request, no retries."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    if _offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    exc = _run_with_deadline(
        lambda: get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint), timeout + 2.0
    )
    return None if exc is None else _reason(exc)


def _fetch(
    item: RemoteFile,
    *,
    repo_id: str,
    revision: str,
    cache_dir: Path,
    online: bool,
    timeout: float,
    force: bool,
    endpoint: str | None,
) -> tuple[Path | None, str | None]:
    """(path in the HF cache, None) or (None, reason)."""
    from huggingface_hub import hf_hub_download

    reason = None
    if online:
        try:
            path = hf_hub_download(
                repo_id,
                item.remote,
                revision=revision,
                cache_dir=str(cache_dir),
                etag_timeout=timeout,
                force_download=force,
                endpoint=endpoint,
            )
            return Path(path), None
        except Exception as exc:  # network dropped mid-way, 404, ...: try the cache below
            reason = _reason(exc)
    try:
        path = hf_hub_download(
            repo_id, item.remote, revision=revision, cache_dir=str(cache_dir), local_files_only=True
        )
        return Path(path), None
    except Exception:
        return None, reason or "not in the local Hugging Face cache"


def verify_file(path: Path, item: RemoteFile) -> None:
    """Raise a WeightsError unless ``path`` is a sound copy of ``item``."""
    if item.kind is None:
        read_preset(path)
        return
    from edtalk_cli.weights.checkpoint import read_checkpoint  # torch, only when verifying

    kind = read_checkpoint(path).kind
    if kind != item.kind:
        raise WeightsError(
            f"{path} (fetched as {item.remote}) holds {KINDS[kind].label}, not {KINDS[item.kind].label}"
        )


def install_file(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` through a temporary name in the same folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst, "wb") as fh, open(src, "rb") as source:
        shutil.copyfileobj(source, fh, 1 << 20)
    return dst


def _compact(names: Sequence[str]) -> str:
    """``a.pt, dir/{x,y}.npy``: file names with the ones in a common folder grouped."""
    groups: dict[str, list[str]] = {}
    for name in names:
        folder, _, leaf = name.rpartition("/")
        groups.setdefault(folder, []).append(leaf)
    parts = []
    for folder, leaves in groups.items():
        if not folder:
            parts += leaves
        elif len(leaves) == 1:
            parts.append(f"{folder}/{leaves[0]}")
        else:
            stems = [leaf.rsplit(".", 1)[0] for leaf in leaves]
            suffixes = {leaf.rsplit(".", 1)[-1] for leaf in leaves}
            parts.append(
                f"{folder}/{{{','.join(stems)}}}.{suffixes.pop()}"
                if len(suffixes) == 1
                else ", ".join(f"{folder}/{leaf}" for leaf in leaves)
            )
    return ", ".join(parts)


def manual_install_text(weights_dir: Path, files: Sequence[RemoteFile] = OFFICIAL_FILES) -> str:
    """How to place the official files by hand."""
    models = [f.local for f in files if f.kind is not None]
    presets = [f.local for f in files if f.kind is None]
    lines = [f"    {weights_dir / name}" for name in models]
    if presets:
        lines.append(f"    {weights_dir}/{_compact(presets)}  (emotion presets, optional)")
    return f"download the files by hand from {HUB_FILES_URL} and place them as:\n" + "\n".join(lines)


def download_official(
    weights_dir: str | Path,
    *,
    repo_id: str = HUB_REPO_ID,
    revision: str = "main",
    timeout: float = DEFAULT_TIMEOUT,
    endpoint: str | None = None,
    force: bool = False,
    convert: bool = False,
    files: Sequence[RemoteFile] = OFFICIAL_FILES,
) -> list[Path]:
    """Download, verify and install the official checkpoints and emotion presets.

    ``endpoint`` overrides the Hub URL (a mirror; default: $HF_ENDPOINT or huggingface.co).
    Returns the installed paths (plus ``.safetensors`` conversions with ``convert``). Falls back
    to the local Hugging Face cache when the Hub cannot be reached; raises a WeightsError saying
    how to place the files by hand when some file can be had neither way.
    """
    weights_dir = Path(weights_dir).expanduser()
    created = [p for p in (weights_dir, *weights_dir.parents) if not p.exists()]  # deepest first
    try:
        weights_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create weights directory {weights_dir}: {exc.strerror or exc}") from None
    cache_dir = hf_cache_dir()
    hub_problem = None
    if files:
        hub_problem = probe_hub(
            repo_id, files[0].remote, revision=revision, timeout=timeout, endpoint=endpoint
        )

    installed: list[Path] = []
    unavailable: dict[str, list[str]] = {}  # reason -> remote names
    rejected: list[str] = []
    for item in files:
        src, reason = _fetch(
            item,
            repo_id=repo_id,
            revision=revision,
            cache_dir=cache_dir,
            online=hub_problem is None,
            timeout=timeout,
            force=force,
            endpoint=endpoint,
        )
        if src is None:
            unavailable.setdefault(reason or "unavailable", []).append(item.local)
            continue
        try:
            verify_file(src, item)
        except WeightsError as exc:
            rejected.append(f"{item.remote} failed verification: {exc.message}")
            continue
        installed.append(install_file(src, weights_dir / item.local))

    if unavailable or rejected:
        lines = [f"could not get the EDTalk weights: {hub_problem or 'some files could not be downloaded'}"]
        for reason, names in unavailable.items():
            where = f" ({cache_dir})" if "cache" in reason else ""
            lines.append(f"  {reason}{where}: {_compact(names)}")
        lines += [f"  {line}" for line in rejected]
        if installed:
            lines.append(f"  {len(installed)} other file(s) were verified and installed in {weights_dir}")
        else:  # leave no empty weights directory behind
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise WeightsError("\n".join(lines), hint=manual_install_text(weights_dir, files))
    if convert:
        from edtalk_cli.weights.checkpoint import convert_to_safetensors  # torch, only when converting

        installed += [convert_to_safetensors(p) for p in list(installed) if p.suffix == ".pt"]
    return installed
