"""Which video encoder writes the mp4, and its ffmpeg arguments.

The manifest's ``encode.codec`` names what the user wants; :func:`choose_encoder` turns it into
the ffmpeg encoder that runs:

* ``h264``: libx264, always.
* ``auto`` (default): h264_nvenc when the frames are rendered on a CUDA device *and* the ffmpeg
  binary can open that encoder; libx264 otherwise, silently.
* ``h264_nvenc`` / ``hevc_nvenc``: that NVENC encoder when ffmpeg can open it; otherwise libx264,
  with one :class:`EncoderFallbackWarning` naming the codec asked for and ffmpeg's reason. The job
  still renders: a missing GPU encoder is not worth a failed batch.

Whether ffmpeg can open an NVENC encoder is found by encoding two tiny frames with it
(:func:`probe_encoder`), once per process, encoder and ffmpeg binary. Listing ``-encoders`` is not
enough: a binary built with NVENC lists it even where no NVIDIA driver is installed.

NVENC settings follow the x264 ones: the same quality number (``crf`` becomes constant-quality
``-cq`` with ``-rc vbr -b:v 0``; NVENC reads ``-cq 0`` as "choose for me", so ``crf 0``, lossless
in x264, becomes ``-cq 1``, the best NVENC's constant-quality mode gives) and the x264 speed preset
mapped onto NVENC's p1 (fastest) .. p7 (slowest) by :data:`NVENC_PRESETS`. Pixel format, colour
tags, faststart and the audio stay as for x264 (see :mod:`edtalk_cli.video.writer`). HEVC is
tagged ``hvc1`` so that QuickTime and Apple devices play it.
"""

from __future__ import annotations

import re
import subprocess
import warnings
from dataclasses import dataclass
from functools import lru_cache

from edtalk_cli.defaults import VIDEO_CODEC, X264_CRF, X264_PRESET
from edtalk_cli.video._ffmpeg import child_preexec, ffmpeg_exe

__all__ = [
    "CODECS",
    "NVENC_PRESETS",
    "X264_PRESETS",
    "EncoderChoice",
    "EncoderFallbackWarning",
    "EncoderProbe",
    "choose_encoder",
    "encoder_args",
    "probe_encoder",
]

CODECS = ("auto", "h264", "h264_nvenc", "hevc_nvenc")  # the values of the manifest's encode.codec
# x264 speed preset -> NVENC preset (p1 fastest .. p7 best); medium and p4 are each encoder's default
NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p3",
    "medium": "p4",
    "slow": "p5",
    "slower": "p6",
    "veryslow": "p7",
}
X264_PRESETS = tuple(NVENC_PRESETS)  # x264's speed presets, fastest first
X264 = "libx264"
NVENC_ENCODERS = ("h264_nvenc", "hevc_nvenc")
PROBE_TIMEOUT_S = 20.0  # a working GPU opens NVENC in well under a second; a hung driver must not hang us


class EncoderFallbackWarning(UserWarning):
    """An NVENC codec was asked for but ffmpeg cannot use it here: the video is encoded with libx264."""


def encoder_args(encoder: str, crf: int = X264_CRF, preset: str = X264_PRESET) -> list[str]:
    """The ffmpeg output options selecting ``encoder`` at quality ``crf`` and speed ``preset``.

    ``encoder`` is an ffmpeg encoder name (libx264, h264_nvenc or hevc_nvenc); ``crf`` and
    ``preset`` are in x264's terms and mapped for NVENC as the module docstring says. The output is
    yuv420p in every case.
    """
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}")
    if encoder == X264:
        return ["-c:v", X264, "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p"]
    if encoder not in NVENC_ENCODERS:
        raise ValueError(f"unknown video encoder {encoder!r}; expected {X264} or one of {NVENC_ENCODERS}")
    args = [
        "-c:v", encoder, "-preset", NVENC_PRESETS[preset], "-tune", "hq",
        "-rc", "vbr", "-cq", str(max(int(crf), 1)), "-b:v", "0",
        "-profile:v", "high" if encoder == "h264_nvenc" else "main",
        "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if encoder == "hevc_nvenc":
        args += ["-tag:v", "hvc1"]
    return args


@dataclass(frozen=True)
class EncoderProbe:
    """Whether ffmpeg could encode with an encoder, and if not, why (ffmpeg's first error line)."""

    encoder: str
    available: bool
    reason: str = ""


_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


def _first_error(stderr: bytes) -> str:
    for line in stderr.decode("utf-8", errors="replace").splitlines():
        text = _LOG_PREFIX.sub("", line).strip()
        if text:
            return text
    return ""


@lru_cache(maxsize=16)
def probe_encoder(encoder: str, exe: str | None = None) -> EncoderProbe:
    """Encode two 256x256 frames with ``encoder`` to nowhere; cached per process, encoder and binary.

    ``exe``: the ffmpeg binary (default: :func:`edtalk_cli.video._ffmpeg.ffmpeg_exe`). The test
    encode uses the same options as a real one (:func:`encoder_args` at the default quality).
    """
    cmd = [
        exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "color=c=gray:s=256x256:r=25", "-frames:v", "2",
        *encoder_args(encoder), "-f", "null", "-",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, preexec_fn=child_preexec()
        )
    except subprocess.TimeoutExpired:
        return EncoderProbe(encoder, False, f"the test encode took longer than {PROBE_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return EncoderProbe(encoder, False, f"ffmpeg could not be started: {exc}")
    if proc.returncode != 0:
        return EncoderProbe(
            encoder, False, _first_error(proc.stderr) or f"ffmpeg exit code {proc.returncode}"
        )
    return EncoderProbe(encoder, True)


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder that writes a video: what was asked for, what runs, and why it differs."""

    codec: str  # the manifest's encode.codec
    encoder: str  # the ffmpeg encoder that runs: libx264, h264_nvenc or hevc_nvenc
    fallback: str | None = None  # why an explicitly asked-for NVENC codec was replaced by libx264

    @property
    def warning(self) -> str | None:
        """The user-facing line for a fallback (None when the asked-for encoder runs)."""
        if self.fallback is None:
            return None
        return (
            f"encode.codec {self.codec} is not available ({self.fallback}); "
            f"encoding with libx264 (h264) instead"
        )

    def warn(self) -> None:
        """Issue :attr:`warning` as an :class:`EncoderFallbackWarning` (nothing without a fallback).

        The one place the fallback is warned about (the writer, and the batch runner on behalf of
        its worker processes), so Python's default filter shows a text once per process."""
        if self.warning is not None:
            warnings.warn(self.warning, EncoderFallbackWarning, stacklevel=1)


def choose_encoder(codec: str = VIDEO_CODEC, *, cuda: bool = False, exe: str | None = None) -> EncoderChoice:
    """Resolve the manifest's ``codec`` for frames rendered on CUDA (``cuda``) or not.

    Probes ffmpeg (once per process, see :func:`probe_encoder`) only when NVENC is in question:
    ``auto`` on CUDA, or an explicit NVENC codec.
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}; got {codec!r}")
    if codec == "h264" or (codec == "auto" and not cuda):
        return EncoderChoice(codec, X264)
    wanted = "h264_nvenc" if codec == "auto" else codec
    probe = probe_encoder(wanted, exe or ffmpeg_exe())
    if probe.available:
        return EncoderChoice(codec, wanted)
    return EncoderChoice(codec, X264, None if codec == "auto" else probe.reason)
