"""Header probes of a job's media: cheap checks run before anything is decoded or rendered.

Frame sizes come from image headers (PIL, no decoding) and ffmpeg's input header; the audio
duration from the audio header (libsndfile, else ffmpeg). Each problem is located at the manifest
field that names the file, and costs only its own job (``edtalk render`` fails that job and
renders the others; ``edtalk validate`` lists it with the rest).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command definitions read the limits below: importing them stays cheap
    from edtalk_cli.manifest.model import Job
    from edtalk_cli.manifest.problems import Problem

__all__ = ["MAX_FRAME_SIDE", "MIN_SOURCE_SIDE", "JobProbe", "probe_job", "truncated_wav"]

MAX_FRAME_SIDE = 4096  # px per side of any image or video a job reads (16.7 Mpx at 4096 x 4096)
MIN_SOURCE_SIDE = 16  # px per side of the source: smaller holds no face to animate


@dataclass
class JobProbe:
    """What the header probes found for one job."""

    audio_s: float | None = None  # audio duration, None when unknown
    problems: list[Problem] = field(default_factory=list)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; raises OSError/ValueError when it is no image."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
        try:
            with Image.open(path) as image:
                return image.size
        except Image.DecompressionBombError as exc:
            raise _TooLargeError(str(exc)) from None


class _TooLargeError(Exception):
    """PIL refused to open an image of that many pixels."""


def _ffmpeg_header(path: Path):  # -> InputHeader | None
    from edtalk_cli.video._ffmpeg import parse_input_header, run_ffmpeg

    proc = run_ffmpeg(["-hide_banner", "-i", str(path)])
    return parse_input_header(proc.stderr.decode("utf-8", errors="replace"))


def _video_size(path: Path) -> tuple[int, int] | None:
    header = _ffmpeg_header(path)
    stream = header.first("video") if header is not None else None
    if stream is None or stream.width is None or stream.height is None:
        return None
    return stream.width, stream.height


def truncated_wav(path: Path) -> tuple[float, float] | None:
    """(seconds the header promises, seconds the file holds) of a WAV cut short; None otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = 0
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if kind == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    continue
                if kind == b"data":
                    start = fh.tell()
                    available = fh.seek(0, 2) - start
                    if byte_rate <= 0 or size in (0, 0xFFFFFFFF) or size <= available:  # 0/-1: streamed
                        return None
                    return size / byte_rate, available / byte_rate
                fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def _audio_seconds(path: Path) -> float | None:
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.samplerate > 0:
            return info.frames / info.samplerate
    except (RuntimeError, OSError, ValueError, TypeError):  # not a format libsndfile reads
        pass
    header = _ffmpeg_header(path)
    if header is None or header.first("audio") is None:
        raise ValueError("no audio stream found")
    return header.duration


def probe_job(job: Job, *, max_frame_side: int = MAX_FRAME_SIDE) -> JobProbe:
    """Check frame sizes, the audio header and segment times of ``job`` (files that exist)."""
    from edtalk_cli.manifest.problems import Problem

    result = JobProbe()

    def add(where: str, message: str, fix: str) -> None:
        origin = job.origin_of(where)
        result.problems.append(Problem(origin, origin.path, f"job {job.name!r}: {message}", fix))

    raise_it = f"Scale it down, or raise the limit with --max-frame-size (now {max_frame_side})"
    for where, path, kind in dict.fromkeys(job.inputs()):
        if not path.is_file() or kind not in ("image", "video"):
            continue
        try:
            size = _image_size(path) if kind == "image" else _video_size(path)
        except _TooLargeError:
            add(where, f"{kind} '{path}' is too large to open safely", raise_it)
            continue
        except (OSError, ValueError, SyntaxError) as exc:
            add(where, f"cannot read {kind} '{path}': {exc}", f"Give a readable {kind} file")
            continue
        if size is None:
            add(where, f"cannot read the frame size of {kind} '{path}'", f"Give a readable {kind} file")
            continue
        width, height = size
        if max(width, height) > max_frame_side:
            add(where, f"{kind} '{path}' is {width}x{height}, above {max_frame_side} px per side", raise_it)
        elif where == "source.path" and min(width, height) < MIN_SOURCE_SIDE:
            add(
                where,
                f"source '{path}' is {width}x{height}, below {MIN_SOURCE_SIDE} px per side",
                "Use a larger photo or video of the face",
            )

    if job.audio.is_file():
        cut = truncated_wav(job.audio)
        if cut is not None:
            add(
                "audio",
                f"audio '{job.audio}' is truncated: its header says {cut[0]:.2f}s, the file holds {cut[1]:.2f}s",
                "Export the audio again (the file was cut short)",
            )
        try:
            result.audio_s = _audio_seconds(job.audio)
        except (OSError, ValueError) as exc:
            add("audio", f"cannot read audio '{job.audio}': {exc}", "Give an audio file ffmpeg can read")
    if result.audio_s is not None:
        duration, frame = result.audio_s, 1.0 / job.fps
        ends = f"the audio ends at {duration:.3f}s"
        for index, seg in enumerate(job.segments):
            span = f"{seg.start:g}s-{'end' if seg.end is None else f'{seg.end:g}s'}"
            if seg.start >= duration:
                add(
                    f"segments[{index}].start",
                    f"segment {span} starts after the audio: {ends}",
                    "Move or remove the segment",
                )
            elif seg.end is not None and seg.end > duration + frame:
                add(
                    f"segments[{index}].end",
                    f"segment {span} runs past the end of the audio: {ends}",
                    "Shorten it, or omit 'end' to run to the end",
                )
    return result
