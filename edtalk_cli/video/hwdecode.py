"""Hardware-accelerated video decoding (NVDEC through ffmpeg's ``-hwaccel cuda``), where it works.

H.264 decoding is bit-exact, so a frame decoded by NVDEC has the same YUV samples as one decoded
in software; the colour conversion to RGB after it stays on the CPU (swscale, the same flags), so
the RGB frames are the same too. Hardware decoding only takes decode work off the CPU.

Whether it works is decided once per process and ffmpeg binary by :func:`probe_hwdecode`, which
decodes a tiny generated H.264 clip on the device. Listing ``-hwaccels`` is not enough: a binary
built with CUDA support lists ``cuda`` where no NVIDIA driver is installed, and older ffmpeg
builds fall back to software decoding with an error in the log but exit code 0.

:func:`decode_accel` is the one decision a job's decodes follow: ``"cuda"`` for frames rendered
on a CUDA device when the probe says available, else None (software).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from edtalk_cli.video._ffmpeg import child_preexec, ffmpeg_exe

__all__ = ["HWACCELS", "DecoderProbe", "decode_accel", "hwaccel_fallback_line", "probe_hwdecode"]

HWACCELS = ("cuda",)  # the ffmpeg -hwaccel methods edtalk uses
PROBE_TIMEOUT_S = 20.0  # a working GPU opens NVDEC in well under a second; a hung driver must not hang us
PROBE_SIZE = 256  # px: NVDEC's smallest H.264 frame is 48x16; a clip of common proportions
# lines ffmpeg logs when a hardware decoder cannot be set up (it may then decode in software)
_FALLBACK_LINES = re.compile(
    r"Failed setup for format|hwaccel initialisation returned error|Cannot load lib|"
    r"Could not dynamically load|Device creation failed|No device available|"
    r"Hardware device setup failed|Error creating a CUDA device|CUDA_ERROR",
    re.IGNORECASE,
)
_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


@dataclass(frozen=True)
class DecoderProbe:
    """Whether ffmpeg could decode H.264 with a hardware accelerator, and if not, why."""

    hwaccel: str
    available: bool
    reason: str = ""


def hwaccel_fallback_line(stderr: str) -> str | None:
    """The first line of an ffmpeg log saying a hardware decoder could not be set up (its
    ``[component @ 0x..]`` prefixes removed), or None."""
    for line in stderr.splitlines():
        if _FALLBACK_LINES.search(line):
            return _LOG_PREFIX.sub("", line).strip()
    return None


def _test_clip(exe: str) -> bytes:
    """Two frames of a moving test pattern as a raw H.264 stream (Annex B), made by libx264."""
    cmd = [
        exe, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=s={PROBE_SIZE}x{PROBE_SIZE}:r=25", "-frames:v", "2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "h264", "-",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, preexec_fn=child_preexec()
    )
    if proc.returncode != 0 or not proc.stdout:
        error = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise OSError(f"could not make the test clip: {error[-1] if error else f'exit {proc.returncode}'}")
    return proc.stdout


@lru_cache(maxsize=8)
def probe_hwdecode(hwaccel: str = "cuda", exe: str | None = None) -> DecoderProbe:
    """Decode a 2-frame 256x256 H.264 clip with ``-hwaccel <hwaccel>``; cached per process,
    accelerator and ffmpeg binary (``exe``, default :func:`edtalk_cli.video._ffmpeg.ffmpeg_exe`).

    "Available" means all of: ffmpeg exits 0; the decoded frames stay in device memory
    (``-hwaccel_output_format <hwaccel>``) and a ``hwdownload`` filter copies both of them back
    (it accepts only hardware frames, so a silent software fallback fails it); and ffmpeg's log
    (``-loglevel verbose``) has no line saying the hardware decoder could not be set up
    (:func:`hwaccel_fallback_line`). Otherwise ``reason`` is that log line, or ffmpeg's last one.
    """
    if hwaccel not in HWACCELS:
        raise ValueError(f"hwaccel must be one of {', '.join(HWACCELS)}; got {hwaccel!r}")
    exe = exe or ffmpeg_exe()
    cmd = [
        exe, "-hide_banner", "-nostdin", "-loglevel", "verbose",
        "-hwaccel", hwaccel, "-hwaccel_output_format", hwaccel,
        "-f", "h264", "-i", "pipe:0",
        "-vf", "hwdownload,format=nv12", "-f", "framecrc", "-",
    ]  # fmt: skip
    try:
        clip = _test_clip(exe)
        proc = subprocess.run(
            cmd,
            input=clip,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
            preexec_fn=child_preexec(),
        )
    except subprocess.TimeoutExpired:
        return DecoderProbe(hwaccel, False, f"the test decode took longer than {PROBE_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return DecoderProbe(hwaccel, False, str(exc))
    stderr = proc.stderr.decode("utf-8", errors="replace")
    failed = hwaccel_fallback_line(stderr)
    if failed is not None:
        return DecoderProbe(hwaccel, False, failed)
    frames = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln and ln[0] != "#"]
    if proc.returncode != 0 or len(frames) != 2:
        lines = [_LOG_PREFIX.sub("", ln).strip() for ln in stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"ffmpeg exit code {proc.returncode}"
        return DecoderProbe(hwaccel, False, f"{last} ({len(frames)} of 2 frames decoded)")
    return DecoderProbe(hwaccel, True)


def decode_accel(device: object, exe: str | None = None) -> str | None:
    """The ``hwaccel`` for the video decodes of a job rendered on ``device`` (a ``torch.device``
    or its name): ``"cuda"`` on a CUDA device where :func:`probe_hwdecode` says available, else
    None (software). Probes only for CUDA devices."""
    if str(device).split(":", 1)[0] != "cuda":
        return None
    return "cuda" if probe_hwdecode("cuda", exe or ffmpeg_exe()).available else None
