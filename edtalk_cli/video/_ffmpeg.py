"""Small helpers around the ffmpeg binary bundled with imageio-ffmpeg.

There is no ffprobe in imageio-ffmpeg (and PyAV is not a dependency), so stream information is
parsed from ffmpeg's own stderr header, and exact per-frame timestamps come from the ``framecrc``
muxer (one text line per packet or decoded frame, with pts and duration in the stream time base).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from edtalk_cli.audio.timing import fps_fraction

__all__ = [
    "FramecrcStream",
    "StreamHeader",
    "child_preexec",
    "ffmpeg_exe",
    "fps_fraction",
    "parse_framecrc",
    "parse_input_header",
    "passthrough_timestamps",
    "run_ffmpeg",
]

_NOPTS = -(2**63)  # AV_NOPTS_VALUE as printed by framecrc
_PKT_FLAG_DISCARD = 0x4  # AV_PKT_FLAG_DISCARD: demuxed but dropped by the decoder (edit lists)


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=4)
def passthrough_timestamps(exe: str | None = None) -> tuple[str, str]:
    """Output option keeping every frame with its own timestamp (no frame dropped or duplicated).

    ``-fps_mode passthrough`` on ffmpeg 5.1 and later (9.x removed the old spelling);
    ``-vsync passthrough`` on older builds, such as the ffmpeg 4.2 inside imageio-ffmpeg 0.5's
    manylinux2010 wheel. Decided once per binary by a 1-frame test run: only a binary that
    names ``fps_mode`` as unrecognised gets the old spelling.
    """
    probe = [exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i", "nullsrc=s=16x16:d=0.04"]
    new = subprocess.run(
        [*probe, "-fps_mode", "passthrough", "-f", "null", "-"], capture_output=True, check=False
    )
    old = new.returncode != 0 and b"Unrecognized option 'fps_mode'" in new.stderr
    return ("-vsync" if old else "-fps_mode", "passthrough")


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux only), looked up once in the parent: the child must not load anything."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def child_preexec() -> Callable[[], None] | None:
    """``preexec_fn`` for ffmpeg children: die with the process that started them, ignore Ctrl-C.

    ffmpeg stays in our process group (a signal to the group reaches it too) and, on Linux, gets
    SIGKILL from the kernel the moment its parent dies (``PR_SET_PDEATHSIG``), even by kill -9,
    so no encoder outlives a killed render. SIGINT is ignored: on Ctrl-C the writer stops ffmpeg
    itself and deletes its temporary file, instead of ffmpeg finishing a truncated file.
    """
    prctl = _prctl()

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


def run_ffmpeg(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``ffmpeg -hide_banner -nostdin <args>`` and return the finished process (never raises on rc)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, preexec_fn=child_preexec())


@dataclass
class StreamHeader:
    """One input stream as described in ffmpeg's ``Input #0`` header."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", ...
    codec: str
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None  # the "NN fps" field (average frame rate), if printed
    tbr: float | None = None
    sample_rate: int | None = None
    channels: str | None = None  # channel layout word, e.g. "mono", "stereo", "5.1"
    rotation: float = 0.0  # display-matrix rotation in degrees (ffmpeg autorotates when decoding)
    attached_pic: bool = False  # cover art, not a real video stream
    color_range: str | None = None  # "tv" or "pc" when the stream says, else None
    # (colorspace, primaries, trc) as ffmpeg names them ("unknown" where unset); None when untagged
    color_tags: tuple[str, str, str] | None = None


@dataclass
class InputHeader:
    """Parsed ``Input #0`` section of ffmpeg's stderr."""

    format_name: str
    duration: float | None  # container duration in seconds
    streams: list[StreamHeader] = field(default_factory=list)

    def first(self, kind: str) -> StreamHeader | None:
        """The first stream of ``kind`` (skipping cover-art pictures for video)."""
        for s in self.streams:
            if s.kind == kind and not s.attached_pic:
                return s
        return None


