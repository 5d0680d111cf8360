"""Devices and worker slots.

``--devices`` is a comma-separated list: ``auto`` (every CUDA GPU, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``; a device may repeat (``cpu,cpu``). With ``--workers-per-device W`` the
run has ``len(devices) * W`` *slots*, interleaved (``cuda:0, cuda:1, cuda:0, cuda:1``).

Each worker process claims one slot for its lifetime, on its own host: an ``flock`` on
``<tmp>/edtalk-slots-<run>/slot-<i>`` that the kernel drops when the process dies, so a respawned
worker takes over the slot of a dead one. That lets a joblib pool (loky, or dask workers) hand
jobs out one by one while each worker stays on one device and keeps its models loaded.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from edtalk_cli.defaults import CPU_BATCH_SIZE, GPU_BATCH_SIZE
from edtalk_cli.errors import EdtalkError

try:  # POSIX only; elsewhere slots are shared by pid
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def resolve_device(device: str, option: str = "--devices") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else is checked and returned.

    ``option`` names the command-line option in the error messages.
    """
    device = device.strip()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdtalkError(
            f"{option} {device}: CUDA is not available on this machine", hint=f"use {option} cpu"
        )
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise EdtalkError(
            f"{option}: {device!r} is not a device", hint="use auto, cpu, cuda or cuda:N"
        ) from None
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise EdtalkError(
            f"{option}: {device} does not exist (this machine has {torch.cuda.device_count()} GPUs)",
            hint="number GPUs from cuda:0",
        )
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise EdtalkError(f"{option}: {device!r} is not supported", hint="use cpu or cuda:N")
    return device


def auto_devices() -> list[str]:
    """Every visible GPU (``cuda:0`` ...), else ``["cpu"]``."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def parse_devices(spec: str) -> list[str]:
    """``"auto"``, ``"cpu"``, ``"cuda:0,cuda:1"``, ``"cpu,cpu"`` -> a checked list of devices."""
    parts = [p.strip() for p in str(spec).split(",")]
    if not spec or not all(parts):
        raise EdtalkError(
            f"--devices {spec!r} is empty or has an empty item", hint="e.g. --devices cuda:0,cuda:1"
        )
    devices: list[str] = []
    for part in parts:
        devices.extend(auto_devices() if part == "auto" else [resolve_device(part)])
    return devices


def check_device_syntax(spec: str) -> None:
    """Syntax check only (for a cluster: the devices are resolved on each worker's host)."""
    parts = [p.strip() for p in str(spec).split(",")]
    for part in parts:
        if part == "auto":
            continue
        try:
            torch.device(part)
        except RuntimeError:
            raise EdtalkError(
                f"--devices: {part!r} is not a device", hint="use auto, cpu, cuda or cuda:N, comma-separated"
            ) from None


def worker_slots(devices: list[str], workers_per_device: int) -> list[str]:
    """Slots in hand-out order: every device once, then every device again, ..."""
    if workers_per_device < 1:
        raise EdtalkError("--workers-per-device must be at least 1")
    return [d for _ in range(workers_per_device) for d in devices]


def default_batch_size(devices: list[str]) -> int:
    """Frames per engine batch when none is given: ``CPU_BATCH_SIZE`` (1) if every device is a CPU,
    else ``GPU_BATCH_SIZE`` (8).

    On the CPU batch 1 is fastest (1.3x batch 8 with 1 or 2 threads, and less memory; see
    benchmarks/RESULTS.md); GPUs need batches to be used well.
    """
    return CPU_BATCH_SIZE if all(d.split(":")[0] == "cpu" for d in devices) else GPU_BATCH_SIZE


def job_batch_size(job_batch_size: int | None, run_batch_size: int | None, devices: list[str]) -> int:
    """Frames per engine batch of one job: the job's ``batch_size``, else the run's, else the
    default for ``devices`` (:func:`default_batch_size`)."""
    if job_batch_size is not None:
        return job_batch_size
    if run_batch_size is not None:
        return run_batch_size
    return default_batch_size(devices)


_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_cpu_quota(root: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if unlimited."""
    root = _CGROUP_ROOT if root is None else root
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuBudget:
    """How many cores this process may use now, and why (see :func:`cpu_budget`)."""

    affinity: int  # CPUs this process may be scheduled on
    quota: float | None  # CPUs the cgroup quota allows (None: no quota)
    load: float  # 1-minute load average: runnable processes, ours included
    free: int  # cores worth using: min(affinity, ceil(quota)) minus the load, at least 1

    def threads_per_worker(self, workers: int) -> int:
        """CPU threads for each of ``workers`` worker processes on this host (at least 1)."""
        return max(1, self.free // max(1, workers))

    def describe(self, workers: int = 1) -> str:
        quota = f", cgroup quota {self.quota:g}" if self.quota is not None else ""
        limit = f"{self.affinity} cores{quota}"
        return f"{self.threads_per_worker(workers)} thread(s) per worker: {limit}, load {self.load:.1f}"


def cpu_budget() -> CpuBudget:
    """The default CPU budget, stated once: cores actually available to this process right now.

    ``min(CPUs in the affinity mask, the cgroup CPU quota rounded up)`` minus the 1-minute load
    average rounded to the nearest whole process, at least 1. On a machine that other work keeps
    busy, threads beyond the free cores only add OpenMP contention (the demo render measured 16 s
    with one thread against 57-96 s with the default on a busy 2-core machine).
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    limit = affinity if quota is None else max(1, min(affinity, math.ceil(quota)))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return CpuBudget(affinity, quota, load, max(1, limit - int(load + 0.5)))


def threads_per_worker(slots: list[str]) -> int:
    """CPU threads for one worker: this host's free cores (:func:`cpu_budget`) split between the slots."""
    return cpu_budget().threads_per_worker(len(slots))


class SlotClaim:
    """A slot held by this process (the open, flocked file keeps it)."""

    def __init__(self, run: str, index: int, device: str, handle: IO[str] | None, shared: bool) -> None:
        self.run = run
        self.index = index
        self.device = device
        self.shared = shared  # True when every slot was taken and this one is shared
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def slots_dir(run: str) -> Path:
    return Path(tempfile.gettempdir()) / f"edtalk-slots-{run}"


def claim_slot(run: str, slots: list[str], *, wait_s: float = 5.0) -> SlotClaim:
    """Claim a free slot of ``run`` on this host (waits up to ``wait_s``, then shares one)."""
    if fcntl is None or len(slots) == 1:
        index = os.getpid() % len(slots)
        return SlotClaim(run, index, slots[index], None, shared=len(slots) > 1)
    folder = slots_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for index, device in enumerate(slots):
            handle = open(folder / f"slot-{index}", "a+")  # noqa: SIM115 (held for the process's life)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            return SlotClaim(run, index, device, handle, shared=False)
        if time.monotonic() > deadline:
            index = os.getpid() % len(slots)
            return SlotClaim(run, index, slots[index], None, shared=True)
        time.sleep(0.05)


def check_precision(precision: str, option: str = "--precision") -> str:
    """``precision`` if the engine knows it, else an error naming the option and the choices."""
    from edtalk_cli.pipeline.engine import PRECISIONS

    if precision not in PRECISIONS:
        raise EdtalkError(
            f"{option} {precision!r} is unknown",
            hint="use fp32 (the default), tf32 or bf16 on NVIDIA GPUs, fp16, or fp64",
        )
    return precision
