"""Python warnings as a user sees them: one clear line each, or nothing where they are harmless.

Libraries warn with their own wording, source file and line (PIL's DecompressionBombWarning,
torch's UserWarnings, numpy's RuntimeWarnings). :func:`install` replaces
:func:`warnings.showwarning` so that each distinct warning prints once as ``warning: ...``.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from typing import TextIO

__all__ = ["HARMLESS", "install", "warning_text"]

# (category name, message pattern): warnings that say nothing a user can act on
HARMLESS = (
    # torch about its own unpickler/storages: checkpoints are only read with weights_only=True
    ("UserWarning", re.compile(r"weights_only|TypedStorage|pickle", re.I)),
    # torch.from_numpy of a read-only array (decoded frames); torch never writes through it here
    ("UserWarning", re.compile(r"NumPy array is not writable")),
)


def warning_text(message: Warning | str, category: type[Warning]) -> str | None:
    """The line to show for a warning; None when it is harmless and stays silent."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    names = {cls.__name__ for cls in category.__mro__}
    for name, pattern in HARMLESS:
        if name in names and pattern.search(str(message)):
            return None
    if "DecompressionBombWarning" in names:
        pixels = re.search(r"\((\d+) pixels\)", text)
        size = f" ({int(pixels.group(1)) / 1e6:.0f} Mpx)" if pixels else ""
        return f"a very large image{size} is being decoded; it needs a lot of memory and time"
    if issubclass(category, RuntimeWarning) and re.search(r"encountered|empty slice|overflow", text):
        return f"numerical problem in the computation ({text}); check the input for silence or extreme values"
    return text


def install(show: Callable[[str], None] | None = None) -> None:
    """Show warnings through ``show`` (default: ``warning: TEXT`` on stderr), each text once."""
    shown: set[str] = set()
    out = show or (lambda text: print(f"warning: {text}", file=sys.stderr))

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = warning_text(message, category)
        if text is not None and text not in shown:
            shown.add(text)
            out(text)

    warnings.showwarning = showwarning
