"""Manifests and jobs that do not come from a YAML file: stdin, Python dicts and JSON Lines.

- :func:`document_from_text` / :func:`document_from_data`: a manifest (YAML or JSON text, or a
  dict) under a stand-in path whose directory resolves relative paths (the working directory
  for stdin and dicts, unless told otherwise).
- :func:`load_jobs_jsonl`: one job per line, the form other tools generate. An optional first
  line ``{"defaults": {...}, "include": [...]}`` supplies defaults and presets, merged exactly as
  a manifest's ``defaults`` and ``include``. Every line is validated on its own: a bad line is
  reported with its line number and does not stop the good ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest.loader import ManifestDocument, resolve_document
from edtalk_cli.manifest.model import Job
from edtalk_cli.manifest.presets import Preset, discover_presets
from edtalk_cli.manifest.problems import ManifestValidationError, Problem
from edtalk_cli.manifest.yaml_marks import MDict, MList, Origin, load_yaml_text, mark_plain

__all__ = [
    "STDIN",
    "InvalidJob",
    "JsonlJobs",
    "document_from_data",
    "document_from_text",
    "load_jobs_jsonl",
    "read_stdin",
]

STDIN = "-"
HEADER_KEYS = frozenset({"defaults", "include"})


def _stand_in(name: str, base_dir: str | Path | None) -> Path:
    return (Path(base_dir) if base_dir is not None else Path.cwd()).resolve() / f"<{name}>"


def read_stdin(stream: IO[str] | None = None) -> str:
    """All of stdin (or ``stream``) as text."""
    return (stream or sys.stdin).read()


def document_from_text(
    text: str, *, name: str = "stdin", base_dir: str | Path | None = None
) -> ManifestDocument:
    """A manifest from YAML or JSON ``text``; problems point at ``<name>:line:col``."""
    path = _stand_in(name, base_dir)
    data, yaml_problems = load_yaml_text(text, path)
    return ManifestDocument(path, data, [Problem.from_yaml(p) for p in yaml_problems])


def document_from_data(
    data: Mapping[str, Any], *, name: str = "dict", base_dir: str | Path | None = None
) -> ManifestDocument:
    """A manifest from a dict (``version`` may be left out); problems name ``<name>`` and the field path."""
    path = _stand_in(name, base_dir)
    data = {"version": 1, **data} if isinstance(data, Mapping) else data
    return ManifestDocument(path, mark_plain(data, Origin(path, 0, 0, "")))


@dataclass
class InvalidJob:
    """A JSONL line that is not a valid job: its line, its name when readable, and the problems."""

    file: Path
    line: int
    name: str | None
    problems: list[Problem]

    @property
    def message(self) -> str:
        return "; ".join(p.format() for p in self.problems)


@dataclass
class JsonlJobs:
    """The jobs of a JSONL file that validated, and the lines that did not."""

    file: Path
    jobs: list[Job] = field(default_factory=list)
    invalid: list[InvalidJob] = field(default_factory=list)


def _header(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= HEADER_KEYS


def load_jobs_jsonl(
    source: str | Path,
    *,
    stream: IO[str] | None = None,
    presets: dict[str, Preset] | None = None,
    allow_outside: bool = False,
) -> JsonlJobs:
    """Jobs from a JSON Lines file (``-``: stdin, paths relative to the working directory).

    Raises :class:`ManifestValidationError` only when nothing can be rendered from the file: it
    cannot be read, or its defaults line is not JSON. Problems of a job line are returned in
    ``invalid`` with the line number, and the other lines are still loaded. Outputs must lie in
    the file's folder (the working directory for stdin) unless ``allow_outside``.
    """
    if str(source) == STDIN:
        path = _stand_in("stdin", None)
        text = read_stdin(stream)
    else:
        path = Path(source).resolve()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(
                f"cannot read jobs file {path}: {exc}", hint="give a UTF-8 .jsonl file"
            ) from None
    registry = dict(presets) if presets is not None else discover_presets()
    result = JsonlJobs(path)
    header: dict[str, Any] = {}
    header_origin = Origin(path, 1, 1, "")
    names: dict[str, int] = {}
    outputs: dict[Path, int] = {}
    seen_job = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        at = Origin(path, number, 1, "")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = Problem(
                Origin(path, number, exc.colno, ""),
                "",
                f"invalid JSON: {exc.msg}",
                "Write one JSON object per line",
            )
            if not seen_job and not result.invalid and '"defaults"' in line:
                raise ManifestValidationError([problem]) from None
            result.invalid.append(InvalidJob(path, number, None, [problem]))
            continue
        if _header(value):
            if seen_job or result.invalid or header:
                problem = Problem.at(
                    at,
                    "a defaults line may only be the first line",
                    'Move {"defaults": ...} to the first line',
                )
                result.invalid.append(InvalidJob(path, number, None, [problem]))
            else:
                header, header_origin = value, at
            continue
        seen_job = True
        name = value.get("name") if isinstance(value, dict) and isinstance(value.get("name"), str) else None
        if not isinstance(value, dict):
            problem = Problem.at(
                at, f"a job must be a JSON object, got {type(value).__name__}", 'Write {"name": ...}'
            )
            result.invalid.append(InvalidJob(path, number, None, [problem]))
            continue
        top = MDict()
        top.origin = Origin(path, header_origin.line, 1, "")
        top.set("version", 1, top.origin)
        for key in ("defaults", "include"):
            if key in header:
                top.set(key, mark_plain(header[key], Origin(path, header_origin.line, 1, key)), header_origin)
        jobs = MList()
        jobs.origin = at
        jobs.append(mark_plain(value, at))
        jobs.origins.append(at)
        top.set("jobs", jobs, at)
        manifest, problems = resolve_document(
            ManifestDocument(path, top), registry, allow_outside=allow_outside
        )
        if manifest is None or problems:
            result.invalid.append(InvalidJob(path, number, name, problems))
            continue
        job = manifest.jobs[0]
        if job.name in names or job.output in outputs:
            what = (
                f"job name {job.name!r} is also used on line {names[job.name]}"
                if job.name in names
                else f"output {job.output} is also written by line {outputs[job.output]}"
            )
            problem = Problem.at(at, what, "Give each job its own name and output")
            result.invalid.append(InvalidJob(path, number, name, [problem]))
            continue
        names[job.name] = number
        outputs[job.output] = number
        result.jobs.append(job)
    if not result.jobs and not result.invalid:
        raise ManifestValidationError(
            [
                Problem.at(
                    Origin(path, 1, 1, ""), "the jobs file has no jobs", "Write one JSON object per line"
                )
            ]
        )
    return result
