"""Colour maths on I420 frames: a box of the planes to RGB and back, so that a paste-back only
converts the pixels it reads and writes.

An I420 frame is one uint8 array (H * 3 / 2, W) (:data:`edtalk_cli.video.io.PIXEL_FORMATS`): the
luma plane Y (H rows), then the chroma planes U and V, each (H / 2, W / 2) stored as H / 4 rows of
W. :func:`to_rgb` converts an even-aligned box of it to RGB (chroma upsampled bilinearly with its
samples centred between the luma pixels, as ffmpeg's swscale does; float32 maths, rounded), and
:func:`write_rgb` writes RGB back in place: luma only where the caller says a pixel changed,
chroma only for the 2x2 blocks that hold a changed pixel (the block's mean RGB). Every other byte
stays the source's own.

:class:`Colorimetry` says how a source's bytes read as colours (its matrix and range) and what the
output is tagged with. Output frames are always limited ("tv") range yuv420p: a full-range
source's planes are mapped to tv range by one scale and offset per plane in OpenCV
(:meth:`Colorimetry.to_output`; measured cheaper than ffmpeg's ``scale=out_range=tv``, see
``benchmarks/bench_yuv.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "MATRICES",
    "UNTAGGED_HD_LINES",
    "Box",
    "Colorimetry",
    "changed_pixels",
    "even_box",
    "i420_planes",
    "matrix_of",
    "to_rgb",
    "union_box",
    "write_rgb",
]

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open frame pixels

# (Kr, Kb) of each supported YUV matrix
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
# ffmpeg's colorspace names -> our matrix; "unknown" (untagged) follows UNTAGGED_HD_LINES
_MATRIX_NAMES = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601"}
# an untagged source at least this many lines high is read as bt709, a smaller one as bt601: the
# rule players (and the HD/SD conventions) apply to frames that carry no matrix
UNTAGGED_HD_LINES = 720
_I420_FORMATS = {"yuv420p": False, "yuvj420p": True}  # decoded pix_fmt -> full range


def matrix_of(colorspace: str | None, height: int) -> str | None:
    """The YUV matrix (``bt601`` / ``bt709``) a stream's bytes are read with: its ``colorspace``
    tag as ffmpeg prints it, or for an untagged stream (None or "unknown") bt709 from
    :data:`UNTAGGED_HD_LINES` lines up, else bt601; None for a matrix we do not convert."""
    if colorspace in (None, "unknown"):
        return "bt709" if height >= UNTAGGED_HD_LINES else "bt601"
    return _MATRIX_NAMES.get(colorspace)


class ProbedStream(Protocol):
    """What :meth:`Colorimetry.of_video` reads of a probed video (``video.io.VideoInfo`` has it)."""

    pix_fmt: str | None
    height: int
    width: int
    color_range: str | None
    color_tags: tuple[str, str, str] | None


@dataclass(frozen=True)
class Colorimetry:
    """How a yuv420p source's bytes read as colours, and the output's tags.

    ``matrix``: ``bt601`` or ``bt709``. ``full_range``: Y/U/V use 0..255 (``pc``, ``yuvj420p``)
    instead of 16..235 / 16..240 (``tv``). ``tags``: the source's (colorspace, primaries, trc)
    names as ffmpeg prints them, "unknown" where untagged; the output carries the ones that are
    not "unknown", in tv range.
    """

    matrix: str
    full_range: bool = False
    tags: tuple[str, str, str] = ("unknown", "unknown", "unknown")

    def __post_init__(self) -> None:
        if self.matrix not in MATRICES:
            raise ValueError(f"matrix must be one of {', '.join(MATRICES)}, got {self.matrix!r}")

    @classmethod
    def of_stream(
        cls,
        pix_fmt: str | None,
        height: int,
        width: int,
        color_range: str | None = None,
        tags: tuple[str, str, str] | None = None,
    ) -> Colorimetry | None:
        """The colorimetry of a decoded stream, None when its frames are not I420 we can convert:
        a pix_fmt other than yuv420p / yuvj420p, an odd size, or a matrix other than bt601 /
        bt709. An untagged matrix is bt709 for frames of at least :data:`UNTAGGED_HD_LINES`
        lines, else bt601."""
        if pix_fmt not in _I420_FORMATS or height % 2 or width % 2 or height < 2 or width < 2:
            return None
        tags = tags or ("unknown", "unknown", "unknown")
        matrix = matrix_of(tags[0], height)
        if matrix is None:
            return None
        full = _I420_FORMATS[pix_fmt] or color_range == "pc"
        return cls(matrix, full, tags)

    @classmethod
    def of_video(cls, info: ProbedStream) -> Colorimetry | None:
        """:meth:`of_stream` of a probed video's decoded frames."""
        return cls.of_stream(info.pix_fmt, info.height, info.width, info.color_range, info.color_tags)

    def output_tags(self) -> dict[str, str]:
        """The colour tags of the output (ffmpeg ``setparams`` names): tv range, and the source's
        colorspace, primaries and trc where it had them."""
        out = {"range": "tv"}
        for name, value in zip(("colorspace", "color_primaries", "color_trc"), self.tags):
            if value != "unknown":
                out[name] = value
        return out

    def to_output(self, planes: np.ndarray) -> np.ndarray:
        """A copy of I420 ``planes`` in the output's tv range (a plain copy for a tv source):
        ``16 + Y * 219 / 255`` and ``128 + (C - 128) * 224 / 255``, rounded (never a tie)."""
        if not self.full_range:
            return planes.copy()
        import cv2

        height = planes.shape[0] * 2 // 3
        out = np.empty_like(planes)
        # both maps are positive affine functions of the byte, so the scaled absolute value is them
        cv2.convertScaleAbs(planes[:height], out[:height], 219 / 255, 16.0)
        cv2.convertScaleAbs(planes[height:], out[height:], 224 / 255, 128.0 * (1 - 224 / 255))
        return out


