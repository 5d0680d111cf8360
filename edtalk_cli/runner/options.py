"""What ``edtalk render`` can set about a batch (:class:`RunOptions`) and the checks of those settings.

Free of torch until :func:`resolve_run` or :meth:`RunOptions.render_options` is called, so the
API and the command line can build options without loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edtalk_cli.defaults import ENGINE, PRECISION
from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.probe import MAX_FRAME_SIDE
from edtalk_cli.pipeline.options import RenderOptions

if TYPE_CHECKING:
    from edtalk_cli.manifest.model import Job

__all__ = ["BACKENDS", "RunOptions", "resolve_run"]

BACKENDS = ("auto", "inline", "loky", "dask")


@dataclass
class RunOptions:
    """Everything ``edtalk render`` can set about a batch; each job's render settings come from
    :meth:`render_options`."""

    devices: str = "auto"
    workers_per_device: int = 1
    backend: str = "auto"  # auto: inline for one slot, else loky; dask with a scheduler
    scheduler: str | None = None  # dask scheduler address (None with backend dask: a LocalCluster)
    precision: str = PRECISION
    engine: str = ENGINE  # what evaluates the model: torch, or onnxruntime on an ONNX export
    onnx_dir: Path | None = None  # the export (`edtalk export onnx`) for engine onnxruntime
    batch_size: int | None = None  # None: runner/devices.py:default_batch_size (by the devices)
    threads: int | None = None  # CPU threads per worker; None: the cores split between the workers
    weights: Path | None = None
    model: str | None = None
    fail_fast: bool = False
    retries: int = 0
    force: bool = False
    chunk_frames: int = 0  # split jobs longer than this (0: never)
    on_locked: str = "wait"  # wait for jobs another process is rendering, or skip them
    lock_timeout: float = 300.0  # a lock not refreshed for this long is stale
    cache: bool = True  # content cache of crops, encodings, reference tracks
    cache_root: Path | None = None  # default: $EDTALK_CACHE or the user cache dir
    enhance: bool = False  # --enhance: the default face enhancement for jobs without their own
    overwrite: bool = False  # replace existing outputs that edtalk did not write (no sidecar)
    max_frame_size: int = MAX_FRAME_SIDE  # px per side of any image or video a job reads

    def render_options(
        self, job: Job, devices: Sequence[str], *, threads: int | None = None
    ) -> RenderOptions:
        """The :class:`RenderOptions` ``job`` renders with on ``devices``: the run's precision,
        engine and export, ``threads`` (the runner's resolved count; default: the run's
        ``threads``), and the batch size of
        :func:`~edtalk_cli.runner.devices.job_batch_size` (the job's, else the run's, else the
        devices' default)."""
        from edtalk_cli.runner.devices import job_batch_size  # imports torch

        return RenderOptions(
            precision=self.precision,
            batch_size=job_batch_size(job.batch_size, self.batch_size, list(devices)),
            threads=self.threads if threads is None else threads,
            engine=self.engine,
            onnx_dir=self.onnx_dir,
        )


def resolve_run(opts: RunOptions) -> tuple[RunOptions, str, list[str]]:
    """Check ``opts`` and return (resolved options, backend, worker slots); EdtalkError names the
    option and the fix. ``opts`` itself is left as it is.

    The resolved copy has what depends on the devices filled in: the dask backend when a scheduler
    is given and ``backend`` is auto, and the batch size
    (:func:`~edtalk_cli.runner.devices.default_batch_size`).
    """
    from edtalk_cli.pipeline.onnx_backend import check_engine  # imports torch: not for validate
    from edtalk_cli.runner.devices import (
        check_device_syntax,
        check_precision,
        default_batch_size,
        parse_devices,
        worker_slots,
    )

    if opts.backend not in BACKENDS:
        raise EdtalkError(f"--backend {opts.backend!r} is unknown", hint=f"use one of: {', '.join(BACKENDS)}")
    if opts.scheduler and opts.backend == "auto":
        opts = replace(opts, backend="dask")
    if opts.on_locked not in ("wait", "skip"):
        raise EdtalkError(f"--on-locked {opts.on_locked!r} is unknown", hint="use wait or skip")
    if opts.retries < 0:
        raise EdtalkError("--retries must be 0 or more")
    check_precision(opts.precision)
    check_engine(opts.engine, opts.onnx_dir, opts.precision)
    if opts.backend == "dask":
        check_device_syntax(opts.devices)
        slots = worker_slots([d.strip() for d in opts.devices.split(",")], opts.workers_per_device)
    else:
        slots = worker_slots(parse_devices(opts.devices), opts.workers_per_device)
    if opts.batch_size is None:
        opts = replace(opts, batch_size=default_batch_size(slots))
    backend = opts.backend
    if backend == "auto":
        backend = "inline" if len(slots) == 1 else "loky"
    if backend == "inline" and len(slots) > 1:
        raise EdtalkError(
            f"--backend inline runs one worker, but {len(slots)} slots were asked for",
            hint="use --backend loky (or auto) for several workers",
        )
    return opts, backend, slots
