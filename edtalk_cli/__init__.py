"""edtalk: batch production of emotional talking-head videos with EDTalk."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edtalk-cli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
