"""Reading images and videos as RGB uint8 arrays.

Videos are decoded by the ffmpeg binary of imageio-ffmpeg and streamed frame by frame (constant
memory). ``probe_video`` reads the exact presentation timestamp of every frame without decoding
(``-c copy -f framecrc``), which makes it fast and correct for variable-frame-rate files.

Resampling to another frame rate (``iter_video_frames(path, fps=F)``) is done by our own index
mapping, not by ffmpeg's ``fps`` filter: output frame ``k`` is the source frame *on screen* at time
``k / F``, i.e. the last source frame whose timestamp (relative to the first frame) is
``<= k / F`` (with a 1 ms tolerance for containers that round timestamps to milliseconds). The
output has exactly :func:`resampled_frame_count` ``(duration, F) = round(duration * F)`` frames
(halves round up), the same number the caller computes from :func:`probe_video`.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edtalk_cli.errors import MediaError
from edtalk_cli.video._ffmpeg import (
    fps_fraction,
    parse_framecrc,
    parse_input_header,
    passthrough_timestamps,
    run_ffmpeg,
)
from edtalk_cli.video.hwdecode import HWACCELS

__all__ = [
    "IMAGE_EXTENSIONS",
    "PIXEL_FORMATS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "is_image_path",
    "is_video_path",
    "iter_video_frames",
    "probe_video",
    "read_image",
    "read_video",
    "resampled_frame_count",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}
)
_IMAGE_HINT = "use a PNG, JPEG, BMP, WEBP or TIFF image"
VIDEO_HINT = "use a video ffmpeg can decode, e.g. MP4 (H.264), MOV, MKV, WEBM or AVI"
_SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
_TIME_TOLERANCE_S = 1e-3  # containers such as MKV/WEBM store timestamps rounded to 1 ms
_log = logging.getLogger(__name__)


class _DropResizeNotice(logging.Filter):
    """imageio-ffmpeg warns whenever output and source sizes differ; with ``size=`` that is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_DropResizeNotice())