_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)[^:]*: (\w+): (.*)$")
_SIZE_RE = re.compile(r"(?:^|[\s,])(\d{1,5})x(\d{1,5})(?=[\s,\[]|$)")
_FPS_RE = re.compile(r"([\d.]+)(k?) fps")
_TBR_RE = re.compile(r"([\d.]+)(k?) tbr")
_HZ_RE = re.compile(r"(\d+) Hz")
_ROT_RE = re.compile(r"rotation of (-?[\d.]+) degrees")
_DUR_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_INPUT_RE = re.compile(r"^Input #0, ([^,]+(?:,[^,\s]+)*), from")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _rate(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "k" else value


_FIELD_ORDER_WORDS = ("progressive", "top ", "bottom ", "unknown")
_CHROMA_LOCATIONS = frozenset({"left", "center", "topleft", "top", "bottomleft", "bottom"})


def _pix_fmt_details(text: str) -> tuple[str | None, tuple[str, str, str] | None]:
    """(range, (colorspace, primaries, trc)) from ffmpeg's ``yuv420p(tv, bt709, progressive)``:
    the range word when printed, and the colour names (one name stands for all three)."""
    if "(" not in text:
        return None, None
    color_range, tags = None, None
    for item in text.split("(", 1)[1].rsplit(")", 1)[0].split(","):
        word = item.strip()
        if word in ("tv", "pc"):
            color_range = word
        elif "/" in word and len(word.split("/")) == 3:
            space, primaries, trc = word.split("/")
            tags = (space, primaries, trc)
        elif (
            word
            and not word.startswith(_FIELD_ORDER_WORDS)
            and " " not in word
            and word not in _CHROMA_LOCATIONS
        ):
            tags = (word, word, word)
    return color_range, tags


def parse_input_header(stderr: str) -> InputHeader | None:
    """Parse the ``Input #0`` section of ffmpeg's stderr; None when ffmpeg printed no input header."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Input #0")), None)
    if start is None:
        return None
    m = _INPUT_RE.match(lines[start])
    header = InputHeader(format_name=m.group(1) if m else "", duration=None)
    current: StreamHeader | None = None
    for line in lines[start + 1 :]:
        if not line.startswith(" "):  # "Output #0", "Stream mapping:", log lines: end of the section
            break
        dm = _DUR_RE.search(line)
        if dm and header.duration is None and line.strip().startswith("Duration:"):
            h, mnt, s = dm.groups()
            header.duration = int(h) * 3600 + int(mnt) * 60 + float(s)
            continue
        sm = _STREAM_RE.match(line)
        if sm:
            kind = sm.group(2).lower()
            desc = sm.group(3)
            parts = _split_top_level(desc)
            codec = parts[0].split(" ", 1)[0] if parts and parts[0] else ""
            current = StreamHeader(index=int(sm.group(1)), kind=kind, codec=codec)
            current.attached_pic = "(attached pic)" in desc
            if kind == "video":
                if len(parts) > 1:
                    current.pix_fmt = parts[1].split("(", 1)[0].strip() or None
                    current.color_range, current.color_tags = _pix_fmt_details(parts[1])
                size = _SIZE_RE.search(desc)
                if size:
                    current.width, current.height = int(size.group(1)), int(size.group(2))
                current.fps = _rate(_FPS_RE.search(desc))
                current.tbr = _rate(_TBR_RE.search(desc))
            elif kind == "audio":
                hz = _HZ_RE.search(desc)
                current.sample_rate = int(hz.group(1)) if hz else None
                current.channels = parts[2].strip() if len(parts) > 2 else None
            header.streams.append(current)
            continue
        rot = _ROT_RE.search(line)
        if rot and current is not None:
            current.rotation = float(rot.group(1))
    return header


@dataclass
class FramecrcStream:
    """Timestamps of one stream from ffmpeg's ``framecrc`` output, in seconds."""

    index: int
    time_base: Fraction
    media_type: str = ""
    pts: list[int] = field(default_factory=list)  # in time_base units, in output (dts) order
    durations: list[int] = field(default_factory=list)
    discarded: int = 0  # packets flagged "discard" (e.g. before an mp4 edit list's start), skipped

    @property
    def count(self) -> int:
        """Number of packets or decoded frames."""
        return len(self.pts)

    def sorted_times(self) -> list[Fraction]:
        """Presentation times in seconds, sorted, relative to nothing (absolute)."""
        return [p * self.time_base for p in sorted(self.pts)]

    def start_end(self) -> tuple[Fraction, Fraction]:
        """(first presentation time, end of the last frame) in seconds."""
        if not self.pts:
            return Fraction(0), Fraction(0)
        start = min(self.pts)
        end = max(p + max(d, 0) for p, d in zip(self.pts, self.durations, strict=True))
        if end == max(self.pts):  # last duration unknown (0): extend by the median frame step
            ordered = sorted(self.pts)
            steps = sorted(b - a for a, b in itertools.pairwise(ordered) if b > a)
            if steps:
                end += steps[len(steps) // 2]
        return start * self.time_base, end * self.time_base

    @property
    def has_valid_pts(self) -> bool:
        """False when any packet had no timestamp."""
        return all(p != _NOPTS for p in self.pts)


def parse_framecrc(text: str) -> dict[int, FramecrcStream]:
    """Parse ``-f framecrc`` output into one :class:`FramecrcStream` per stream index.

    Packets carrying the discard flag (``F=0x..`` with bit 0x4; ffmpeg prints no ``F=`` field for
    a plain keyframe) are not frames the decoder outputs, so they are counted in ``discarded``
    and otherwise skipped.
    """
    streams: dict[int, FramecrcStream] = {}
    for line in text.splitlines():
        if line.startswith("#tb "):
            idx_s, tb_s = line[4:].split(":", 1)
            idx = int(idx_s)
            streams[idx] = FramecrcStream(index=idx, time_base=Fraction(tb_s.strip()))
        elif line.startswith("#media_type "):
            idx_s, kind = line[len("#media_type ") :].split(":", 1)
            if int(idx_s) in streams:
                streams[int(idx_s)].media_type = kind.strip()
        elif line and not line.startswith("#"):
            fields = line.split(",")
            if len(fields) < 5:
                continue
            idx = int(fields[0])
            if idx not in streams:
                continue
            flags = next((f.strip()[2:] for f in fields[6:] if f.strip().startswith("F=")), None)
            if flags is not None and int(flags, 16) & _PKT_FLAG_DISCARD:
                streams[idx].discarded += 1
                continue
            streams[idx].pts.append(int(fields[2]))
            streams[idx].durations.append(int(fields[3]))
    return streams
