"""edtalk: batch production of emotional talking-head videos with EDTalk."""

from importlib.metadata import PackageNotFoundError, version

from edtalk_cli.lazy import lazy_getattr

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
    "RenderOptions",
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


__getattr__ = lazy_getattr(__name__, dict.fromkeys(_API, "api"))  # `import edtalk_cli` stays cheap
