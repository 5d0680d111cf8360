"""Face crops in, generated faces back out, and the uint8 <-> model-tensor conversions.

A crop is an *integer* square ``[x0, x0 + side) x [y0, y0 + side)`` of the frame (it may extend
past the image; the missing part is padded with edge pixels by default), resized to ``size``
with PIL's bicubic filter (as the official demo resizes source images). :class:`CropTransform`
remembers that square, so :func:`paste_back` can put a generated ``size x size`` face back
with a feathered elliptical (or rounded-rectangle) mask. Because the square is integer-aligned
and the mask is zero on the square's border, every pixel outside the square, and every pixel
inside it where the mask is zero, is left bit-identical.

Output conversion: :func:`from_model_tensor` maps [-1, 1] to uint8 with a fixed
``clamp(-1, 1)``, ``(x + 1) * 127.5``, round-to-nearest. We deliberately do **not** use the
official demos' global min-max stretch (``official_minmax_to_uint8``), which rescales the whole
video by its own extreme values, so one frame's contrast depends on every other frame (and on
the video's length); it is kept for parity experiments only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from edtalk_cli.video.faces import Box

if TYPE_CHECKING:  # torch is imported lazily: decoding and cropping do not need it
    import torch

__all__ = [
    "CropTransform",
    "crop_face",
    "feather_mask",
    "from_model_tensor",
    "official_minmax_to_uint8",
    "paste_back",
    "to_model_tensor",
]

PAD_MODES = ("edge", "reflect", "constant")
MASK_SHAPES = ("ellipse", "rect")


@dataclass(frozen=True)
class CropTransform:
    """The integer square a face crop was taken from, and the crop's size.

    Pixel centres map as ``u = (x - x0 + 0.5) * size / side - 0.5`` (image x -> crop u), same for y.
    """

    x0: int
    y0: int
    side: int  # in frame pixels
    size: int  # crop side in pixels (e.g. 256)
    image_shape: tuple[int, int]  # (H, W) of the frame

    @classmethod
    def from_box(cls, box: Box, image_shape: tuple[int, ...], size: int = 256) -> CropTransform:
        """Round a (square) box to integer pixels; a non-square box becomes the square on its longer side."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        side = max(1, round(max(box.width, box.height)))
        x0 = round(box.cx - side / 2)
        y0 = round(box.cy - side / 2)
        return cls(int(x0), int(y0), int(side), int(size), (int(image_shape[0]), int(image_shape[1])))

    @property
    def box(self) -> Box:
        """The square as a :class:`Box`."""
        return Box(self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return self.size / self.side

    def to_crop(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates -> crop coordinates."""
        s = self.scale
        return (np.asarray(x) - self.x0 + 0.5) * s - 0.5, (np.asarray(y) - self.y0 + 0.5) * s - 0.5

    def overlap(self) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) of the square clipped to the frame, None when they do not meet."""
        h, w = self.image_shape
        x0, y0 = max(self.x0, 0), max(self.y0, 0)
        x1, y1 = min(self.x0 + self.side, w), min(self.y0 + self.side, h)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1


def _pad_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map out-of-range indices into [0, n) by edge replication or mirror reflection."""
    if mode == "edge" or n == 1:
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)  # "reflect" = mirror without repeating the edge pixel (numpy 'reflect')
    r = np.abs(idx) % period
    return np.where(r >= n, period - r, r)


def _square_pixels(image: np.ndarray, t: CropTransform, pad_mode: str) -> np.ndarray:
    """The (side, side, C) pixels of the square, padded where it leaves the frame."""
    h, w = image.shape[:2]
    x0, y0, side = t.x0, t.y0, t.side
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return image[y0 : y0 + side, x0 : x0 + side]
    xs = np.arange(x0, x0 + side)
    ys = np.arange(y0, y0 + side)
    if pad_mode == "constant":
        out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
        xin = (xs >= 0) & (xs < w)
        yin = (ys >= 0) & (ys < h)
        if xin.any() and yin.any():
            out[np.ix_(yin, xin)] = image[np.ix_(ys[yin], xs[xin])]
        return out
    return image[np.ix_(_pad_index(ys, h, pad_mode), _pad_index(xs, w, pad_mode))]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square uint8 RGB image -> size x size with PIL bicubic (antialiased when shrinking)."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))


def crop_face(
    image: np.ndarray,
    box: Box | CropTransform,
    size: int = 256,
    *,
    pad_mode: str = "edge",
) -> np.ndarray:
    """Crop the square ``box`` (see :func:`~edtalk_cli.video.faces.crop_box_for_face`) and resize it
    to (size, size, 3) uint8; parts outside the image are padded (``edge``, ``reflect`` or
    ``constant`` black). Use :meth:`CropTransform.from_box` to keep the mapping for paste-back."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}; got {pad_mode!r}")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    t = box if isinstance(box, CropTransform) else CropTransform.from_box(box, arr.shape, size)
    if t.size != size:
        t = CropTransform(t.x0, t.y0, t.side, size, t.image_shape)
    return _resize(_square_pixels(arr, t, pad_mode), size)


@lru_cache(maxsize=16)
def _mask_cached(side: int, feather: float, shape: str, margin: float) -> np.ndarray:
    c = (np.arange(side, dtype=np.float64) + 0.5) / side * 2.0 - 1.0  # pixel centres in (-1, 1)
    u, v = np.meshgrid(c, c)
    p = 2.0 if shape == "ellipse" else 8.0  # "rect" is a rounded rectangle: a superellipse, p = 8
    r = (np.abs(u) ** p + np.abs(v) ** p) ** (1 / p)
    outer = 1.0 - margin
    width = 2.0 * feather  # feather is a fraction of the side; r spans 2 units over the side
    if width <= 0:
        m = (r < outer).astype(np.float64)
    else:
        t = np.clip((outer - r) / width, 0.0, 1.0)
        m = t * t * (3.0 - 2.0 * t)  # smoothstep: C1-continuous soft edge
    mask = m.astype(np.float32)
    mask.setflags(write=False)
    return mask


def feather_mask(side: int, feather: float = 0.1, shape: str = "ellipse", margin: float = 0.02) -> np.ndarray:
    """Float32 (side, side) blend weights in [0, 1]: 1 in the middle, a smooth ramp ``feather * side``
    pixels wide, and exactly 0 on and near the border (``margin``, fraction of the half-side)."""
    if shape not in MASK_SHAPES:
        raise ValueError(f"mask shape must be one of {', '.join(MASK_SHAPES)}; got {shape!r}")
    if not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}")
    return _mask_cached(int(side), float(feather), shape, float(margin))


