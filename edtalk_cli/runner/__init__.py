"""Batch production: run many jobs on many devices, resumably, with reports.

- :mod:`~edtalk_cli.runner.batch`: :class:`BatchRunner` (the scheduler);
- :mod:`~edtalk_cli.runner.options`: :class:`RunOptions` and their checks;
- :mod:`~edtalk_cli.runner.outcomes`: :class:`JobOutcome` (a report row) and the statuses;
- :mod:`~edtalk_cli.runner.jobstate` / :mod:`~edtalk_cli.runner.events`: per-job bookkeeping, the
  event file and the lock heartbeat;
- :mod:`~edtalk_cli.runner.worker`: what each worker process runs;
- :mod:`~edtalk_cli.runner.fingerprint`: fingerprints and ``.edtalk.json`` sidecars (resume);
- :mod:`~edtalk_cli.runner.locks`: per-output lock files;
- :mod:`~edtalk_cli.runner.cache`: the content-addressed cache of crops, encodings and tracks;
- :mod:`~edtalk_cli.runner.chunks`: splitting a long job over several workers;
- :mod:`~edtalk_cli.runner.estimate`: ``--dry-run`` validation and estimates;
- :mod:`~edtalk_cli.runner.report`: ``report.json`` / CSV.

See docs/batch.md.
"""

from __future__ import annotations

from edtalk_cli.lazy import lazy_getattr

_HOMES = {  # name -> submodule that defines it; imported on first use (the batch runner imports torch)
    "BACKENDS": "options",
    "STATUSES": "outcomes",
    "BatchRunner": "batch",
    "JobOutcome": "outcomes",
    "RunOptions": "options",
    "parse_devices": "devices",
    "resolve_device": "devices",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "BACKENDS",
    "STATUSES",
    "BatchRunner",
    "JobOutcome",
    "RunOptions",
    "parse_devices",
    "resolve_device",
]
