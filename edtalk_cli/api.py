"""The Python API: what ``edtalk render`` and ``edtalk validate`` do, for scripts (docs/api.md).

::

    import edtalk_cli as edtalk

    report = edtalk.render("batch.yaml", devices="cpu")          # or a dict, or a list of paths
    print(report.ok, [(o.name, o.status) for o in report.outcomes])

    result = edtalk.render_job({"name": "hi", "source": "anna.png", "audio": "hi.wav", "emotion": "happy"})

    for frame in edtalk.frames({"name": "hi", "source": "anna.png", "audio": "hi.wav"}):
        frame.index, frame.time_s, frame.image  # image: (H, W, 3) uint8

Everything the CLI checks is checked here, the same way: a manifest with problems raises
:class:`~edtalk_cli.manifest.ManifestValidationError` (each :class:`~edtalk_cli.manifest.Problem`
has the file, line, field path and fix) before anything renders; outputs are fingerprinted and
up-to-date ones are skipped, so running a batch again resumes it. Run options are the fields of
:class:`~edtalk_cli.runner.RunOptions` (their defaults are the CLI's), given as keywords.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from edtalk_cli import _API
from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest import (
    InvalidJob,
    Job,
    Manifest,
    ManifestDocument,
    ManifestValidationError,
    Problem,
    check_manifests,
    document_from_data,
    document_from_text,
    load_jobs_jsonl,
)
from edtalk_cli.manifest.sources import STDIN, read_stdin
from edtalk_cli.manifest.yaml_marks import Origin

if TYPE_CHECKING:
    import numpy as np

    from edtalk_cli.runner.options import RunOptions
    from edtalk_cli.runner.outcomes import EventFn, JobOutcome

    JobResult = JobOutcome

__all__ = list(_API)  # the names `edtalk_cli` re-exports

ManifestSource: TypeAlias = "str | Path | Mapping[str, Any] | Manifest | Job | JobSet | Sequence[Any]"
"""A path (``-``: stdin), a directory of manifests, a manifest dict, loaded jobs, or a list of these."""


class JobFailedError(EdtalkError):
    """:func:`render_job` could not render its job; ``outcome`` has the details."""

    def __init__(self, outcome: JobOutcome) -> None:
        self.outcome = outcome
        super().__init__(f"job '{outcome.name}' failed: {outcome.error}")


@dataclass
class JobSet:
    """Loaded jobs ready to render, and the JSONL lines that did not validate (they render nothing)."""

    jobs: list[Job] = field(default_factory=list)
    invalid: list[InvalidJob] = field(default_factory=list)
    manifests: list[Manifest] = field(default_factory=list)
    # problems that fail only their job (a missing input), by (job.manifest, job.name)
    job_problems: dict[tuple[Path, str], list[Problem]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # manifest problems, kept by load(strict=False)


@dataclass
class Report:
    """The outcome of :func:`render`: one :class:`JobOutcome` per job (invalid JSONL lines included)."""

    outcomes: list[JobOutcome]
    slots: list[str]
    backend: str
    wall_s: float
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C / SIGTERM / SIGHUP stopped the run
    threads_note: str = ""  # the CPU threads per worker and how they were chosen

    @property
    def ok(self) -> bool:
        """True when every job is done or skipped (up to date)."""
        return all(o.status in ("done", "skipped") for o in self.outcomes)

    def by_status(self, status: str) -> list[JobOutcome]:
        """The outcomes with ``status`` (done, skipped, failed or cancelled)."""
        return [o for o in self.outcomes if o.status == status]

    def meta(self, **extra: Any) -> dict[str, Any]:
        return {"slots": self.slots, "backend": self.backend, "wall_s": round(self.wall_s, 3), **extra}

    def write_json(self, path: str | Path, **extra: Any) -> Path:
        """Write the JSON report (the format of ``edtalk render --report``)."""
        from edtalk_cli.runner.report import write_report_json

        return write_report_json(Path(path), self.outcomes, **self.meta(**extra))

    def write_csv(self, path: str | Path) -> Path:
        """Write the flat CSV report (``edtalk render --report-csv``)."""
        from edtalk_cli.runner.report import write_report_csv

        return write_report_csv(Path(path), self.outcomes)


def __getattr__(name: str) -> Any:
    """``JobResult`` (what :func:`render_job` returns: :class:`JobOutcome`), ``JobOutcome``,
    ``RunOptions`` and ``RenderOptions`` (one job's render settings), imported on first use."""
    if name in ("JobResult", "JobOutcome"):
        from edtalk_cli.runner.outcomes import JobOutcome

        return JobOutcome
    if name == "RunOptions":
        from edtalk_cli.runner.options import RunOptions

        return RunOptions
    if name == "RenderOptions":
        from edtalk_cli.pipeline.options import RenderOptions

        return RenderOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Frame:
    """One output frame of :func:`frames`: its index, its time in seconds and its pixels."""

    index: int
    time_s: float
    image: np.ndarray  # (H, W, 3) uint8 RGB


# ----- loading ------------------------------------------------------------------------------------


def _documents(source: Any, base_dir: str | Path | None, out: list[Any], loaded: JobSet) -> None:
    """Sort ``source`` into manifest files/documents (``out``) and already-loaded jobs (``loaded``)."""
    if isinstance(source, JobSet):
        loaded.jobs.extend(source.jobs)
        loaded.invalid.extend(source.invalid)
        loaded.manifests.extend(source.manifests)
        loaded.job_problems.update(source.job_problems)
    elif isinstance(source, Manifest):
        loaded.manifests.append(source)
        loaded.jobs.extend(source.jobs)
    elif isinstance(source, Job):
        loaded.jobs.append(source)
    elif isinstance(source, ManifestDocument):
        out.append(source)
    elif isinstance(source, Mapping):
        out.append(document_from_data(source, base_dir=base_dir))
    elif isinstance(source, (str, Path)) and str(source) == STDIN:
        out.append(document_from_text(read_stdin(), base_dir=base_dir))
    elif isinstance(source, (str, Path)):
        out.append(Path(source))
    elif isinstance(source, Sequence):
        for item in source:
            _documents(item, base_dir, out, loaded)
    else:
        raise TypeError(f"cannot render a {type(source).__name__}; give a path, a manifest dict or jobs")


def load(
    source: ManifestSource | None = None,
    *,
    jobs_jsonl: str | Path | None = None,
    base_dir: str | Path | None = None,
    allow_outside: bool = False,
    strict: bool = True,
) -> JobSet:
    """Load and validate manifests (and a JSONL jobs file) into jobs, without rendering.

    ``source``: a manifest path, a directory of manifests, ``"-"`` (YAML or JSON on stdin), a
    manifest dict, loaded :class:`Job` / :class:`Manifest` objects, or a list of these. Relative
    paths in a dict or on stdin resolve against ``base_dir`` (default: the working directory).
    ``jobs_jsonl``: a JSON Lines file of jobs (``"-"``: stdin), see docs/manifest.md.
    ``allow_outside``: allow outputs outside the folder of their manifest. ``strict=False``: keep
    manifest problems in ``JobSet.problems`` (with every job that resolved) instead of raising.

    Raises :class:`ManifestValidationError` listing every problem of the manifests; problems of
    JSONL lines do not raise but come back in ``JobSet.invalid``.
    """
    if source is None and jobs_jsonl is None:
        raise EdtalkError(
            "no manifest or jobs file given", hint="give a manifest, '-' for stdin, or --jobs-jsonl FILE"
        )
    if jobs_jsonl is not None and str(jobs_jsonl) == STDIN and STDIN in _stdin_names(source):
        raise EdtalkError(
            "stdin can hold the manifest or the JSONL jobs, not both", hint="give one as a file"
        )
    documents: list[Any] = []
    result = JobSet()
    if source is not None:
        _documents(source, base_dir, documents, result)
    if documents:
        check = check_manifests(documents, allow_outside=allow_outside)
        if check.problems and strict:  # nothing renders: say everything, the jobs' own problems too
            raise ManifestValidationError(check.all_problems)
        result.problems.extend(check.problems)
        for manifest in check.manifests:
            result.manifests.append(manifest)
            result.jobs.extend(manifest.jobs)
        result.job_problems.update(check.job_problems)
    if jobs_jsonl is not None:
        lines = load_jobs_jsonl(jobs_jsonl, allow_outside=allow_outside)
        taken = {job.output: job for job in result.jobs}
        accepted: list[Job] = []
        for job in lines.jobs:
            if job.output in taken:
                origin = Origin(lines.file, 0, 0, "")
                problem = Problem.at(
                    origin,
                    f"job '{job.name}' writes {job.output}, which job '{taken[job.output].name}' writes too",
                    "Give each job its own output",
                )
                result.invalid.append(InvalidJob(lines.file, 0, job.name, [problem]))
                continue
            accepted.append(job)
        result.jobs.extend(accepted)
        if accepted:
            result.manifests.append(Manifest(path=lines.file, jobs=tuple(accepted)))
        result.invalid.extend(lines.invalid)
    return result


def _stdin_names(source: Any) -> list[str]:
    if isinstance(source, (str, Path)):
        return [str(source)]
    if isinstance(source, Sequence) and not isinstance(source, str):
        return [str(item) for item in source if isinstance(item, (str, Path))]
    return []


@dataclass
class Validation:
    """What :func:`check` found: the loaded jobs, each job's preflight result, and every problem."""

    jobs: JobSet
    results: list[Any]  # edtalk_cli.runner.preflight.JobCheck per resolved job: job, problems, audio_s, ...
    problems: list[Problem]


def check(
    source: ManifestSource | None = None,
    *,
    jobs_jsonl: str | Path | None = None,
    base_dir: str | Path | None = None,
    media: bool = False,
    weights: str | Path | None = None,
    model: str | None = None,
    allow_outside: bool = False,
    overwrite: bool = False,
    max_frame_size: int | None = None,
) -> Validation:
    """What ``edtalk validate`` checks, with the per-job results its table shows.

    Manifest problems, invalid JSONL lines, each job's inputs and outputs (the render's
    preflight) and its emotions against the weights the render will use (``weights`` / ``model``
    override the jobs'). ``media=True`` also decodes the media and looks for faces. Raises
    :class:`ManifestValidationError` only when no manifest can be read at all.
    """
    from edtalk_cli.manifest.emotions import check_emotions
    from edtalk_cli.manifest.loader import ManifestCheck
    from edtalk_cli.manifest.problems import dedupe
    from edtalk_cli.runner.preflight import check_jobs

    jobs = load(source, jobs_jsonl=jobs_jsonl, base_dir=base_dir, allow_outside=allow_outside, strict=False)
    found = ManifestCheck(jobs.manifests, jobs.problems, jobs.job_problems)
    limits = {} if max_frame_size is None else {"max_frame_side": max_frame_size}
    results = check_jobs(found, media=media, overwrite=overwrite, **limits)
    problems = [*found.problems, *(p for bad in jobs.invalid for p in bad.problems)]
    problems += [p for result in results for p in result.problems]
    problems += check_emotions([result.job for result in results], _emotions_for(weights, model))
    return Validation(jobs, results, dedupe(problems))


def validate(
    source: ManifestSource | None = None,
    *,
    jobs_jsonl: str | Path | None = None,
    base_dir: str | Path | None = None,
    media: bool = False,
    **checks: Any,
) -> list[Problem]:
    """Every problem ``edtalk validate`` reports, sorted by file and line: ``[]`` means valid.

    ``media=True`` also decodes the media and looks for faces; ``checks`` are the other
    keywords of :func:`check` (``weights``, ``model``, ``allow_outside``, ...).
    """
    try:
        return check(source, jobs_jsonl=jobs_jsonl, base_dir=base_dir, media=media, **checks).problems
    except ManifestValidationError as exc:
        return list(exc.problems)


def _emotions_for(weights: str | Path | None, model: str | None) -> Any:
    """``emotions_checker(weights, model)``, imported only when a job asks for an emotion."""
    checker: Any = None

    def check(job: Job) -> Any:
        nonlocal checker
        if checker is None:
            from edtalk_cli.manifest.emotions import emotions_checker

            checker = emotions_checker(weights, model)
        return checker(job)

    return check


# ----- rendering ----------------------------------------------------------------------------------


def _invalid_outcome(invalid: InvalidJob) -> JobOutcome:
    from edtalk_cli.runner.outcomes import JobOutcome

    where = f"line {invalid.line}" if invalid.line else str(invalid.file.name)
    return JobOutcome(
        name=invalid.name or where,
        manifest=str(invalid.file),
        status="failed",
        output="",
        error=f"invalid job ({where}): {invalid.message}",
    )


def _run_options(options: RunOptions | None, overrides: dict[str, Any]) -> RunOptions:
    """A copy of ``options`` (default: the CLI's defaults) with ``overrides``; unknown names raise TypeError."""
    from edtalk_cli.runner.options import RunOptions

    if "device" in overrides:  # the single-device spelling
        overrides["devices"] = overrides.pop("device")
    return dataclasses.replace(options or RunOptions(), **overrides)


def render(
    source: ManifestSource | None = None,
    *,
    jobs_jsonl: str | Path | None = None,
    base_dir: str | Path | None = None,
    options: RunOptions | None = None,
    on_event: EventFn | None = None,
    report: str | Path | None = None,
    **run_options: Any,
) -> Report:
    """Render every job of ``source`` (see :func:`load`); skip outputs that are up to date.

    Run options are :class:`RunOptions` fields as keywords (``devices="cpu"``, ``force=True``,
    ``precision="bf16"``, ...) on top of ``options``. ``on_event(name, payload)`` receives the
    runner's events (docs/batch.md). ``report``: also write the JSON report there.

    Never raises for a job that fails (its outcome says why); raises
    :class:`ManifestValidationError` before rendering anything when a manifest has problems.
    """
    from edtalk_cli.runner.batch import BatchRunner

    opts = _run_options(options, run_options)  # a misspelt option fails before anything is loaded
    if isinstance(source, JobSet) and jobs_jsonl is None:
        jobs = source
    else:
        jobs = load(source, jobs_jsonl=jobs_jsonl, base_dir=base_dir)
    from edtalk_cli.runner.preflight import check_job, refused_outcome

    runner = BatchRunner(opts)
    started = time.perf_counter()
    runnable, refused = [], []
    for job in jobs.jobs:
        known = jobs.job_problems.get((job.manifest, job.name), [])
        check = check_job(job, known, overwrite=opts.overwrite, max_frame_side=opts.max_frame_size)
        if not check.problems:
            runnable.append(job)
            continue
        refused.append(refused_outcome(job, check.problems))
        if on_event is not None:
            on_event("job_failed", {"name": job.name, "output": str(job.output), "error": refused[-1].error})
    outcomes = runner.run(runnable, on_event=on_event) if runnable else []
    outcomes += refused
    for invalid in jobs.invalid:  # JSONL lines that are no valid job: failed, named by their line
        outcomes.append(_invalid_outcome(invalid))
        if on_event is not None:
            on_event("job_failed", outcomes[-1].to_dict())
    result = Report(
        outcomes,
        list(runner.slots),
        runner.backend,
        time.perf_counter() - started,
        interrupted=runner.interrupted,
        threads_note=runner.threads_note,
    )
    if report is not None:
        result.write_json(report, devices=runner.options.devices)
    return result


def _one_job(job: Job | Mapping[str, Any], base_dir: str | Path | None) -> Job:
    if isinstance(job, Job):
        return job
    if not isinstance(job, Mapping):
        raise TypeError(f"a job is a dict or a Job, got {type(job).__name__}")
    loaded = load({"jobs": [dict(job)]}, base_dir=base_dir)
    return loaded.jobs[0]


def render_job(
    job: Job | Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    options: RunOptions | None = None,
    on_event: EventFn | None = None,
    **run_options: Any,
) -> JobOutcome:
    """Render one job (a job dict as in a manifest's ``jobs:`` list, or a :class:`Job`).

    Returns its outcome (status ``done``, or ``skipped`` when the output is up to date); raises
    :class:`ManifestValidationError` for an invalid job and :class:`JobFailedError` when the
    render fails.
    """
    report = render(_one_job(job, base_dir), options=options, on_event=on_event, **run_options)
    outcome = report.outcomes[0]
    if outcome.status not in ("done", "skipped"):
        raise JobFailedError(outcome)
    return outcome


def frames(
    job: Job | Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    options: RunOptions | None = None,
    **run_options: Any,
) -> Iterator[Frame]:
    """Render ``job`` frame by frame without writing a file: :class:`Frame` (index, time, uint8 image).

    Frames are produced batch by batch as they are consumed; memory does not grow with the
    job's length. The job's audio is not included (it is ``job.audio``, frame ``i`` is shown at
    ``i / job.fps``). Uses ``devices`` (one device), ``precision``, ``engine``, ``onnx_dir``,
    ``batch_size``, ``weights``, ``model``, ``enhance`` and ``cache`` of the run options.
    """
    from edtalk_cli.runner.devices import check_precision, parse_devices
    from edtalk_cli.runner.worker import new_renderer

    resolved = _one_job(job, base_dir)
    opts = _run_options(options, run_options)
    if opts.enhance:  # as BatchRunner.job_for
        from edtalk_cli.pipeline.enhance import with_default_enhancement

        resolved = with_default_enhancement(resolved)
    devices = parse_devices(opts.devices)
    if len(devices) != 1:
        raise EdtalkError(f"frames() renders on one device, got {opts.devices!r}", hint="give devices='cpu'")
    device = devices[0]
    check_precision(opts.precision)
    weights = opts.weights or resolved.weights
    renderer = new_renderer(
        None if weights is None else str(weights),
        opts.model or resolved.model,
        device,
        options=opts.render_options(resolved, [device]),
    )
    if opts.cache:
        from edtalk_cli.hashing import FileHasher
        from edtalk_cli.runner.cache import ContentCache, cache_root, digest_store

        root = Path(opts.cache_root) if opts.cache_root is not None else cache_root()
        renderer.cache = ContentCache(root, FileHasher(digest_store(root)))
    for index, image in enumerate(renderer.frames(resolved).images):
        yield Frame(index, index / resolved.fps, image)
