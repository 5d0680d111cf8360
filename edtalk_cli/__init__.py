"""edtalk: batch production of emotional talking-head videos with EDTalk."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("edtalk-cli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

_API = (
    "Frame",
    "JobFailedError",
    "JobOutcome",
    "JobResult",
    "JobSet",
    "Report",
    "RunOptions",
    "Validation",
    "check",
    "frames",
    "load",
    "render",
    "render_job",
    "validate",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """The API of :mod:`edtalk_cli.api`, imported on first use (``import edtalk_cli`` stays cheap)."""
    if name in _API:
        from edtalk_cli import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
