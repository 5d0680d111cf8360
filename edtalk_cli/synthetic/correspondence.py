"""Exact dense correspondence between two synthetic frames of one identity.

Every pixel of a frame rendered with ``surface=True`` knows the 3D point it shows (head-local
for the head, world for the body, nothing for the static backdrop). Projecting the driver's
points with the source's pose gives, for every driver pixel, the source pixel that shows the
same point: the *backward flow* a warping decoder has to learn.

The face's features (lips, lids, brows) are painted on the rigid head and move over it with
the mouth and the expression, the way real skin moves over the skull. With ``follow_features``
a driver point inside a feature is first moved to where the *source's* feature has the same
part (the same place across the lower lip, along the upper lid, on the brow): lips are mapped
band by band between their four curves, the lids and the brows by their own shift, and the
displacement fades out over the skin around them. The eyeball and the backdrop stay put.

A driver pixel's correspondence is valid when the source shows that point (it is not hidden,
turned away or outside the image) and, given a *texture twin* (the driver's pose rendered with
the source's mouth and expression), when the twin's colour at the mapped point equals the
driver's: the twin has the driver's shading, so a mismatch means the mapped source point
really looks different (an opened mouth that is shut in the source, an eye the source blinks).

The flow is returned as a sampling grid in ``grid_sample(align_corners=False)`` coordinates,
``g = (2 x + 1) / S - 1``, which name the same image point at every resolution, so average
pooling gives the target of a coarser warp level.
"""

from __future__ import annotations

import numpy as np

from edtalk_cli.synthetic.factors import Expression, Identity, Mouth, Pose
from edtalk_cli.synthetic.render import (
    SURFACE_BACKGROUND,
    SURFACE_FACE,
    Frame,
    Renderer,
    _head_geom,
)

# head units: two points closer than this are the same point (a pixel is ~0.04 units at 64 px)
_SAME_POINT = 0.12
# a pixel's colour changed where a channel differs by more than this (0-255)
_TEXTURE_TOLERANCE = 10
# the mapped twin colour may differ this much from the driver's (bilinear sampling of edges)
_MATCH_TOLERANCE = 24


