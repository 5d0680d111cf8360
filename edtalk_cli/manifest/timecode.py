"""Times and durations in manifests: seconds, ``"2.5s"``, ``"250ms"`` and timecodes.

Accepted forms for a time (segment ``start`` / ``end``):

- a number of seconds: ``12``, ``12.5``
- a string of seconds: ``"12.5"``, ``"12.5s"``, ``"250ms"``
- ``"M:SS(.fff)"`` and ``"H:MM:SS(.fff)"``: ``"1:02.5"`` = 62.5 s, ``"00:01:02.500"`` = 62.5 s
- ``"HH:MM:SS:FF"`` (SMPTE-style, non-drop): FF is a frame number at the job's fps,
  ``"00:00:01:12"`` at 24 fps = 1.5 s

A duration (``transition``) is a number of seconds, ``"0.4s"`` or ``"400ms"``.
"""

from __future__ import annotations

import math
import re

__all__ = ["TimecodeError", "check_time_syntax", "parse_duration", "parse_time"]

_SECONDS_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(s|sec|ms)?\s*$")
_CLOCK_RE = re.compile(r"^\s*([0-9]+):([0-9]{1,2})(?::([0-9]{1,2}))?(\.[0-9]+)?\s*$")
_FRAMES_RE = re.compile(r"^\s*([0-9]+):([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,3})\s*$")

TIME_HELP = 'seconds (12.5), "12.5s", "250ms", "1:02.5", "00:01:02.500" or "HH:MM:SS:FF" (frames)'


class TimecodeError(ValueError):
    """A time or duration string that cannot be parsed; the message says what is wrong."""


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def parse_time(value: object, fps: float | None = None) -> float:
    """Seconds from a number or time string; ``fps`` is needed for ``HH:MM:SS:FF`` only."""
    num = _number(value)
    if num is not None:
        if not math.isfinite(num) or num < 0:
            raise TimecodeError(f"time must be a finite number of seconds >= 0, got {value!r}")
        return num
    if not isinstance(value, str):
        raise TimecodeError(f"time must be {TIME_HELP}, got {value!r}")
    match = _SECONDS_RE.match(value)
    if match:
        seconds = float(match.group(1))
        return seconds / 1000.0 if match.group(2) == "ms" else seconds
    match = _FRAMES_RE.match(value)
    if match:
        hours, minutes, seconds, frames = (int(g) for g in match.groups())
        _check_clock(value, minutes, seconds)
        if fps is None:
            raise TimecodeError(f"timecode {value!r} counts frames, which needs the job fps")
        if frames >= math.ceil(fps - 1e-9):
            raise TimecodeError(
                f"timecode {value!r} has frame {frames}, but a second has only {fps:g} frames"
            )
        return hours * 3600.0 + minutes * 60.0 + seconds + frames / fps
    match = _CLOCK_RE.match(value)
    if match:
        first, second, third, fraction = match.groups()
        if third is None:  # M:SS(.fff)
            hours, minutes, seconds = 0, int(first), int(second)
            if seconds >= 60:
                raise TimecodeError(f"timecode {value!r} has {seconds} seconds; use 0-59")
        else:  # H:MM:SS(.fff)
            hours, minutes, seconds = int(first), int(second), int(third)
            _check_clock(value, minutes, seconds)
        return hours * 3600.0 + minutes * 60.0 + seconds + (float(fraction) if fraction else 0.0)
    raise TimecodeError(f"cannot read {value!r} as a time; use {TIME_HELP}")


def _check_clock(value: str, minutes: int, seconds: int) -> None:
    if minutes >= 60 or seconds >= 60:
        raise TimecodeError(f"timecode {value!r} has minutes or seconds >= 60")


def check_time_syntax(value: object) -> None:
    """Check a time's form without knowing the fps (frame timecodes are checked later)."""
    if isinstance(value, str) and _FRAMES_RE.match(value):
        parse_time(value, fps=1000.0)  # syntax and clock ranges only
        return
    parse_time(value)


def parse_duration(value: object) -> float:
    """Seconds from a number, ``"0.4s"``, ``"0.4"`` or ``"400ms"`` (>= 0)."""
    num = _number(value)
    if num is not None:
        if not math.isfinite(num) or num < 0:
            raise TimecodeError(f"duration must be a finite number of seconds >= 0, got {value!r}")
        return num
    if isinstance(value, str):
        match = _SECONDS_RE.match(value)
        if match:
            seconds = float(match.group(1))
            return seconds / 1000.0 if match.group(2) == "ms" else seconds
    raise TimecodeError(f'cannot read {value!r} as a duration; use seconds (0.4), "0.4s" or "400ms"')
