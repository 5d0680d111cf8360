"""Official face alignment: a similarity transform from 68 landmarks to the EDTalk template.

The official source-image crop (``crop_image2.py``, spec section 4) estimates a similarity
transform (scale, rotation, translation; skimage's least-squares Umeyama estimate) from the
template ``M003_template.npy`` rows 0..46 (jaw, brows, nose, upper eyes; 256-px coordinates) to
the detected landmarks 0..46, and warps the photo into 256 x 256 with it (bilinear, constant 0
fill). :func:`official_transform` does the same estimate; :func:`warp_to_crop` warps with
``cv2.warpAffine`` (bilinear, constant 0), which agrees with ``skimage.transform.warp`` to
within 1 level on real photos (``tests/test_align.py``). Other model sizes scale the template
about pixel centres: ``(p + 0.5) * size / 256 - 0.5``.

:class:`AlignTransform` keeps the (2, 3) matrix that maps frame pixels (x, y) to crop pixels
(u, v); :func:`paste_back` inverts it (rotation included) to put a generated face back, for
this transform and for the square :class:`~edtalk_cli.video.crop.CropTransform` alike.

For videos, :func:`smooth_transforms` smooths the per-frame similarity over time so the crop
does not jitter: the log-scale, the angle and the frame point under the crop centre are each
filtered with a zero-phase Gaussian (``sigma`` frames, default :data:`DEFAULT_SMOOTHING`),
after frames without a face are filled by linear interpolation from their neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Union

import numpy as np

from edtalk_cli.video.crop import CropTransform, blend_into, checked_paste_inputs, feather_mask
from edtalk_cli.video.crop import square_paste_back as _paste_back_square

__all__ = [
    "ALIGN_POINTS",
    "DEFAULT_SMOOTHING",
    "TEMPLATE_SIZE",
    "AlignTransform",
    "AnyTransform",
    "crop_image",
    "crop_matrix",
    "frame_bbox",
    "in_box",
    "official_template",
    "official_transform",
    "paste_back",
    "similarity_params",
    "smooth_transforms",
    "transform_from_params",
    "warp_to_crop",
]

TEMPLATE_SIZE = 256  # the template's coordinates are 256-px crop pixels
ALIGN_POINTS = 47  # landmarks 0..46 take part in the estimate, as in crop_image2.py
DEFAULT_SMOOTHING = 2.0  # Gaussian sigma in frames for the per-frame similarity of a video


@lru_cache(maxsize=1)
def _template_256() -> np.ndarray:
    ref = resources.files("edtalk_cli") / "data" / "official" / "M003_template.npy"
    with resources.as_file(ref) as path:
        data = np.load(path, allow_pickle=False)
    out = np.asarray(data, dtype=np.float64)
    out.setflags(write=False)
    return out


def official_template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The official 68-point template (68, 2) float64 in ``size``-px crop coordinates."""
    k = size / TEMPLATE_SIZE
    return (_template_256() + 0.5) * k - 0.5