def pixels_to_grid(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pixel coordinates (pixel centres at integers) -> ``grid_sample(align_corners=False)`` ones."""
    return ((2.0 * pixels + 1.0) / size - 1.0).astype(np.float32)


def _piecewise(y: np.ndarray, knots_from: list[np.ndarray], knots_to: list[np.ndarray]) -> np.ndarray:
    """Per-point piecewise-linear map of y through increasing knots; y outside stays put."""
    out = y.copy()
    for k in range(len(knots_from) - 1):
        lo, hi = knots_from[k], knots_from[k + 1]
        inside = (y >= lo) & (y < hi) & (hi > lo)
        t = (y - lo) / np.maximum(hi - lo, 1e-9)
        out = np.where(inside, knots_to[k] + t * (knots_to[k + 1] - knots_to[k]), out)
    return out


def _fade(distance: np.ndarray, width: np.ndarray | float) -> np.ndarray:
    """1 at distance <= 0, falling linearly to 0 at ``width``."""
    return np.clip(1.0 - distance / np.maximum(width, 1e-9), 0.0, 1.0)


def feature_map(
    renderer: Renderer,
    identity: Identity,
    driver_face: tuple[Mouth, Expression],
    source_face: tuple[Mouth, Expression],
    x: np.ndarray,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Head-local face points (x, y) of the driver -> the source points with the same feature part.

    ``driver_face`` / ``source_face``: (mouth, expression) of each frame. Points away from the
    lips, lids and brows come back unchanged.
    """
    g = _head_geom(identity)
    (m_d, e_d), (m_s, e_s) = driver_face, source_face
    x_out, y_out = x.astype(np.float64).copy(), y.astype(np.float64).copy()

    # lips: each band between the four mouth curves maps onto the source's same band
    zero = np.zeros(1)
    w_d = renderer.mouth_curves(g, m_d, e_d, zero)[4]
    w_s = renderer.mouth_curves(g, m_s, e_s, zero)[4]
    inside = np.abs(x) <= w_d
    x_m = np.where(inside, x * (w_s / w_d), x + np.sign(x) * (w_s - w_d))
    uo_d, ui_d, li_d, lo_d, _, _ = renderer.mouth_curves(g, m_d, e_d, x)
    uo_s, ui_s, li_s, lo_s, _, _ = renderer.mouth_curves(g, m_s, e_s, x_m)
    up_margin = 0.06 + np.abs(uo_s - uo_d)
    low_margin = 0.06 + np.abs(lo_s - lo_d)
    y_m = _piecewise(
        y,
        [lo_d - low_margin, lo_d, li_d, ui_d, uo_d, uo_d + up_margin],
        [lo_d - low_margin, lo_s, li_s, ui_s, uo_s, uo_d + up_margin],
    )
    beyond = np.maximum(np.abs(x) - w_d, 0.0)  # past the corners the whole map fades out
    vertical = np.maximum(np.maximum(lo_d - y, y - uo_d), 0.0)
    weight_x = _fade(beyond, 0.1) * _fade(vertical, np.maximum(up_margin, low_margin))
    weight_y = _fade(beyond, 0.1)
    mouth_zone = (y > lo_d - low_margin) & (y < uo_d + up_margin) & (beyond < 0.1)
    x_out = np.where(mouth_zone, x + weight_x * (x_m - x), x_out)
    y_out = np.where(mouth_zone, y + weight_y * (y_m - y), y_out)

    for side in (-1.0, 1.0):
        # lids: the upper lid between lash line and crease, the lower lid below its line;
        # the eyeball between them does not move
        cx = side * g.eye_x
        near_eye = np.abs(x - cx) < g.eye_w + 0.02
        low_d, up_d, cr_d = renderer.eye_curves(g, e_d, side, x)
        low_s, up_s, cr_s = renderer.eye_curves(g, e_s, side, x)
        margin = 0.04 + np.abs(cr_s - cr_d)
        upper = _piecewise(y, [up_d, cr_d, cr_d + margin], [up_s, cr_s, cr_d + margin])
        lower = _piecewise(y, [low_d - 0.04, low_d], [low_d - 0.04, low_s])  # y itself above low_d
        lid_y = np.where(y >= up_d, upper, lower)
        eye_zone = near_eye & (y > low_d - 0.04) & (y < cr_d + margin)
        y_out = np.where(eye_zone, lid_y, y_out)

        # brows: the whole brow shifts to the source's curve; the skin around it follows less
        ax = x * side
        yc_d, th, end_d = renderer.brow_curve(g, e_d, ax)
        x_in_d = g.eye_x - 0.2 - 0.035 * max(float(e_d.brow_furrow), 0.0)
        x_in_s = g.eye_x - 0.2 - 0.035 * max(float(e_s.brow_furrow), 0.0)
        x_end = g.eye_x + 0.16
        t = (ax - x_in_d) / (x_end - x_in_d)
        ax_s = x_in_s + t * (x_end - x_in_s)
        yc_s, _, _ = renderer.brow_curve(g, e_s, ax_s)
        shift = yc_s - yc_d
        band = np.abs(y - yc_d) - th - 0.01
        weight = _fade(band, 0.03 + np.abs(shift)) * _fade(np.maximum(end_d, 0.0), 0.05)
        brow_zone = (ax > 0) & (band < 0.03 + np.abs(shift)) & (end_d < 0.05) & ~(eye_zone & (band > 0))
        x_out = np.where(brow_zone, side * (ax + weight * (ax_s - ax)), x_out)
        y_out = np.where(brow_zone, y + weight * shift, y_out)
    return x_out, y_out


def _sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear colours (N, C) of an (H, W, C) image at pixel positions (N, 2), border clamp."""
    size = image.shape[0]
    x, y = pixels[:, 0], pixels[:, 1]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float32)

    def at(yy, xx):
        return img[np.clip(yy, 0, size - 1), np.clip(xx, 0, size - 1)]

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    return top * (1 - fy) + (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy


def backward_flow(
    renderer: Renderer,
    source: Frame,
    source_pose: Pose,
    driver: Frame,
    texture_twin: np.ndarray | None = None,
    features: tuple[Identity, Pose, tuple[Mouth, Expression], tuple[Mouth, Expression]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each driver pixel's point lies in the source: (grid (H, W, 2) float32, valid (H, W) bool).

    ``source`` and ``driver`` must be rendered with ``surface=True``. ``texture_twin`` is the
    driver's identity and pose rendered with the *source's* mouth and expression (uint8
    (H, W, 3)). Without ``features`` the flow is the rigid motion of the head and a pixel
    whose colour differs in the twin (a feature moved there) is invalid. With ``features`` =
    (identity, driver pose, driver (mouth, expression), source (mouth, expression)) the flow
    follows the lips, lids and brows (:func:`feature_map`) and a face pixel is valid when
    the twin's colour at the mapped point matches the driver's.
    """
    if source.surface is None or driver.surface is None:
        raise ValueError("render both frames with surface=True")
    size = driver.image.shape[0]
    points = driver.surface.astype(np.float64)
    kind = driver.surface_kind
    face = kind == SURFACE_FACE
    if features is not None:
        if texture_twin is None:
            raise ValueError("following the features needs the texture twin")
        identity, driver_pose, driver_face, source_face = features
        fx, fy = feature_map(renderer, identity, driver_face, source_face, points[face, 0], points[face, 1])
        g = _head_geom(identity)
        points[face, 0], points[face, 1] = fx, fy
        points[face, 2] = g.surface_z(fx, fy, with_nose=False)
    pix = renderer.surface_pixels(source_pose, points, kind)  # (H, W, 2)
    j = np.rint(pix[..., 0]).astype(np.int64)
    i = np.rint(pix[..., 1]).astype(np.int64)
    inside = (j >= 0) & (j < size) & (i >= 0) & (i < size)
    jc, ic = np.clip(j, 0, size - 1), np.clip(i, 0, size - 1)
    same_kind = source.surface_kind[ic, jc] == kind
    gap = np.linalg.norm(source.surface[ic, jc] - points, axis=-1)
    same_point = (gap < _SAME_POINT) | (kind == SURFACE_BACKGROUND)
    valid = inside & same_kind & same_point
    if texture_twin is not None:
        changed = np.abs(texture_twin.astype(np.int16) - driver.image.astype(np.int16)).max(-1)
        changed = changed > _TEXTURE_TOLERANCE
        grown = changed.copy()  # one pixel of margin for the antialiased edges
        grown[1:] |= changed[:-1]
        grown[:-1] |= changed[1:]
        grown[:, 1:] |= changed[:, :-1]
        grown[:, :-1] |= changed[:, 1:]
        if features is None:
            valid &= ~grown
        else:
            # face pixels: the twin (driver's shading, source's features) at the mapped point
            # must look like the driver; elsewhere the texture must not have changed
            valid &= ~grown | face
            at_driver = renderer.surface_pixels(driver_pose, points[face], kind[face])
            twin_colour = _sample(texture_twin, at_driver)
            mismatch = np.abs(twin_colour - driver.image[face].astype(np.float32)).max(-1)
            face_valid = valid[face] & (mismatch <= _MATCH_TOLERANCE)
            valid[face] = face_valid
    return pixels_to_grid(pix, size), valid


def warp_image(image: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Bilinear backward warp of a (H, W, C) image by a grid of :func:`backward_flow` (border clamp)."""
    size = image.shape[0]
    pixels = np.stack(
        [(grid[..., 0] + 1.0) * size / 2.0 - 0.5, (grid[..., 1] + 1.0) * size / 2.0 - 0.5], -1
    ).reshape(-1, 2)
    return _sample(image, pixels).reshape(*grid.shape[:2], image.shape[-1])
