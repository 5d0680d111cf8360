"""Job fingerprints and the ``<output>.edtalk.json`` sidecars that make reruns resumable.

A fingerprint is the sha256 of a canonical JSON of

* ``inputs``: the sha256 of every input file's bytes (source, audio, mouth/pose/emotion
  references, pose tracks), by role (``source.path``, ``segments.0.pose.path``, ...);
* ``settings``: the resolved job (``job.model_dump(mode="json")``, i.e. after defaults and
  presets) without what does not change pixels: the name, manifest, output path, weights
  path, batch size and preset/emotion labels (the ``encode`` settings count, but only when
  they differ from the default, so sidecars written before the field existed stay valid);
  input paths are replaced by their content hash, so moving or renaming an input does not
  force a re-render but editing it does;
* ``weights``: the model's content identity (kind and the sha256 of the generator, Audio2Lip
  and emotion-vector files used; :meth:`edtalk_cli.weights.bundle.ModelFiles.content_identity`);
* with face enhancement only: its settings, and the GFPGAN weights as the input
  ``enhance.weights`` (a job without ``enhance`` keeps the fingerprint it had before the field);
* ``precision`` and the tool version;
* ``engine`` (what evaluated the model: torch or onnxruntime; their last bits differ), only when
  it is not the default ``torch``, so fingerprints written before the component existed stay
  valid.

The sidecar is written (atomically) once the mp4 is finished, just before it is renamed into
place, and records the mp4's size and sha256: an mp4 without a sidecar that matches both the expected fingerprint and
the file's bytes is not trusted and is rendered again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edtalk_cli import __version__
from edtalk_cli.atomic import write_json_atomic
from edtalk_cli.defaults import ENGINE
from edtalk_cli.hashing import FileHasher, sha256_file
from edtalk_cli.manifest.model import Encode, Job, PasteBack

SIDECAR_SUFFIX = ".edtalk.json"
SIDECAR_FORMAT = 1
_IGNORED_SETTINGS = ("name", "manifest", "output", "weights", "batch_size", "preset")
_IGNORED_ANYWHERE = ("label",)


def sidecar_path(output: str | Path) -> Path:
    """``out/a.mp4`` -> ``out/a.mp4.edtalk.json``."""
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def canonical_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ----- inputs and settings --------------------------------------------------------------------
def job_input_files(job: Job) -> dict[str, Path]:
    """Every input file of ``job`` by role (a JSON-pointer-like path into the job)."""
    found: dict[str, Path] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Path):
            found[where] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                if where == "" and key in ("manifest", "output", "weights"):
                    continue
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}.{i}")

    walk(job.model_dump(), "")
    return found


def job_settings(job: Job, digests: dict[str, str], model: str | None = None) -> dict[str, Any]:
    """The pixel-relevant settings of ``job``, with input paths replaced by ``sha256:<hex>``."""
    by_path = {str(path): digest for path, digest in digests.items()}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in _IGNORED_ANYWHERE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and value in by_path:
            return f"sha256:{by_path[value]}"
        return value

    data = job.model_dump(mode="json")
    for key in _IGNORED_SETTINGS:
        data.pop(key, None)
    if job.encode == Encode():  # the default encoder: fingerprints of earlier versions stay valid
        data.pop("encode", None)
    if job.source.paste_options == PasteBack():  # today's paste-back: earlier fingerprints stay valid
        data["source"].pop("paste_options", None)
    if job.enhance is None:  # no enhancement: fingerprints of earlier versions stay valid
        data.pop("enhance", None)
    if job.mouth.kind == "audio":  # no mouth clip to extend: earlier fingerprints stay valid
        data["mouth"].pop("mode", None)
    if model is not None:
        data["model"] = model
    return clean(data)


# ----- fingerprints ---------------------------------------------------------------------------
@dataclass
class Fingerprint:
    """The parts of a job's fingerprint and their digest."""

    inputs: dict[str, dict[str, str]]  # role -> {"path", "sha256"}
    settings: dict[str, Any]
    weights: dict[str, Any]
    precision: str
    tool: str = __version__
    engine: str = ENGINE  # pipeline/onnx_backend.py:ENGINES
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = canonical_digest(self.components())

    def components(self) -> dict[str, Any]:
        parts = {
            "inputs": {role: item["sha256"] for role, item in self.inputs.items()},
            "settings": self.settings,
            "weights": self.weights,
            "precision": self.precision,
            "tool": self.tool,
        }
        if self.engine != ENGINE:  # the default engine: fingerprints of earlier versions stay valid
            parts["engine"] = self.engine
        return parts

    def with_weights(self, weights: dict[str, Any]) -> Fingerprint:
        return Fingerprint(self.inputs, self.settings, weights, self.precision, self.tool, self.engine)

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            **self.components(),
            "input_paths": {r: i["path"] for r, i in self.inputs.items()},
        }


def job_fingerprint(
    job: Job,
    *,
    hasher: FileHasher,
    weights: dict[str, Any],
    precision: str,
    engine: str = ENGINE,
    model: str | None = None,
    extra_inputs: dict[str, Path] | None = None,
) -> Fingerprint:
    """Fingerprint ``job`` (hashing its input files; FileNotFoundError when one vanished) rendered
    at ``precision`` by ``engine``.

    ``extra_inputs``: files the job reads that it does not name (role -> path), e.g. the GFPGAN
    weights found in the weights directory (``enhance.weights``).
    """
    files = {**job_input_files(job), **(extra_inputs or {})}
    digests = {path: hasher.digest(path) for path in dict.fromkeys(files.values())}
    inputs = {role: {"path": str(path), "sha256": digests[path]} for role, path in files.items()}
    return Fingerprint(inputs, job_settings(job, digests, model), weights, precision, engine=engine)


# ----- sidecars -------------------------------------------------------------------------------
def write_sidecar(
    output: Path, fingerprint: Fingerprint, hasher: FileHasher, *, content: Path | None = None, **details: Any
) -> Path:
    """Record that ``output`` was rendered with ``fingerprint``.

    ``content`` is the finished file that is about to be renamed to ``output`` (default: ``output``
    itself, already in place). Writing the sidecar before that rename makes the pair atomic in
    effect: a kill between the two leaves a sidecar whose recorded hash the old (or missing)
    ``output`` does not match, so the job is rendered again, never trusted half-done.
    """
    source = output if content is None else content
    stat = source.stat()
    digest = hasher.digest(output) if content is None else sha256_file(content)
    data = {
        "format": SIDECAR_FORMAT,
        "tool": f"edtalk {__version__}",
        "fingerprint": fingerprint.digest,
        "output": {"name": output.name, "size": stat.st_size, "sha256": digest},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **details,
        "components": fingerprint.to_dict(),
    }
    path = sidecar_path(output)
    write_json_atomic(path, data)
    return path


def read_sidecar(output: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sidecar_status(output: Path, expected: str, hasher: FileHasher) -> tuple[bool, str]:
    """(up to date?, why not): the mp4 is there, its sidecar has ``expected`` and its bytes match."""
    if not output.is_file():
        return False, "no output yet"
    data = read_sidecar(output)
    if data is None or data.get("format") != SIDECAR_FORMAT:
        return False, "output has no valid sidecar (interrupted or foreign file)"
    if data.get("fingerprint") != expected:
        return False, "inputs, settings, weights, precision, engine or tool version changed"
    recorded = data.get("output") or {}
    try:
        if recorded.get("size") != output.stat().st_size or recorded.get("sha256") != hasher.digest(output):
            return False, "output file differs from the one the sidecar describes"
    except OSError as exc:
        return False, f"output unreadable: {exc}"
    return True, "up to date"