def i420_planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (Y (H, W), U (H/2, W/2), V (H/2, W/2)) of an I420 frame (H * 3 / 2, W) uint8."""
    rows, width = frame.shape
    height = rows * 2 // 3
    if rows != height * 3 // 2 or height % 2 or width % 2 or not frame.flags.c_contiguous:
        raise ValueError(
            f"an I420 frame is a contiguous (H * 3 / 2, W) array of even H, W, got {frame.shape}"
        )
    chroma = frame[height:].reshape(2, height // 2, width // 2)  # a view: the rows are contiguous
    return frame[:height], chroma[0], chroma[1]


def even_box(box: Box, shape: tuple[int, int], grow: int = 0) -> Box:
    """``box`` grown by ``grow`` px, clipped to the (H, W) frame ``shape`` and widened to even
    coordinates (so it holds whole 2x2 chroma blocks)."""
    x0, y0, x1, y1 = box
    height, width = shape
    x0, y0 = max(0, x0 - grow) // 2 * 2, max(0, y0 - grow) // 2 * 2
    x1, y1 = min(width, -(-(x1 + grow) // 2) * 2), min(height, -(-(y1 + grow) // 2) * 2)
    return x0, y0, x1, y1


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box holding every one of ``boxes`` (even when each of them is)."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _coefficients(colorimetry: Colorimetry) -> tuple[np.ndarray, np.ndarray]:
    """(M (3, 3), offset (3,)): RGB in 0..255 = M @ (Y, U, V) + offset, for the source's bytes."""
    kr, kb = MATRICES[colorimetry.matrix]
    kg = 1.0 - kr - kb
    if colorimetry.full_range:
        y_scale, c_scale, y_zero = 1.0, 1.0, 0.0
    else:
        y_scale, c_scale, y_zero = 255 / 219, 255 / 224, 16.0
    matrix = np.array(
        [
            [y_scale, 0.0, 2 * (1 - kr) * c_scale],
            [y_scale, -2 * kb * (1 - kb) / kg * c_scale, -2 * kr * (1 - kr) / kg * c_scale],
            [y_scale, 2 * (1 - kb) * c_scale, 0.0],
        ]
    )
    offset = -matrix @ np.array([y_zero, 128.0, 128.0])
    return matrix, offset


def _output_coefficients(colorimetry: Colorimetry) -> tuple[np.ndarray, np.ndarray]:
    """(M (3, 3), offset (3,)): tv-range (Y, U, V) = M @ RGB + offset (the output is always tv)."""
    kr, kb = MATRICES[colorimetry.matrix]
    kg = 1.0 - kr - kb
    luma = np.array([kr, kg, kb])
    matrix = np.stack(
        [
            luma * 219 / 255,
            (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - kb)) * 224 / 255,
            (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - kr)) * 224 / 255,
        ]
    )
    return matrix, np.array([16.0, 128.0, 128.0])


def _check_box(box: Box, shape: tuple[int, int]) -> None:
    x0, y0, x1, y1 = box
    height, width = shape
    if x0 % 2 or y0 % 2 or x1 % 2 or y1 % 2 or not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} must be even-aligned and inside the {width}x{height} frame")