# --------------------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), EXIF orientation applied.

    Greyscale, palette, CMYK and 16-bit images are converted; an alpha channel is dropped
    (as the official demo's ``convert('RGB')`` does). Raises :class:`MediaError` naming the file
    when it is missing or cannot be decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(
            f"image file not found: '{p}'",
            hint="check the path (relative paths are resolved against the manifest's folder)",
        )
    try:
        with Image.open(p) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            rgb = _to_rgb8(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MediaError(f"cannot read image '{p}': {exc}", hint=_IMAGE_HINT) from exc
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise MediaError(f"image '{p}' is empty (0 pixels)", hint=_IMAGE_HINT)
    return rgb


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """PIL image of any mode -> contiguous RGB uint8 (H, W, 3)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image).astype(np.float64)
        if image.mode == "F" and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        elif arr.size and arr.max() > 255:
            arr = arr / 257.0  # 16-bit range -> 8-bit
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


# --------------------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a video's first video stream."""

    path: Path
    fps: float  # nominal frame rate (the stream's average rate), frames per second
    n_frames: int  # frames the decoder delivers at the native rate
    width: int  # of decoded frames (after ffmpeg's automatic rotation)
    height: int
    duration_s: float  # from the first frame's timestamp to the end of the last frame
    has_audio: bool
    codec: str
    vfr: bool  # True when frame intervals vary by more than 10 % (variable frame rate)
    pix_fmt: str | None = None  # the decoder's pixel format, e.g. yuv420p, yuvj420p
    color_range: str | None = None  # "tv" / "pc" when the stream says
    color_tags: tuple[str, str, str] | None = None  # (colorspace, primaries, trc); None: untagged

    def frames_at(self, fps: float | Fraction) -> int:
        """Frames :func:`iter_video_frames` yields when resampling to ``fps``."""
        return resampled_frame_count(self.duration_s, fps)


def resampled_frame_count(duration_s: float, fps: float | Fraction) -> int:
    """round(duration * fps), halves rounded up; the frame count of a clip resampled to ``fps``."""
    return max(0, math.floor(float(duration_s) * float(fps_fraction(fps)) + 0.5 + 1e-9))


def _existing_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{what} file not found: '{p}'", hint="check the path")
    if not p.is_file():
        raise MediaError(f"{what} path '{p}' is not a file", hint="point it at a video file")
    return p


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg gave no message"


def _probe(path: str | Path) -> tuple[VideoInfo, list[float]]:
    """Probe the first video stream; return its info and sorted frame times relative to the first."""
    p = _existing_file(path, "video")
    proc = run_ffmpeg(["-i", str(p), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"])
    stderr = proc.stderr.decode("utf-8", errors="replace")
    header = parse_input_header(stderr)
    if header is None:
        raise MediaError(f"cannot read video '{p}': {_last_error_line(stderr)}", hint=VIDEO_HINT)
    vstream = header.first("video")
    if vstream is None:
        raise MediaError(f"'{p}' has no video stream", hint=VIDEO_HINT)
    crc = parse_framecrc(proc.stdout.decode("utf-8", errors="replace"))
    stream = next(iter(crc.values()), None)
    if stream is None or stream.count == 0 or not stream.has_valid_pts:
        # No usable packet timestamps (e.g. a raw .h264 stream): decode, which generates them.
        proc = run_ffmpeg(["-i", str(p), "-map", "0:v:0", *passthrough_timestamps(), "-f", "framecrc", "-"])
        crc = parse_framecrc(proc.stdout.decode("utf-8", errors="replace"))
        stream = next(iter(crc.values()), None)
    if proc.returncode != 0 and (stream is None or stream.count == 0):
        raise MediaError(
            f"cannot decode video '{p}': {_last_error_line(proc.stderr.decode('utf-8', 'replace'))}",
            hint=VIDEO_HINT,
        )
    if stream is None or stream.count == 0:
        raise MediaError(f"video '{p}' has no frames", hint=VIDEO_HINT)

    start, end = stream.start_end()
    abs_times = stream.sorted_times()
    times = [float(t - start) for t in abs_times]
    duration = float(end - start)
    n = stream.count
    steps = np.diff(np.asarray(times)) if n > 1 else np.zeros(0)
    steps = steps[steps > 0]
    vfr = bool(steps.size > 1 and (steps.max() - steps.min()) > 0.1 * float(np.median(steps)))
    measured = n / duration if duration > 0 else 0.0
    fps = vstream.fps or vstream.tbr or 0.0
    if fps <= 0 or (measured > 0 and abs(fps - measured) > 0.01 * measured):
        fps = measured
    if fps <= 0:
        fps = 25.0  # a single frame with no duration: any rate will do
    if duration <= 0:
        duration = n / fps
    width, height = vstream.width or 0, vstream.height or 0
    if round(abs(vstream.rotation)) % 180 == 90:
        width, height = height, width
    info = VideoInfo(
        path=p,
        fps=float(fps),
        n_frames=n,
        width=width,
        height=height,
        duration_s=duration,
        has_audio=header.first("audio") is not None,
        codec=vstream.codec,
        vfr=vfr,
        pix_fmt=vstream.pix_fmt,
        color_range=vstream.color_range,
        color_tags=vstream.color_tags,
    )
    return info, times


def probe_video(path: str | Path) -> VideoInfo:
    """Frame rate, frame count, size, duration and audio presence of a video, without decoding it.

    Raises :class:`MediaError` naming the file when it is missing, not a media file, corrupt, or
    has no video stream.
    """
    return _probe(path)[0]


def _size_arg(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return (w, h)


# decoded pixel layouts: name -> (bits per pixel, array shape for (height, width))
PIXEL_FORMATS = {
    "rgb24": (24, lambda h, w: (h, w, 3)),  # RGB, what every stage works in
    "gray": (8, lambda h, w: (h, w)),  # the luma plane alone (face tracking)
    "yuv420p": (12, lambda h, w: (h * 3 // 2, w)),  # I420 planes stacked: Y (h rows), U, V (h/4 rows each)
    "yuvj420p": (12, lambda h, w: (h * 3 // 2, w)),  # the same, full range (ffmpeg's name for it)
}


def _rgb_matrix(info: VideoInfo, pix_fmt: str) -> str | None:
    """The matrix an untagged source's RGB frames are decoded with when ffmpeg would pick another:
    swscale reads every untagged stream as bt601, while HD frames are bt709 by convention (what
    players assume, and what the I420 path reads: :func:`edtalk_cli.video.yuv.matrix_of`). None:
    ffmpeg's own choice (tagged streams, small frames, non-RGB output)."""
    from edtalk_cli.video.yuv import matrix_of

    colorspace = info.color_tags[0] if info.color_tags else None
    if pix_fmt != "rgb24" or colorspace not in (None, "unknown"):
        return None
    if not (info.pix_fmt or "").startswith("yuv"):
        return None
    matrix = matrix_of(None, info.height)
    return matrix if matrix != "bt601" else None


def _reader(
    path: Path,
    size: tuple[int, int] | None,
    pix_fmt: str,
    scale_flags: str,
    hwaccel: str | None,
    matrix: str | None = None,
) -> tuple[Iterator[bytes], dict, bytes | None]:
    """An imageio-ffmpeg frame reader with its metadata and first raw frame (None: no frames).
    ``matrix``: the YUV matrix to read the source with, where ffmpeg's own choice is not it
    (:func:`_rgb_matrix`).

    With ``hwaccel``, a reader whose hardware decoder cannot be set up (ffmpeg fails before the
    first frame) is replaced by a software one: the frames are the same (see
    :mod:`edtalk_cli.video.hwdecode`), so a decode accelerator never costs a job.
    """
    import imageio_ffmpeg

    bits = PIXEL_FORMATS[pix_fmt][0]
    # accurate rounding: without it swscale's YUV -> RGB is biased by about -1 grey level
    out_params = ["-map", "0:v:0", "-an", "-sn", *passthrough_timestamps(), "-sws_flags", _SWS_FLAGS]
    scale = [] if size is None else [f"{size[0]}:{size[1]}"]
    if matrix is not None:
        scale.append(f"in_color_matrix={matrix}")
    if scale:
        out_params += ["-vf", "scale=" + ":".join([*scale, f"flags={scale_flags}"])]
    in_params = ["-hwaccel", hwaccel] if hwaccel is not None else None
    gen = imageio_ffmpeg.read_frames(
        str(path), pix_fmt=pix_fmt, bits_per_pixel=bits, input_params=in_params, output_params=out_params
    )
    try:
        meta = next(gen)
        first = next(gen, None)
    except (OSError, RuntimeError, StopIteration) as exc:
        gen.close()
        if hwaccel is not None:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _log.info("-hwaccel %s cannot decode '%s' (%s); decoding in software", hwaccel, path, reason)
            return _reader(path, size, pix_fmt, scale_flags, None, matrix)
        raise MediaError(f"cannot decode video '{path}': {exc}", hint=VIDEO_HINT) from exc
    return gen, meta, first


def _decode(
    path: Path,
    size: tuple[int, int] | None,
    pix_fmt: str = "rgb24",
    scale_flags: str = _SWS_FLAGS,
    hwaccel: str | None = None,
    matrix: str | None = None,
) -> Iterator[np.ndarray]:
    """Every decoded frame at the native rate (no duplication or dropping), in ``pix_fmt``
    (see :data:`PIXEL_FORMATS`; ``yuv420p`` needs an even width and height), decoded with
    ffmpeg's ``-hwaccel <hwaccel>`` when given (software when that cannot be set up)."""
    bits, shape_of = PIXEL_FORMATS[pix_fmt]
    gen, meta, raw = _reader(path, size, pix_fmt, scale_flags, hwaccel, matrix)
    with contextlib.closing(gen):
        w, h = meta["size"]
        if bits == 12 and (w % 2 or h % 2):
            raise ValueError(f"yuv420p frames need an even size, '{path}' decodes at {w}x{h}")
        shape = shape_of(h, w)
        while raw is not None:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(shape)
            try:
                raw = next(gen)
            except StopIteration:
                return
            except (OSError, RuntimeError) as exc:
                raise MediaError(f"error while decoding video '{path}': {exc}", hint=VIDEO_HINT) from exc


def iter_video_frames(
    path: str | Path,
    fps: float | Fraction | None = None,
    size: int | tuple[int, int] | None = None,
    *,
    pix_fmt: str = "rgb24",
    scale_flags: str = _SWS_FLAGS,
    hwaccel: str | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video as writable RGB uint8 arrays (H, W, 3), in constant memory.

    ``fps=None`` yields every decoded frame at the native rate (``probe_video(path).n_frames``
    frames). ``fps=F`` resamples by time: frame ``k`` is the source frame on screen at ``k / F``,
    and exactly ``probe_video(path).frames_at(F)`` frames come out. ``size`` (an int or
    ``(width, height)``) scales every frame with ffmpeg's bicubic filter (``scale_flags``: another
    swscale algorithm, e.g. ``area`` for a cheap downscale). ``pix_fmt`` (:data:`PIXEL_FORMATS`):
    ``gray`` yields the luma plane (H, W), ``yuv420p`` the I420 planes stacked (H * 3 / 2, W).
    ``hwaccel``: decode with ffmpeg's ``-hwaccel`` method of that name (``"cuda"``: NVDEC; see
    :func:`edtalk_cli.video.hwdecode.decode_accel`); the frames are the same as without it, and
    decoding falls back to software when the hardware decoder cannot be set up.
    The file is probed immediately, so a missing or corrupt file raises :class:`MediaError`
    here rather than at the first ``next()``.
    """
    if hwaccel is not None and hwaccel not in HWACCELS:
        raise ValueError(f"hwaccel must be one of {', '.join(HWACCELS)} or None; got {hwaccel!r}")
    info, times = _probe(path)
    wh = _size_arg(size)
    if fps is None:
        return _copying(_decode(info.path, wh, pix_fmt, scale_flags, hwaccel, _rgb_matrix(info, pix_fmt)))
    rate = float(fps_fraction(fps))
    count = info.frames_at(rate)
    # source index for every output frame; non-decreasing
    index = [max(0, bisect.bisect_right(times, k / rate + _TIME_TOLERANCE_S) - 1) for k in range(count)]
    decoded = _decode(info.path, wh, pix_fmt, scale_flags, hwaccel, _rgb_matrix(info, pix_fmt))
    return _resampled(decoded, index)


def _copying(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    with contextlib.closing(frames):  # type: ignore[type-var]
        for frame in frames:
            yield frame.copy()


def _resampled(frames: Iterator[np.ndarray], index: list[int]) -> Iterator[np.ndarray]:
    """Yield ``frames[index[k]]`` for every k, streaming (``index`` must be non-decreasing)."""
    k, last = 0, None
    with contextlib.closing(frames):  # type: ignore[type-var]
        for i, frame in enumerate(frames):
            if k >= len(index):
                break
            last = frame
            while k < len(index) and index[k] <= i:
                yield frame.copy()
                k += 1
    # The decoder delivered fewer frames than the timestamps promised: hold the last one.
    while last is not None and k < len(index):
        yield last.copy()
        k += 1


def read_video(
    path: str | Path,
    fps: float | Fraction | None = None,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    *,
    hwaccel: str | None = None,
) -> np.ndarray:
    """Decode a (short) video into one uint8 array (T, H, W, 3); see :func:`iter_video_frames`."""
    frames: list[np.ndarray] = []
    gen = iter_video_frames(path, fps=fps, size=size, hwaccel=hwaccel)
    with contextlib.closing(gen):  # type: ignore[type-var]
        for frame in gen:
            if max_frames is not None and len(frames) >= max_frames:
                break
            frames.append(frame)
    if not frames:
        raise MediaError(f"video '{path}' gave no frames", hint=VIDEO_HINT)
    return np.stack(frames)


# --------------------------------------------------------------------------------------- kinds


def _pil_frame_count(p: Path) -> int | None:
    """Frames in an image file PIL can open (1 for stills), None when PIL cannot open it."""
    try:
        with Image.open(p) as im:
            return int(getattr(im, "n_frames", 1))
    except (OSError, ValueError, SyntaxError):
        return None


def is_image_path(path: str | Path) -> bool:
    """True for a still image: by extension, else (unknown extension) by opening it with PIL."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return True
    if ext in VIDEO_EXTENSIONS or not p.is_file():
        return False
    return _pil_frame_count(p) == 1


def is_video_path(path: str | Path) -> bool:
    """True for a video: by extension, else (unknown extension, e.g. .gif) by probing it."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return True
    if ext in IMAGE_EXTENSIONS or not p.is_file():
        return False
    frames = _pil_frame_count(p)
    if frames is not None:
        return frames > 1  # an animated GIF/WEBP is a video, a still is not
    try:
        return probe_video(p).n_frames > 1
    except MediaError:
        return False