@dataclass(frozen=True)
class AlignTransform:
    """A similarity crop: ``matrix`` (2, 3) float64 maps frame pixel (x, y) to crop pixel (u, v).

    Pixel centres sit at integer coordinates in both (the cv2 / skimage convention). ``size`` is
    the crop side, ``image_shape`` the frame's (H, W).
    """

    matrix: np.ndarray
    size: int
    image_shape: tuple[int, int]

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        if m.shape != (2, 3):
            raise ValueError(f"matrix must be (2, 3), got {m.shape}")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "image_shape", (int(self.image_shape[0]), int(self.image_shape[1])))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AlignTransform):
            return NotImplemented
        return (
            self.size == other.size
            and self.image_shape == other.image_shape
            and np.array_equal(self.matrix, other.matrix)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array

    @property
    def inverse(self) -> np.ndarray:
        """(2, 3) matrix mapping crop pixels back to frame pixels."""
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        return np.linalg.inv(full)[:2]

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return float(np.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame points (N, 2) -> crop points (N, 2)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop points (N, 2) -> frame points (N, 2)."""
        inv = self.inverse
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p @ inv[:, :2].T + inv[:, 2]

    def frame_bbox(self) -> tuple[int, int, int, int] | None:
        """Integer (x0, y0, x1, y1), half-open, of the frame pixels the crop square covers, clipped
        to the frame; None when the square lies outside it."""
        edge = self.size - 0.5
        corners = self.to_image(np.array([[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]]))
        h, w = self.image_shape
        x0 = max(int(np.floor(corners[:, 0].min())), 0)
        y0 = max(int(np.floor(corners[:, 1].min())), 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + 1, w)
        y1 = min(int(np.ceil(corners[:, 1].max())) + 1, h)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1


AnyTransform = Union[AlignTransform, CropTransform]  # noqa: UP007 (a runtime alias on Python 3.10)


def _estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 least-squares similarity (Umeyama, skimage's estimate) mapping ``src`` points to ``dst``."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:  # pragma: no cover - older scikit-image
        tform = SimilarityTransform()
        ok = tform.estimate(src, dst)
    params = np.asarray(tform.params, dtype=np.float64)
    if not ok or not np.isfinite(params).all():
        raise ValueError("cannot estimate a similarity transform from these landmarks (degenerate)")
    return params


def official_transform(
    landmarks: np.ndarray, image_shape: tuple[int, ...], size: int = 256
) -> AlignTransform:
    """The official ``crop_image2.py`` alignment of a face with 68 ``landmarks`` (68, 2), frame pixels.

    As the official code, the similarity is estimated from template rows 0..46 to landmarks
    0..46 (crop -> frame) and inverted, so the crop equals ``skimage.transform.warp`` of the
    official recipe up to interpolation.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"landmarks must be finite (68, 2), got {points.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    crop_to_frame = _estimate_similarity(official_template(size)[:ALIGN_POINTS], points[:ALIGN_POINTS])
    frame_to_crop = np.linalg.inv(crop_to_frame)[:2]
    return AlignTransform(frame_to_crop, int(size), (int(image_shape[0]), int(image_shape[1])))


def warp_to_crop(image: np.ndarray, transform: AlignTransform) -> np.ndarray:
    """The aligned crop (size, size, 3) uint8 of an RGB uint8 frame: bilinear, black outside the frame."""
    import cv2

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    if tuple(arr.shape[:2]) != transform.image_shape:
        raise ValueError(f"image is {arr.shape[:2]}, the transform was made for {transform.image_shape}")
    s = transform.size
    return cv2.warpAffine(
        np.ascontiguousarray(arr),
        transform.matrix,
        (s, s),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def crop_image(image: np.ndarray, transform: AnyTransform) -> np.ndarray:
    """The model-size crop of ``image`` for either transform kind."""
    if isinstance(transform, AlignTransform):
        return warp_to_crop(image, transform)
    from edtalk_cli.video.crop import crop_face

    return crop_face(image, transform, transform.size)


def crop_matrix(transform: AnyTransform) -> np.ndarray:
    """(2, 3) matrix mapping frame pixels to crop pixels of either transform kind."""
    if isinstance(transform, AlignTransform):
        return transform.matrix
    s = transform.scale  # u = (x - x0 + 0.5) * s - 0.5
    return np.array([[s, 0.0, (0.5 - transform.x0) * s - 0.5], [0.0, s, (0.5 - transform.y0) * s - 0.5]])


def frame_bbox(transform: AnyTransform) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), half-open, of the frame pixels either transform kind's crop covers (clipped
    to the frame; None when it lies outside): all a crop reads and all a paste-back writes."""
    if isinstance(transform, AlignTransform):
        return transform.frame_bbox()
    return transform.overlap()


def in_box(transform: AnyTransform, box: tuple[int, int, int, int]) -> AnyTransform:
    """``transform`` re-expressed for the sub-image ``frame[y0:y1, x0:x1]`` of its frame: cropping or
    pasting through it on the sub-image equals doing so on the frame, as long as the box holds
    every pixel the crop reads (:func:`frame_bbox`, plus a pixel for interpolation)."""
    x0, y0, x1, y1 = box
    shape = (y1 - y0, x1 - x0)
    if isinstance(transform, AlignTransform):
        matrix = transform.matrix.copy()
        matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)  # frame x = box x + x0
        return AlignTransform(matrix, transform.size, shape)
    return replace(transform, x0=transform.x0 - x0, y0=transform.y0 - y0, image_shape=shape)


def _warp_into_box(
    src: np.ndarray, frame_to_src: np.ndarray, box: tuple[int, int, int, int], interpolation: int
) -> np.ndarray:
    """``src`` sampled at the frame pixels of ``box`` (bilinear), 0 outside ``src``."""
    import cv2

    x0, y0, x1, y1 = box
    m = frame_to_src.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # box pixel (0, 0) is frame (x0, y0)
    return cv2.warpAffine(
        np.ascontiguousarray(src),
        m,
        (x1 - x0, y1 - y0),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _rescaled(matrix: np.ndarray, size_from: int, size_to: int) -> np.ndarray:
    """A frame -> crop matrix at ``size_from`` re-expressed for a crop of side ``size_to``."""
    k = size_to / size_from
    out = matrix * k
    out[:, 2] += 0.5 * k - 0.5
    return out


def paste_back(
    frame: np.ndarray,
    face: np.ndarray,
    transform: AnyTransform,
    mask: np.ndarray | None = None,
    *,
    feather: float = 0.1,
    shape: str = "ellipse",
) -> np.ndarray:
    """Blend a generated ``face`` (F, F, 3) uint8, any square size, into a copy of ``frame``.

    ``mask`` is a float32 (M, M) blend weight in crop space (any square size, values in [0, 1];
    default :func:`~edtalk_cli.video.crop.feather_mask` with ``feather`` and ``shape``). Face and
    mask are warped with the inverse of ``transform`` (bilinear) into the frame pixels the crop
    covers, and blended; every pixel where the warped mask is 0 is copied bit-exactly from
    ``frame``. A :class:`CropTransform` with the default mask keeps the square paste-back of
    :func:`edtalk_cli.video.crop.paste_back` (PIL bicubic).
    """
    import cv2

    arr, fc = checked_paste_inputs(frame, face, transform.image_shape)
    if isinstance(transform, CropTransform) and mask is None:
        return _paste_back_square(arr, fc, transform, feather, shape=shape)
    if mask is None:
        mask = feather_mask(transform.size, feather, shape)
    mk = np.asarray(mask, dtype=np.float32)
    if mk.ndim != 2 or mk.shape[0] != mk.shape[1]:
        raise ValueError(f"mask must be a square (M, M) array, got {mk.shape}")
    out = arr.copy()
    box = frame_bbox(transform)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    matrix = crop_matrix(transform)
    m = _warp_into_box(mk, _rescaled(matrix, transform.size, mk.shape[0]), box, cv2.INTER_LINEAR)
    src = _warp_into_box(fc, _rescaled(matrix, transform.size, fc.shape[0]), box, cv2.INTER_LINEAR)
    out[y0:y1, x0:x1] = blend_into(out[y0:y1, x0:x1], src, np.clip(m, 0.0, 1.0, out=m))
    return out


# --------------------------------------------------------------------------------------- video


def similarity_params(transform: AlignTransform) -> np.ndarray:
    """(log scale, angle in radians, cx, cy): the frame point (cx, cy) under the crop centre."""
    a, b = transform.matrix[0, 0], transform.matrix[1, 0]
    centre = (transform.size - 1) / 2
    cx, cy = transform.to_image(np.array([[centre, centre]]))[0]
    return np.array([np.log(np.hypot(a, b)), np.arctan2(b, a), cx, cy])


def transform_from_params(params: np.ndarray, size: int, image_shape: tuple[int, ...]) -> AlignTransform:
    """The inverse of :func:`similarity_params`."""
    log_s, angle, cx, cy = (float(v) for v in params)
    s = np.exp(log_s)
    a, b = s * np.cos(angle), s * np.sin(angle)
    rot = np.array([[a, -b], [b, a]])
    centre = (size - 1) / 2
    t = np.array([centre, centre]) - rot @ np.array([cx, cy])
    return AlignTransform(np.column_stack([rot, t]), int(size), (int(image_shape[0]), int(image_shape[1])))


def smooth_transforms(
    landmarks: np.ndarray,
    found: np.ndarray,
    image_shape: tuple[int, ...],
    size: int = 256,
    sigma: float = DEFAULT_SMOOTHING,
) -> list[AlignTransform]:
    """Per-frame official transforms of a video, smoothed over time.

    ``landmarks`` (T, 68, 2) in frame pixels, ``found`` (T,) bool (frames without a face may hold
    NaN). Each found frame's similarity is reduced to (log scale, angle, crop-centre x, y); the
    angle is unwrapped; frames without a face are filled by linear interpolation from the
    nearest found frames (held before the first and after the last); then each of the four
    series is smoothed with a zero-phase Gaussian of ``sigma`` frames (``mode="nearest"``;
    ``sigma <= 0`` disables it). Raises ValueError when no frame has a face.
    """
    from scipy.ndimage import gaussian_filter1d

    found = np.asarray(found, dtype=bool)
    n = len(found)
    if n == 0 or not found.any():
        raise ValueError("no frame with a face to align")
    idx = np.flatnonzero(found)
    raw = np.stack([similarity_params(official_transform(landmarks[i], image_shape, size)) for i in idx])
    raw[:, 1] = np.unwrap(raw[:, 1])
    frames = np.arange(n)
    series = np.stack([np.interp(frames, idx, raw[:, k]) for k in range(4)], axis=1)  # (T, 4)
    if sigma > 0 and n > 1:
        series = gaussian_filter1d(series, sigma=sigma, axis=0, mode="nearest")
    return [transform_from_params(p, size, image_shape) for p in series]
