"""Exact frame/sample arithmetic shared by the audio loaders and features."""

from __future__ import annotations

import math
from fractions import Fraction

from edtalk_cli.defaults import FPS, SAMPLE_RATE

__all__ = ["fps_fraction", "num_samples_for_frames", "num_video_frames"]


def fps_fraction(fps: float | Fraction) -> Fraction:
    """``fps`` as an exact fraction: 25.0 -> 25, 29.97 -> 2997/100, 30000/1001 (as a float) -> 30000/1001.

    A float fps is a decimal or NTSC-style ratio carrying rounding error, so it is snapped to the
    nearest fraction with a denominator of at most 100000 (far finer than any real frame rate).
    """
    if isinstance(fps, (int, Fraction)) and not isinstance(fps, bool):
        frac = Fraction(fps)
    else:
        fps_f = float(fps)
        if not math.isfinite(fps_f):
            raise ValueError(f"fps must be a finite positive number, got {fps!r}")
        frac = Fraction(fps_f).limit_denominator(100_000)
    if frac <= 0:
        raise ValueError(f"fps must be a finite positive number, got {fps!r}")
    return frac


def num_video_frames(num_samples: int, fps: float | Fraction = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Whole video frames in ``num_samples`` audio samples: floor(num_samples * fps / sample_rate).

    Exact (rational arithmetic): at 25 fps and 16 kHz this is the official ``int(len / 640)``,
    and e.g. 19200 samples give exactly 30 frames.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return math.floor(Fraction(int(num_samples)) * fps_fraction(fps) / int(sample_rate))


def num_samples_for_frames(
    num_frames: int, fps: float | Fraction = FPS, sample_rate: int = SAMPLE_RATE
) -> int:
    """Samples spanned by ``num_frames`` video frames: ceil(num_frames * sample_rate / fps).

    Exactly ``num_frames * 640`` at 25 fps and 16 kHz; never more than the samples that produced
    ``num_frames`` via :func:`num_video_frames`.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    return math.ceil(Fraction(int(num_frames) * int(sample_rate)) / fps_fraction(fps))
