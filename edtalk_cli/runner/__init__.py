"""Batch production: run many jobs on many devices, resumably, with reports.

- :mod:`~edtalk_cli.runner.batch`: :class:`BatchRunner` / :class:`RunOptions` (the scheduler) and
  :class:`JobOutcome` (a report row);
- :mod:`~edtalk_cli.runner.worker`: what each worker process runs;
- :mod:`~edtalk_cli.runner.fingerprint`: fingerprints and ``.edtalk.json`` sidecars (resume);
- :mod:`~edtalk_cli.runner.locks`: per-output lock files;
- :mod:`~edtalk_cli.runner.cache`: the content-addressed cache of crops, encodings and tracks;
- :mod:`~edtalk_cli.runner.chunks`: splitting a long job over several workers;
- :mod:`~edtalk_cli.runner.plan`: ``--dry-run`` validation and estimates;
- :mod:`~edtalk_cli.runner.report`: ``report.json`` / CSV.

See docs/batch.md.
"""

from edtalk_cli.runner.batch import BACKENDS, STATUSES, BatchRunner, JobOutcome, RunOptions
from edtalk_cli.runner.devices import parse_devices, resolve_device

__all__ = [
    "BACKENDS",
    "STATUSES",
    "BatchRunner",
    "JobOutcome",
    "RunOptions",
    "parse_devices",
    "resolve_device",
]
