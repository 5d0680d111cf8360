"""Blend masks for paste-back, built in crop space, and colour matching of the generated face.

Regions (``paste_back: {region: ...}`` in a manifest):

* ``face``: the whole crop under a feathered ellipse (:func:`~edtalk_cli.video.crop.feather_mask`).
* ``mouth``: the convex hull of the outer lips (landmarks 48..59) and the chin (6..10), grown by
  :data:`REGION_MARGIN` of the crop side (10 px of a 256 crop). The chin is part of the region
  because an opening mouth moves the jaw: a lips-only mask would leave the source's chin under
  a lowered lip.
* ``lower``: the lower face, the convex hull of the jaw line 2..14 and the bottom of the nose
  31..35, grown by the same margin (so it contains the ``mouth`` region).

A region mask is 1 inside the grown hull and falls to 0 over a smoothstep ramp ``feather``
pixels wide outside it, so it is C1-continuous (no step) and exactly 0 farther out. Pixels
where the mask is 0 are copied unchanged by paste-back.

The feather is a fraction of the crop side (``0.05`` -> 12.8 px of a 256 crop) or a number of
output-frame pixels (``"12px"``), converted to crop pixels with the crop's scale.

Colour matching (:func:`match_color`) moves the generated face's per-channel mean and standard
deviation inside the mask to those of the source crop, in CIELAB (L*, a*, b*), before blending,
so a brightness or white-balance drift of the model does not show as a patch.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from edtalk_cli.video.crop import feather_mask

__all__ = [
    "DEFAULT_FEATHER",
    "LOWER_POINTS",
    "MOUTH_POINTS",
    "REGIONS",
    "REGION_MARGIN",
    "STD_RATIO_RANGE",
    "Region",
    "feather_in_crop_pixels",
    "hull_mask",
    "match_color",
    "region_mask",
    "scale_landmarks",
]

Region = Literal["face", "lower", "mouth"]
REGIONS: tuple[str, ...] = get_args(Region)
# default feather per region, as a fraction of the crop side ("face" is today's ellipse feather)
DEFAULT_FEATHER: dict[str, float] = {"face": 0.1, "lower": 0.05, "mouth": 0.05}
MOUTH_POINTS: tuple[int, ...] = (*range(48, 60), *range(6, 11))  # outer lips + chin
LOWER_POINTS: tuple[int, ...] = (*range(2, 15), *range(31, 36))  # jaw line + bottom of the nose
REGION_MARGIN = 0.04  # growth of the mouth and lower-face hulls, fraction of the crop side (10 px of 256)
STD_RATIO_RANGE = (0.5, 2.0)  # colour matching never scales a channel's spread beyond this


def feather_in_crop_pixels(
    size: int,
    *,
    fraction: float | None = None,
    frame_px: float | None = None,
    scale: float = 1.0,
    region: str = "face",
) -> float:
    """The feather width in pixels of a ``size`` crop.

    ``fraction`` of the crop side, or ``frame_px`` output-frame pixels times ``scale`` (crop
    pixels per frame pixel); neither: the region's :data:`DEFAULT_FEATHER`.
    """
    if fraction is not None and frame_px is not None:
        raise ValueError("give the feather as a fraction or in frame pixels, not both")
    if frame_px is not None:
        return max(0.0, float(frame_px) * float(scale))
    if fraction is None:
        fraction = DEFAULT_FEATHER[region]
    return max(0.0, float(fraction) * size)


def scale_landmarks(points: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Crop coordinates (N, 2) of a ``from_size`` crop -> those of the same crop at ``to_size``
    (pixel centres stay centres: ``u' = (u + 0.5) * to / from - 0.5``)."""
    k = to_size / from_size
    return (np.asarray(points, dtype=np.float64) + 0.5) * k - 0.5


def hull_mask(points: np.ndarray, size: int, margin_px: float, feather_px: float) -> np.ndarray:
    """Float32 (size, size) in [0, 1]: 1 within ``margin_px`` of the convex hull of ``points``
    (N, 2) (crop pixel coordinates), a smoothstep ramp over the next ``feather_px``, then 0."""
    import cv2

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"points must be (N >= 3, 2), got {pts.shape}")
    shift = 4  # cv2 fixed-point polygon vertices: 1/16 px precision
    hull = cv2.convexHull(np.round(pts * (1 << shift)).astype(np.int32))
    inside = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1, lineType=cv2.LINE_8, shift=shift)
    # Euclidean distance of every pixel centre to the nearest pixel inside the hull
    distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # (size, size) f32
    excess = distance - np.float32(margin_px)  # <= 0: inside the grown hull
    if feather_px <= 0:
        return (excess <= 0).astype(np.float32)
    t = np.clip(1.0 - excess / np.float32(feather_px), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: 1 at the hull, 0 a feather out


def region_mask(
    region: str,
    size: int,
    feather_px: float,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """The float32 (size, size) blend mask of ``region`` for a ``size`` crop.

    ``landmarks`` (68, 2) are in that crop's pixel coordinates (needed for ``mouth`` and
    ``lower``; see :func:`scale_landmarks` when the face is larger than the model crop).
    """
    if region == "face":
        return feather_mask(size, min(0.5, feather_px / size))
    if region not in REGIONS:
        raise ValueError(f"paste-back region must be one of {', '.join(REGIONS)}; got {region!r}")
    if landmarks is None:
        raise ValueError(f"the '{region}' region needs the face's 68 landmarks")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
    points = MOUTH_POINTS if region == "mouth" else LOWER_POINTS
    return hull_mask(lm[list(points)], size, REGION_MARGIN * size, feather_px)


def match_color(face: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``face`` (S, S, 3) uint8 with its CIELAB channel means and standard deviations, weighted by
    ``mask`` (S, S), moved to those of ``reference`` (S, S, 3) uint8 (the source crop).

    The spread ratio is clipped to :data:`STD_RATIO_RANGE`. Returns uint8; an all-zero mask
    returns ``face`` unchanged.
    """
    import cv2

    f = np.asarray(face)
    r = np.asarray(reference)
    if f.shape != r.shape or f.dtype != np.uint8 or r.dtype != np.uint8 or f.ndim != 3:
        raise ValueError(f"face and reference must be uint8 (S, S, 3) alike, got {f.shape} and {r.shape}")
    w = np.asarray(mask, dtype=np.float64)
    if w.shape != f.shape[:2]:
        raise ValueError(f"mask is {w.shape}, the face is {f.shape[:2]}")
    total = w.sum()
    if total <= 0:
        return f.copy()
    lab_f = cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)  # (S, S, 3): L 0..100, a/b
    lab_r = cv2.cvtColor(r.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    weights = (w / total)[..., None]  # (S, S, 1)
    mean_f = (lab_f * weights).sum(axis=(0, 1))  # (3,)
    mean_r = (lab_r * weights).sum(axis=(0, 1))
    std_f = np.sqrt(((lab_f - mean_f) ** 2 * weights).sum(axis=(0, 1)))
    std_r = np.sqrt(((lab_r - mean_r) ** 2 * weights).sum(axis=(0, 1)))
    ratio = np.clip(std_r / np.maximum(std_f, 1e-6), *STD_RATIO_RANGE)
    matched = ((lab_f - mean_f) * ratio + mean_r).astype(np.float32)
    rgb = cv2.cvtColor(matched, cv2.COLOR_Lab2RGB)  # float32 in ~[0, 1]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
