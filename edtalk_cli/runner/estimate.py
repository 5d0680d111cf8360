"""``--dry-run``: validate every job and its media, and estimate the batch. Renders and writes nothing.

The estimate comes from a quick calibration: the job's model renders a warm-up batch and two
timed batches of random coefficients on each device, giving frames/s; the jobs (or their chunks)
are then placed on the worker slots longest first. It covers the generator only (no face
detection, paste-back or encoding), so it is a lower bound for small models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edtalk_cli.errors import EdtalkError, error_text
from edtalk_cli.hashing import FileHasher
from edtalk_cli.manifest.model import Job
from edtalk_cli.runner.batch import BatchRunner, RunOptions
from edtalk_cli.runner.cache import digest_store
from edtalk_cli.runner.chunks import plan_chunks
from edtalk_cli.runner.fingerprint import sidecar_status


@dataclass
class PlannedJob:
    """One job of the plan."""

    name: str
    output: Path
    action: str  # render, skip (up to date), locked (another process renders it) or invalid
    frames: int | None = None
    duration_s: float | None = None
    chunks: int = 1
    problems: list[str] = field(default_factory=list)
    estimate_s: float | None = None
    fingerprint: str | None = None


@dataclass
class BatchPlan:
    """What ``edtalk render --dry-run`` prints."""

    jobs: list[PlannedJob]
    slots: list[str]
    backend: str
    calibration: dict[str, float]  # device -> frames/s of one worker alone on it
    estimate_s: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [p for job in self.jobs for p in job.problems]

    @property
    def frames(self) -> int:
        return sum(j.frames or 0 for j in self.jobs if j.action == "render")


_CALIBRATED: dict[tuple, float] = {}  # per process: a dry run in a long-lived process calibrates once


def calibrate(
    device: str, *, weights: str | Path | None, model: str, precision: str, batch_size: int, batches: int = 2
) -> float:
    """Frames/s of the model on ``device``: one warm-up batch, then ``batches`` timed ones."""
    key = (device, str(weights), model, precision, batch_size, batches)
    if key not in _CALIBRATED:
        _CALIBRATED[key] = _calibrate(device, weights, model, precision, batch_size, batches)
    return _CALIBRATED[key]


def _calibrate(
    device: str, weights: str | Path | None, model: str, precision: str, batch_size: int, batches: int
) -> float:
    import torch

    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.weights.bundle import ModelBundle

    bundle = ModelBundle.from_dir(weights, model, device=device)
    engine = RenderEngine(bundle.generator, device=device, precision=precision, batch_size=batch_size)
    rng = np.random.default_rng(0)
    engine.set_source(rng.integers(0, 256, (engine.size, engine.size, 3), dtype=np.uint8))
    cfg = bundle.generator.config
    frames = batch_size * (batches + 1)
    mouth = rng.normal(size=(frames, cfg.lip_dim))
    pose = rng.normal(size=(frames, cfg.pose_dim))
    expression = rng.normal(size=(frames, cfg.exp_dim)) if engine.has_expression else None
    coeffs = engine.coefficient_matrix(frames, mouth, pose, expression)
    timed, last = 0.0, time.perf_counter()
    for i, images in enumerate(engine.render_batches(coeffs)):
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        now = time.perf_counter()
        if i > 0:
            timed += now - last
        last = now
    return batch_size * batches / timed if timed > 0 else float("inf")


def _placement(items: list[float], speeds: list[float]) -> float:
    """Makespan of placing work items (frames) longest first on slots of the given speeds."""
    finish = [0.0] * len(speeds)
    for frames in sorted(items, reverse=True):
        slot = min(range(len(speeds)), key=lambda i: finish[i] + frames / speeds[i])
        finish[slot] += frames / speeds[slot]
    return max(finish, default=0.0)


def plan_batch(jobs: list[Job], options: RunOptions, *, calibration: bool = True) -> BatchPlan:
    """Validate ``jobs`` (manifest, weights, media, faces) and estimate the run, writing nothing."""
    from edtalk_cli.manifest.emotions import check_emotions, emotions_checker
    from edtalk_cli.manifest.media import inspect_media
    from edtalk_cli.runner.preflight import check_job

    runner = BatchRunner(options)
    runner.hasher = FileHasher(digest_store(runner.root), write=False)
    emotions_for = emotions_checker(options.weights, options.model)
    jobs = [runner.job_for(job) for job in jobs]
    planned: list[PlannedJob] = []
    for job in jobs:
        item = PlannedJob(job.name, job.output, "render")
        planned.append(item)
        checked = check_job(job, overwrite=options.overwrite, max_frame_side=options.max_frame_size)
        item.problems.extend(p.format() for p in checked.problems)
        report = inspect_media(job)
        item.frames, item.duration_s = report.num_frames, report.duration_s
        item.problems.extend(report.problems)
        item.problems.extend(p.format() for p in check_emotions([job], emotions_for))
        try:
            fingerprint = runner.fingerprint(job)
            item.fingerprint = fingerprint.digest
        except EdtalkError as exc:
            item.problems.append(f"job {job.name!r}: {error_text(exc)}")
            fingerprint = None
        if item.problems:
            item.action = "invalid"
            continue
        assert fingerprint is not None
        if not options.force and sidecar_status(job.output, fingerprint.digest, runner.hasher)[0]:
            item.action = "skip"
        else:
            from edtalk_cli.runner.locks import OutputLock

            lock = OutputLock(job.output, stale_after=options.lock_timeout)
            info, age = lock.read()
            if age is not None and not lock.is_stale(info, age):
                item.action = "locked"
        if options.chunk_frames > 0 and item.frames:
            item.chunks = max(1, len(plan_chunks(item.frames, options.chunk_frames, job.batch_size)))

    plan = BatchPlan(planned, list(runner.slots), runner.backend, {}, None)
    if any(job.enhance is not None for job in jobs):
        plan.notes.append(
            "the estimate leaves out face enhancement (GFPGAN), which costs more than the model"
        )
    if not calibration or runner.backend == "dask":
        if runner.backend == "dask":
            plan.notes.append("no estimate: the devices of a dask cluster are resolved on its workers")
        return plan
    todo = [(job, item) for job, item in zip(jobs, planned) if item.action == "render" and item.frames]
    if not todo:
        plan.estimate_s = 0.0
        return plan
    job0 = todo[0][0]
    weights, model = job0.model_choice(options.weights, options.model)
    for device in dict.fromkeys(runner.slots):
        try:
            plan.calibration[device] = calibrate(
                device,
                weights=weights,
                model=model,
                precision=options.precision,
                batch_size=job0.batch_size,
            )
        except EdtalkError as exc:
            plan.notes.append(f"calibration on {device} failed: {exc.message}")
            return plan
    # slots on one device share it
    speeds = [plan.calibration[d] / runner.slots.count(d) for d in runner.slots]
    items: list[float] = []
    for job, item in todo:
        assert item.frames is not None
        item.estimate_s = item.frames / max(plan.calibration.values())
        if item.chunks > 1:
            items.extend(b - a for a, b in plan_chunks(item.frames, options.chunk_frames, job.batch_size))
        else:
            items.append(item.frames)
    plan.estimate_s = _placement(items, speeds)
    return plan