def _upsampled_chroma(plane: np.ndarray, box: Box) -> np.ndarray:
    """Chroma plane (H/2, W/2) upsampled 2x bilinearly in float32 (samples centred on 2x2 luma blocks) at the
    luma pixels of ``box``; the frame's edge samples are repeated past its border, so a box gives
    the pixels the whole frame's upsampling gives there."""
    import cv2

    x0, y0, x1, y1 = (v // 2 for v in box)
    rows, cols = plane.shape
    # one chroma sample of context each side, edge-replicated at the frame border
    ys = np.clip(np.arange(y0 - 1, y1 + 1), 0, rows - 1)
    xs = np.clip(np.arange(x0 - 1, x1 + 1), 0, cols - 1)
    window = plane[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    if ys[0] == y0 - 1 and xs[0] == x0 - 1 and window.shape == (len(ys), len(xs)):
        padded = window.astype(np.float32)
    else:
        padded = plane[np.ix_(ys, xs)].astype(np.float32)
    up = cv2.resize(padded, (2 * padded.shape[1], 2 * padded.shape[0]), interpolation=cv2.INTER_LINEAR)
    return up[2:-2, 2:-2]


def _weighted(a: np.ndarray, wa: float, b: np.ndarray, wb: float, offset: float, depth: int) -> np.ndarray:
    """``a * wa + b * wb + offset`` of two float32 planes in one OpenCV pass, as ``depth`` (uint8:
    rounded to nearest and saturated)."""
    import cv2

    return cv2.addWeighted(a, float(wa), b, float(wb), float(offset), dtype=depth)


def to_rgb(planes: np.ndarray, box: Box, colorimetry: Colorimetry) -> np.ndarray:
    """The RGB uint8 (h, w, 3) pixels of the even-aligned ``box`` of an I420 frame."""
    import cv2

    luma, u, v = i420_planes(planes)
    _check_box(box, luma.shape)
    x0, y0, x1, y1 = box
    y = luma[y0:y1, x0:x1].astype(np.float32)
    cb, cr = _upsampled_chroma(u, box), _upsampled_chroma(v, box)
    matrix, offset = _coefficients(colorimetry)
    (ry, _, rv), (gy, gu, gv), (by, bu, _) = matrix
    red = _weighted(y, ry, cr, rv, offset[0], cv2.CV_8U)
    green = _weighted(y, gy, _weighted(cb, gu, cr, gv, 0.0, cv2.CV_32F), 1.0, offset[1], cv2.CV_8U)
    blue = _weighted(y, by, cb, bu, offset[2], cv2.CV_8U)
    return cv2.merge([red, green, blue])


def _rgb_planes(rgb: np.ndarray) -> list[np.ndarray]:
    import cv2

    return list(cv2.split(rgb.astype(np.float32)))


def _combine(planes: list[np.ndarray], weights: np.ndarray, offset: float, depth: int) -> np.ndarray:
    """``sum(weights[i] * planes[i]) + offset`` of three float32 planes, as ``depth``."""
    import cv2

    partial = _weighted(planes[0], weights[0], planes[1], weights[1], 0.0, cv2.CV_32F)
    return _weighted(partial, 1.0, planes[2], weights[2], offset, depth)


def changed_pixels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(h, w) bool: where two RGB uint8 (h, w, 3) images differ in any channel."""
    import cv2

    diff = cv2.absdiff(before, after)
    return cv2.bitwise_or(cv2.bitwise_or(diff[..., 0], diff[..., 1]), diff[..., 2]) > 0


def write_rgb(
    planes: np.ndarray, box: Box, rgb: np.ndarray, changed: np.ndarray, colorimetry: Colorimetry
) -> None:
    """Write RGB uint8 (h, w, 3) into the even-aligned ``box`` of the tv-range I420 ``planes``, in
    place: luma where ``changed`` (h, w) is True, chroma for every 2x2 block holding a changed
    pixel (from the block's mean RGB). Everything else is left as it is."""
    import cv2

    luma, u, v = i420_planes(planes)
    _check_box(box, luma.shape)
    x0, y0, x1, y1 = box
    if rgb.shape != (y1 - y0, x1 - x0, 3) or changed.shape != rgb.shape[:2]:
        raise ValueError(f"rgb {rgb.shape} and changed {changed.shape} must cover the box {box}")
    mask = np.ascontiguousarray(changed, dtype=np.uint8) * np.uint8(255)  # 255: a 2x2 mean stays > 0
    if not mask.any():
        return
    # only the even-aligned bounding box of the changed pixels is converted
    left, top, width, height = cv2.boundingRect(mask)
    left, top = left // 2 * 2, top // 2 * 2
    right, bottom = -(-(left + width) // 2) * 2, -(-(top + height) // 2) * 2
    right, bottom = min(right, x1 - x0), min(bottom, y1 - y0)  # the box is even: so are they
    mask = mask[top:bottom, left:right]
    matrix, offset = _output_coefficients(colorimetry)
    channels = _rgb_planes(rgb[top:bottom, left:right])
    new_luma = _combine(channels, matrix[0], offset[0], cv2.CV_8U)
    fy0, fx0 = y0 + top, x0 + left
    cv2.copyTo(new_luma, mask, luma[fy0 : fy0 + bottom - top, fx0 : fx0 + right - left])
    half = ((right - left) // 2, (bottom - top) // 2)
    means = [cv2.resize(c, half, interpolation=cv2.INTER_AREA) for c in channels]  # 2x2 block means
    blocks = cv2.resize(mask, half, interpolation=cv2.INTER_AREA)  # 0 where no pixel of the block changed
    rows, cols = slice(fy0 // 2, fy0 // 2 + half[1]), slice(fx0 // 2, fx0 // 2 + half[0])
    for plane, row in ((u, 1), (v, 2)):
        cv2.copyTo(_combine(means, matrix[row], offset[row], cv2.CV_8U), blocks, plane[rows, cols])
