"""Run many jobs: load each model bundle once, isolate failures, report every outcome."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.model import Job
from edtalk_cli.pipeline.models import ModelBundle, load_bundle
from edtalk_cli.pipeline.render import JobRenderer, ProgressFn


@dataclass
class JobOutcome:
    """One line of the batch report."""

    name: str
    manifest: str
    status: str  # "done" or "failed"
    output: str
    device: str
    frames: int = 0
    wall_s: float = 0.0
    frames_per_s: float = 0.0
    error: str | None = None
    notes: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


EventFn = Callable[[str, dict], None]  # (event name, payload)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else is checked and returned."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdtalkError(
            f"--device {device}: CUDA is not available on this machine", hint="use --device cpu"
        )
    try:
        torch.device(device)
    except RuntimeError:
        raise EdtalkError(f"--device {device!r} is not a device", hint="use cpu, cuda or cuda:N") from None
    return device


class BatchRunner:
    """Renders jobs one after another on one device, keeping loaded models across jobs."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 8,
        weights: Path | None = None,
        model: str | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.weights = weights
        self.model = model
        self.fail_fast = fail_fast
        self._renderers: dict[tuple, JobRenderer] = {}

    def renderer_for(self, job: Job) -> JobRenderer:
        weights = self.weights or job.weights
        model = self.model or job.model
        key = (str(weights), model)
        if key not in self._renderers:
            bundle: ModelBundle = load_bundle(weights, model, device=self.device)
            self._renderers[key] = JobRenderer(
                bundle,
                device=self.device,
                precision=self.precision,
                batch_size=job.batch_size or self.batch_size,
            )
        renderer = self._renderers[key]
        renderer.engine.batch_size = job.batch_size or self.batch_size
        return renderer

    def run(
        self,
        jobs: list[Job],
        *,
        on_event: EventFn | None = None,
        progress_for: Callable[[Job], ProgressFn | None] | None = None,
    ) -> list[JobOutcome]:
        """Render every job; a failing job is reported and the others still run (unless fail_fast)."""
        emit = on_event or (lambda name, payload: None)
        outcomes: list[JobOutcome] = []
        for job in jobs:
            emit("job_start", {"job": job.name, "output": str(job.output)})
            started = time.perf_counter()
            try:
                fresh = len(self._renderers)
                renderer = self.renderer_for(job)
                if len(self._renderers) > fresh:
                    bundle = renderer.bundle
                    emit(
                        "model_loaded",
                        {"description": bundle.description, "demo": bundle.is_demo, "device": self.device},
                    )
                result = renderer.render(job, progress_for(job) if progress_for else None)
            except (EdtalkError, OSError, ValueError, RuntimeError) as exc:
                message = exc.message if isinstance(exc, EdtalkError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, EdtalkError) and exc.hint:
                    message += f" (hint: {exc.hint})"
                outcome = JobOutcome(
                    job.name,
                    str(job.manifest),
                    "failed",
                    str(job.output),
                    self.device,
                    wall_s=time.perf_counter() - started,
                    error=message,
                )
                emit("job_failed", {**outcome.to_dict(), "traceback": traceback.format_exc(limit=5)})
                outcomes.append(outcome)
                if self.fail_fast:
                    break
                continue
            outcome = JobOutcome(
                job.name,
                str(job.manifest),
                "done",
                str(result.output),
                self.device,
                frames=result.frames,
                wall_s=result.wall_s,
                frames_per_s=result.frames_per_s,
                notes=result.notes or None,
            )
            emit("job_done", outcome.to_dict())
            outcomes.append(outcome)
        return outcomes