def checked_paste_inputs(
    frame: np.ndarray, face: np.ndarray, image_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(frame, face) as arrays after checking them for a paste-back: frame uint8 (H, W, 3) of the
    ``image_shape`` the crop was taken from, face a square uint8 (F, F, 3) image."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frame must be uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    if tuple(arr.shape[:2]) != tuple(image_shape):
        raise ValueError(f"frame is {arr.shape[:2]}, the crop was taken from {tuple(image_shape)}")
    fc = np.asarray(face)
    if fc.dtype != np.uint8 or fc.ndim != 3 or fc.shape[2] != 3 or fc.shape[0] != fc.shape[1]:
        raise ValueError(f"face must be a square uint8 (F, F, 3) image, got {fc.dtype} {fc.shape}")
    return arr, fc


def paste_back(
    frame: np.ndarray,
    face: np.ndarray,
    transform: CropTransform,
    feather: float = 0.1,
    *,
    shape: str = "ellipse",
) -> np.ndarray:
    """Blend a generated face (F, F, 3) uint8 (any square size, e.g. ``transform.size``) into a copy
    of ``frame`` where it was cropped.

    The face is resized to the crop square (PIL bicubic) and blended with :func:`feather_mask`.
    Pixels outside the square or where the mask is 0 are copied bit-exactly from ``frame``.
    """
    arr, fc = checked_paste_inputs(frame, face, transform.image_shape)
    return square_paste_back(arr, fc, transform, feather, shape=shape)


def square_paste_back(
    frame: np.ndarray, face: np.ndarray, transform: CropTransform, feather: float, *, shape: str
) -> np.ndarray:
    """:func:`paste_back` on inputs already checked by :func:`checked_paste_inputs`."""
    out = frame.copy()
    region = transform.overlap()
    if region is None:
        return out
    x0, y0, x1, y1 = region
    up = _resize(face, transform.side)
    mask = feather_mask(transform.side, feather, shape)
    sx, sy = x0 - transform.x0, y0 - transform.y0
    m = mask[sy : sy + (y1 - y0), sx : sx + (x1 - x0)]
    src = up[sy : sy + (y1 - y0), sx : sx + (x1 - x0)]
    out[y0:y1, x0:x1] = blend_into(out[y0:y1, x0:x1], src, m)
    return out


def blend_into(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``src * m + dst * (1 - m)`` of uint8 (h, w, 3) images with a float32 (h, w) mask, rounded, in
    float32 arithmetic in one OpenCV pass (no full-frame temporaries).

    OpenCV divides by ``1 + 1e-5``, so a pixel where ``m`` is 0 keeps ``dst``'s value exactly; a
    pixel may differ by 1 level from the same blend in float64.
    """
    import cv2

    weight = np.ascontiguousarray(mask, dtype=np.float32)
    return cv2.blendLinear(np.ascontiguousarray(src), np.ascontiguousarray(dst), weight, 1.0 - weight)


# --------------------------------------------------------------------------------------- tensors


def to_model_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) or (H, W, 3) -> float32 (T, 3, H, W) in [-1, 1].

    Same arithmetic as the official demo: /255 in float64, cast to float32, then ``(x - 0.5) * 2``.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"images must be (T, H, W, 3) or (H, W, 3), got {arr.shape}")
    import torch

    x = (arr.astype(np.float64) / 255.0).astype(np.float32)  # (T, H, W, 3)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (T, 3, H, W)
    return (t - 0.5) * 2


def from_model_tensor(x: torch.Tensor) -> np.ndarray:
    """Model output (T, 3, H, W) or (3, H, W), nominally in [-1, 1] -> uint8 (T, H, W, 3).

    ``clamp(-1, 1)`` then ``(x + 1) * 127.5`` rounded to nearest; every frame is converted on its
    own (no video-wide statistics). NaN becomes mid-grey.
    """
    import torch

    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (T, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    y = torch.nan_to_num(x.detach().float(), nan=0.0).clamp(-1.0, 1.0)
    u8 = ((y + 1.0) * 127.5).round().to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def official_minmax_to_uint8(video: torch.Tensor) -> np.ndarray:
    """The official demos' output conversion, for parity experiments only.

    ``video`` (T, 3, H, W): ``clamp(-1, 1)``, then ``(v - v.min()) / (v.max() - v.min()) * 255`` with
    min and max over the *whole* video and all channels, then truncation to uint8 -> (T, H, W, 3).
    A constant video (max == min; NaN in the official code) gives zeros.
    """
    import torch

    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"expected (T, 3, H, W), got {tuple(video.shape)}")
    v = video.detach().permute(0, 2, 3, 1).clamp(-1, 1)  # (T, H, W, 3), as the demos permute first
    lo, hi = v.min(), v.max()
    if not bool(hi > lo):
        return np.zeros(tuple(v.shape), dtype=np.uint8)
    return ((v - lo) / (hi - lo) * 255).to(torch.uint8).cpu().numpy()
