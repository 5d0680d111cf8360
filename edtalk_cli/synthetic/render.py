"""A deterministic, pure-numpy renderer of a stylised human head.

The head is a small set of analytic 3D primitives (ellipsoids for the cranium, the lower
face, the nose, the ears, the hair volume and the torso; a cylinder for the neck) that are
ray-cast per pixel through a pinhole camera. The face features (eyes, lids, irises, brows,
lips, the inner mouth with teeth and tongue, nose wrinkles) are 2D signed-distance fields
painted on the head surface in head-local coordinates, so a rotation of the head
foreshortens them like real rotation. Every edge, silhouettes included, is antialiased with
``coverage = clip(0.5 - sdf / fwidth(sdf), 0, 1)`` where ``fwidth`` is the screen-space
gradient of the distance. Everything is vectorised and evaluated only inside the image-space
bounding box of each primitive or feature.

Head-local frame: x to the image right (frontal view), y up, z towards the camera; the
cranium is about 2 units tall. The camera looks down -z.

Landmarks: :data:`N_LANDMARKS` = 68 points in the iBUG-300W order (see
:data:`LANDMARK_GROUPS`), as (x, y) pixel coordinates where the centre of pixel column j,
row i is (j, i). "Left" means the image left. Every landmark is a fixed point of the 3D face
projected with the frame's pose: the outline lies on the lower face's widest contour (the
silhouette of the frontal view), all other points on the front surface. So the outline does
not slide to the silhouette under yaw, and far-side points of a turned head can be hidden.

Determinism: the same factors give identical bytes on a given machine and numpy build
(float32 arithmetic; transcendental functions may differ in the last bit across CPUs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edtalk_cli.synthetic.factors import Expression, Identity, Mouth, Pose

N_LANDMARKS = 68
LANDMARK_GROUPS: dict[str, tuple[int, int]] = {
    "outline": (0, 17),  # image-left temple -> chin (8) -> image-right temple
    "brow_left": (17, 22),  # outer -> inner
    "brow_right": (22, 27),  # inner -> outer
    "nose_bridge": (27, 31),  # between the eyes -> nose tip (30)
    "nose_base": (31, 36),  # left wing -> subnasale (33) -> right wing
    "eye_left": (36, 42),  # outer corner, 2 upper lid, inner corner, 2 lower lid
    "eye_right": (42, 48),  # inner corner, 2 upper lid, outer corner, 2 lower lid
    "mouth_outer": (48, 60),  # left corner (48), upper lip -> right corner (54), lower lip
    "mouth_inner": (60, 68),  # left inner corner (60), upper inner, right (64), lower inner
}
MASK_NAMES: tuple[str, ...] = ("mouth", "eyes", "brows", "nose", "face")

MIN_SIZE = 64
MAX_SIZE = 256

_DTYPE = np.float32
_CAM_D = 9.0  # camera distance from the head-local origin
_CAM_Y = -0.24  # camera height (frames the head slightly above the centre)
_TAN = 1.42 / _CAM_D  # tan of half the field of view
_PIVOT = np.array([0.0, -0.72, -0.12])  # neck pivot of head rotations (head-local)
_LIGHT = np.array([-0.45, 0.55, 0.70]) / np.linalg.norm([-0.45, 0.55, 0.70])
_AMBIENT = 0.42
_DIFFUSE = 0.62
_MOUTH_Y = -0.55
_EYE_Y = 0.06


# kinds of surface a pixel shows (``Frame.surface_kind``)
SURFACE_BACKGROUND = 0  # static backdrop: the same pixel in every frame of an identity
SURFACE_BODY = 1  # torso and neck: world points (they follow tx/ty/scale, not the rotation)
SURFACE_HEAD = 2  # the rigid head (hair, ears, nose): head-local points
SURFACE_FACE = 3  # the painted head surface (cranium and lower face: skin, eyes, brows, lips): head-local


@dataclass
class Frame:
    """One rendered frame: ``image`` (H, W, 3) uint8 RGB, ``landmarks`` (68, 2) float32 pixel
    (x, y), and ``masks`` name -> (H, W) bool for :data:`MASK_NAMES`.

    With ``Renderer.render(..., surface=True)`` also the 3D point each pixel shows (the front-most
    surface with coverage > 0.5): ``surface`` (H, W, 3) float32 (head-local for the head, world
    for the body, zero for the background) and ``surface_kind`` (H, W) uint8 ``SURFACE_*``.
    """

    image: np.ndarray
    landmarks: np.ndarray
    masks: dict[str, np.ndarray]
    surface: np.ndarray | None = None
    surface_kind: np.ndarray | None = None


# ----------------------------------------------------------------------------- geometry


def rotation_matrix(pose: Pose) -> np.ndarray:
    """Head-to-world rotation (3, 3) of a pose: roll @ yaw @ pitch (degrees)."""
    y, p, r = np.deg2rad([pose.yaw, pose.pitch, pose.roll])
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ryaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rpitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    rroll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rroll @ ryaw @ rpitch


@dataclass(frozen=True)
class _Ellipsoid:
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    tilt: float = 0.0  # rotation about the local x axis (radians), + tips the -y end forward

    def orient(self) -> np.ndarray:
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])

    def front_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Largest z of the surface above head-local (x, y); -inf where the line misses."""
        q = self.orient()
        r = np.asarray(self.radii)
        # Line p(z) = (x, y, z): in unit-sphere space e = Q^T (p - c) / r is affine in z.
        w = q.T[:, 2] / r  # d e / dz
        base = (
            q.T[:, 0, None] * (np.asarray(x, dtype=float).ravel() - self.centre[0])
            + q.T[:, 1, None] * (np.asarray(y, dtype=float).ravel() - self.centre[1])
            - q.T[:, 2, None] * self.centre[2]
        ) / r[:, None]
        a = float(w @ w)
        b = w @ base
        c = (base * base).sum(0) - 1.0
        disc = b * b - a * c
        z = np.where(disc >= 0, (-b + np.sqrt(np.maximum(disc, 0))) / a, -np.inf)
        return z.reshape(np.shape(x))


@dataclass(frozen=True)
class _HeadGeom:
    cranium: _Ellipsoid
    jaw: _Ellipsoid
    nose: _Ellipsoid
    alae: tuple[_Ellipsoid, _Ellipsoid]
    ears: tuple[_Ellipsoid, _Ellipsoid]
    hair: _Ellipsoid | None
    bun: _Ellipsoid | None
    eye_x: float
    eye_w: float  # half-width of the eye opening
    eye_up: float  # upper lid height when open
    eye_low: float  # lower lid depth
    iris_r: float
    mouth_w: float
    lip_up: float
    lip_low: float
    brow_th: float
    hairline: float  # y of the hairline at x = 0
    hair_zw: float  # the face window starts at z > hair_zw
    hair_bottom: float  # style bottom cut (y)
    style: int

    def surface_z(self, x: np.ndarray, y: np.ndarray, with_nose: bool = True) -> np.ndarray:
        """z of the visible front surface above head-local (x, y)."""
        parts = [self.cranium, self.jaw]
        if with_nose:
            parts += [self.nose, *self.alae]
        z = np.max([p.front_z(x, y) for p in parts], axis=0)
        return np.where(np.isfinite(z), z, 0.0)


@lru_cache(maxsize=256)
def _head_geom(ident: Identity) -> _HeadGeom:
    hw, hh, jw, jl = ident.head_width, ident.head_height, ident.jaw_width, ident.jaw_length
    hd = 0.9
    cranium = _Ellipsoid((0.0, 0.14, -0.06), (hw, hh, hd))
    jaw = _Ellipsoid((0.0, -0.34, 0.0), (jw, jl, 0.80))
    nl, nw = ident.nose_length, ident.nose_width
    z_face = float(np.max([cranium.front_z(np.array([0.0]), np.array([-0.2]))[0], 0.0]))
    nose = _Ellipsoid((0.0, _EYE_Y - 0.23 * nl, z_face - 0.07), (0.092 * nw, 0.2 * nl, 0.13), tilt=0.42)
    tip_y = _EYE_Y - 0.23 * nl - 0.19 * nl
    alae = (
        _Ellipsoid((-0.075 * nw, tip_y + 0.04, z_face - 0.035), (0.055 * nw, 0.045, 0.06)),
        _Ellipsoid((0.075 * nw, tip_y + 0.04, z_face - 0.035), (0.055 * nw, 0.045, 0.06)),
    )
    ears = (
        _Ellipsoid((-(hw - 0.03), -0.04, -0.08), (0.07, 0.17, 0.11)),
        _Ellipsoid((hw - 0.03, -0.04, -0.08), (0.07, 0.17, 0.11)),
    )
    style = ident.hair_style
    hair: _Ellipsoid | None
    bun = None
    if style == 0:  # short
        hair = _Ellipsoid((0.0, 0.21, -0.08), (hw + 0.07, hh + 0.05, hd + 0.08))
        bottom, zw = -0.1, 0.22
    elif style == 1:  # bob
        hair = _Ellipsoid((0.0, 0.12, -0.06), (hw + 0.15, hh + 0.12, hd + 0.12))
        bottom, zw = -0.62, 0.30
    elif style == 2:  # long
        hair = _Ellipsoid((0.0, -0.30, -0.12), (hw + 0.16, hh + 0.62, hd + 0.12))
        bottom, zw = -1.55, 0.32
    elif style == 3:  # bun
        hair = _Ellipsoid((0.0, 0.21, -0.08), (hw + 0.06, hh + 0.05, hd + 0.07))
        bun = _Ellipsoid((0.0, 0.98, -0.55), (0.30, 0.28, 0.30))
        bottom, zw = -0.05, 0.20
    else:  # buzz cut: hair painted on the cranium only
        hair = None
        bottom, zw = -0.1, 0.22
    es = ident.eye_size
    return _HeadGeom(
        cranium=cranium,
        jaw=jaw,
        nose=nose,
        alae=alae,
        ears=ears,
        hair=hair,
        bun=bun,
        eye_x=ident.eye_spacing,
        eye_w=0.118 * es,
        eye_up=0.075 * es,
        eye_low=0.035 * es,
        iris_r=0.058 * es,
        mouth_w=ident.mouth_width,
        lip_up=0.055 * ident.lip_thickness,
        lip_low=0.068 * ident.lip_thickness,
        brow_th=0.03 * ident.brow_thickness,
        hairline=0.58 - 0.24 * ident.fringe,
        hair_zw=zw,
        hair_bottom=bottom,
        style=style,
    )


def _ellipsoid_corners(e: _Ellipsoid) -> np.ndarray:
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    return (corners * np.asarray(e.radii)) @ e.orient().T + np.asarray(e.centre)


def _rect_points(rect: tuple[float, float, float, float]) -> np.ndarray:
    """3D points bounding a head-local (x0, x1, y0, y1) rectangle on the front of the face."""
    xs = np.array([rect[0], rect[1], rect[0], rect[1], 0.5 * (rect[0] + rect[1])] * 2)
    ys = np.array([rect[2], rect[2], rect[3], rect[3], 0.5 * (rect[2] + rect[3])] * 2)
    zs = np.repeat([0.35, 1.0], 5)
    return np.stack([xs, ys, zs], -1)


_TORSO = _Ellipsoid((0.0, -2.38, -0.45), (1.85, 1.0, 0.72))
_NECK = (0.34, -0.16, -0.55, -2.1)  # radius, z of the axis, top y, bottom y


def _feature_rects(g: _HeadGeom) -> dict[str, tuple[float, float, float, float]]:
    rects = {}
    for side in (-1, 1):
        cx = side * g.eye_x
        rects[f"eye{side}"] = (
            cx - g.eye_w - 0.06,
            cx + g.eye_w + 0.06,
            _EYE_Y - 0.09,
            _EYE_Y + g.eye_up * 1.5 + 0.07,
        )
        xa, xb = sorted((side * (g.eye_x - 0.26), side * (g.eye_x + 0.2)))
        rects[f"brow{side}"] = (xa, xb, _EYE_Y + 0.02, _EYE_Y + 0.38)
    w_max = g.mouth_w * 1.35
    rects["mouth"] = (-w_max - 0.04, w_max + 0.04, _MOUTH_Y - 0.38, _MOUTH_Y + 0.16)
    rects["wrinkle"] = (-0.12, 0.12, _EYE_Y - 0.12, _EYE_Y + 0.06)
    return rects


@lru_cache(maxsize=256)
def _box_points(g: _HeadGeom) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Bounding points of every primitive/feature: (N, 3) points, names, offsets, head mask."""
    groups: list[tuple[str, np.ndarray, bool]] = [("torso", _ellipsoid_corners(_TORSO), False)]
    r, zc, ytop, ybot = _NECK
    neck = np.array([[x, y, z] for x in (-r, r) for y in (ytop, ybot) for z in (zc - r, zc + r)])
    groups.append(("neck", neck, False))
    prims = {"cranium": g.cranium, "jaw": g.jaw, "nose": g.nose, "ala0": g.alae[0], "ala1": g.alae[1]}
    prims.update({"ear0": g.ears[0], "ear1": g.ears[1]})
    if g.hair is not None:
        prims["hair"] = g.hair
    if g.bun is not None:
        prims["bun"] = g.bun
    for name, e in prims.items():
        groups.append((name, _ellipsoid_corners(e), True))
    for name, rect in _feature_rects(g).items():
        groups.append((name, _rect_points(rect), True))
    pts = np.concatenate([p for _, p, _ in groups])
    sizes = [len(p) for _, p, _ in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    head = np.concatenate([np.full(len(p), h) for _, p, h in groups])
    return pts, [n for n, _, _ in groups], offsets, head


def _nose_tip(g: _HeadGeom) -> np.ndarray:
    """Head-local point of the nose ellipsoid furthest along +z."""
    e = g.nose
    q = e.orient()
    r = np.asarray(e.radii)
    w = q.T @ np.array([0.0, 0.0, 1.0])
    ep = r * w / np.sqrt(((r * w) ** 2).sum())
    return q @ (ep * r) + np.asarray(e.centre)


@lru_cache(maxsize=256)
def _static_landmarks(g: _HeadGeom) -> np.ndarray:
    """(68, 3) head-local landmarks; rows of the outline (0-16) and nose (27-35) are final."""
    out = np.zeros((68, 3))
    jc, jr = g.jaw.centre, g.jaw.radii
    th = np.linspace(-1.0, 1.0, 17) * np.deg2rad(100)
    # outline: on the lower-face ellipsoid's equator, from one temple round the chin
    out[:17] = np.stack(
        [jc[0] + 0.97 * jr[0] * np.sin(th), jc[1] - 0.97 * jr[1] * np.cos(th), np.full(17, jc[2])], -1
    )
    tip = _nose_tip(g)
    top_y = _EYE_Y - 0.01
    bridge = np.array([[0.0, top_y + k / 3.0 * (tip[1] - top_y)] for k in range(3)])
    by = tip[1] - 0.035
    nw = g.nose.radii[0]
    base = np.array(
        [
            [xx * nw, by + yy]
            for xx, yy in ((-1.25, 0.02), (-0.65, -0.005), (0.0, -0.02), (0.65, -0.005), (1.25, 0.02))
        ]
    )
    out[27:30, :2] = bridge
    out[27:30, 2] = g.surface_z(bridge[:, 0], bridge[:, 1])
    out[30] = tip
    out[31:36, :2] = base
    out[31:36, 2] = g.surface_z(base[:, 0], base[:, 1])
    return out


# ----------------------------------------------------------------------------- helpers


def _fwidth(d: np.ndarray) -> np.ndarray:
    """Screen-space gradient magnitude of a field (central differences, per pixel)."""
    gx = np.empty_like(d)
    gy = np.empty_like(d)
    if d.shape[1] > 2:
        gx[:, 1:-1] = (d[:, 2:] - d[:, :-2]) * 0.5
        gx[:, 0] = gx[:, 1]
        gx[:, -1] = gx[:, -2]
    else:
        gx[:] = 0
    if d.shape[0] > 2:
        gy[1:-1] = (d[2:] - d[:-2]) * 0.5
        gy[0] = gy[1]
        gy[-1] = gy[-2]
    else:
        gy[:] = 0
    return np.sqrt(gx * gx + gy * gy)


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.minimum(np.maximum(x, lo), hi)


def _cov(d: np.ndarray, cap: float) -> np.ndarray:
    """Antialiased coverage of the region ``d < 0`` (``cap`` bounds fwidth at discontinuities)."""
    fw = _clip(_fwidth(d), cap * 0.05, cap)
    return _clip(0.5 - d / fw, 0.0, 1.0)


def _smooth(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    t = _clip((np.asarray(x) - lo) * (1.0 / (hi - lo)), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _over(dst: np.ndarray, color: np.ndarray | tuple, a: np.ndarray) -> None:
    """In-place ``dst = dst + a * (color - dst)``; dst (h, w, 3), a (h, w)."""
    dst += a[..., None] * (np.asarray(color, dtype=_DTYPE) - dst)


@lru_cache(maxsize=8)
def _base_uv(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = ((np.arange(size) + 0.5) * 2.0 / size - 1.0).astype(_DTYPE)
    u = np.broadcast_to(c[None, :], (size, size))
    v = np.broadcast_to(-c[:, None], (size, size))
    return u, v


@lru_cache(maxsize=64)
def _background(ident: Identity, size: int) -> np.ndarray:
    """Static background (H, W, 3) float32 of an identity."""
    u, v = _base_uv(size)
    c1 = np.asarray(ident.background, dtype=_DTYPE)
    c2 = np.asarray(ident.background2, dtype=_DTYPE)
    kind = ident.background_kind
    rng = np.random.default_rng(ident.background_seed)
    if kind == 0:
        t = (1 - v) * 0.5
    elif kind == 1:
        t = np.clip(np.sqrt(u * u + (v - 0.2) ** 2) * 0.7, 0, 1)
    elif kind == 2:
        ang = rng.uniform(0, np.pi)
        f = rng.uniform(2.0, 5.0)
        t = 0.5 + 0.5 * np.sin(f * np.pi * (u * np.cos(ang) + v * np.sin(ang)) + rng.uniform(0, 6.28))
    else:
        t = np.zeros_like(u)
        for _ in range(4):
            cx, cy = rng.uniform(-1, 1, 2)
            r = rng.uniform(0.3, 0.8)
            t = np.maximum(t, np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (r * r)))
    t = t.astype(_DTYPE)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return img.astype(_DTYPE)


# ----------------------------------------------------------------------------- renderer


class Renderer:
    """Render frames of the synthetic world at a fixed square size (64..256 px)."""

    def __init__(self, size: int = 128) -> None:
        if not (MIN_SIZE <= int(size) <= MAX_SIZE) or int(size) % 2:
            raise ValueError(f"size must be an even number of pixels in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
        self.size = int(size)

    # -- camera ---------------------------------------------------------------
    def _setup(self, pose: Pose) -> None:
        s = self.size
        self._R = rotation_matrix(pose)
        self._scale = float(pose.scale)
        self._tx, self._ty = float(pose.tx), float(pose.ty)
        u, v = _base_uv(s)
        self._du = ((u - self._tx) / self._scale * _TAN).astype(_DTYPE)
        self._dv = ((v + self._ty) / self._scale * _TAN).astype(_DTYPE)
        self._origin = np.array([0.0, _CAM_Y, _CAM_D])
        # texture units per pixel on the face (for fwidth caps)
        self._px = 2 * _TAN * (_CAM_D - 0.8) / (self._scale * s)

    def head_to_world(self, p: np.ndarray) -> np.ndarray:
        """Head-local points (..., 3) to world points."""
        return (p - _PIVOT) @ self._R.T + _PIVOT

    def project(self, pw: np.ndarray) -> np.ndarray:
        """World points (..., 3) to pixel (x, y)."""
        o = self._origin
        t = o[2] - pw[..., 2]
        uc = (pw[..., 0] - o[0]) / (t * _TAN)
        vc = (pw[..., 1] - o[1]) / (t * _TAN)
        ui = self._scale * uc + self._tx
        vi = self._scale * vc - self._ty
        s = self.size
        return np.stack([(ui + 1) * s / 2 - 0.5, (1 - vi) * s / 2 - 0.5], axis=-1)

    def surface_pixels(self, pose: Pose, surface: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """Pixel (x, y) (..., 2) at which ``pose`` shows the points of a ``Frame.surface``.

        Head points follow the rotation and the image-plane transform, body points only the
        latter; background pixels stay where they are.
        """
        self._setup(pose)
        pts = surface.astype(np.float64)
        head = (kind == SURFACE_HEAD) | (kind == SURFACE_FACE)
        pts[head] = self.head_to_world(pts[head])
        out = self.project(pts)
        bg = kind == SURFACE_BACKGROUND
        if bg.any():
            ii, jj = np.nonzero(bg)
            out[ii, jj, 0] = jj
            out[ii, jj, 1] = ii
        return out.astype(np.float32)

    def _plan_boxes(self, g: _HeadGeom) -> None:
        """Image bounding boxes of every primitive and painted feature, in one projection."""
        pts_local, names, offsets, head = _box_points(g)
        pts = pts_local.copy()
        pts[head] = self.head_to_world(pts[head])
        xy = self.project(pts)
        lo = np.minimum.reduceat(xy, offsets, axis=0)
        hi = np.maximum.reduceat(xy, offsets, axis=0)
        s = self.size
        boxes: dict[str, tuple[int, int, int, int] | None] = {}
        for k, name in enumerate(names):
            x0 = max(int(np.floor(lo[k, 0])) - 3, 0)
            x1 = min(int(np.ceil(hi[k, 0])) + 4, s)
            y0 = max(int(np.floor(lo[k, 1])) - 3, 0)
            y1 = min(int(np.ceil(hi[k, 1])) + 4, s)
            boxes[name] = (y0, y1, x0, x1) if (x1 - x0 >= 3 and y1 - y0 >= 3) else None
        self._boxes = boxes

    # -- ray casting ----------------------------------------------------------
    def _cast(
        self, e: _Ellipsoid, box: tuple[int, int, int, int], head: bool = True, back: bool = False
    ) -> dict[str, np.ndarray]:
        """Ray-cast an ellipsoid over a bbox.

        Returns t0 (near hit; the closest approach where the ray misses), alpha (silhouette
        coverage) and e0 (unit-sphere points, 3 x (h, w)); with ``back`` also t1/e1 (far hit).
        """
        y0, y1, x0, x1 = box
        du = self._du[y0:y1, x0:x1]
        dv = self._dv[y0:y1, x0:x1]
        r = np.asarray(e.radii)
        q = e.orient()
        rot = self._R if head else np.eye(3)
        m = (q.T @ rot.T) / r[:, None]  # world direction -> unit-sphere direction
        pivot = _PIVOT if head else np.zeros(3)
        o = m @ (self._origin - pivot) + (q.T @ (pivot - np.asarray(e.centre))) / r
        m = m.astype(_DTYPE)
        dx = [m[i, 0] * du + m[i, 1] * dv - m[i, 2] for i in range(3)]
        a = dx[0] * dx[0] + dx[1] * dx[1] + dx[2] * dx[2]
        b = _DTYPE(o[0]) * dx[0] + _DTYPE(o[1]) * dx[1] + _DTYPE(o[2]) * dx[2]
        c = _DTYPE(o @ o - 1.0)
        inv_a = 1.0 / a
        tc = -b * inv_a
        dist2 = np.maximum(c + 1.0 + b * tc, 0.0)  # squared closest approach (unit-sphere space)
        sdf = np.sqrt(dist2) - 1.0
        alpha = _cov(sdf, 6 * self._px / min(r))
        sq = np.sqrt(np.maximum(b * b - a * c, 0.0)) * inv_a
        out = {"alpha": alpha}
        for name, t in (("0", tc - sq), ("1", tc + sq)) if back else (("0", tc - sq),):
            ex, ey, ez = (_DTYPE(o[i]) + t * dx[i] for i in range(3))
            # fringe points (closest approach, inside the sphere) are pushed onto the surface
            inv = 1.0 / np.sqrt(np.maximum(ex * ex + ey * ey + ez * ez, 1e-6))
            ep = (ex * inv, ey * inv, ez * inv)
            out["t" + name] = t
            out["e" + name] = ep
        return out

    def _to_local(self, e: _Ellipsoid, ep: np.ndarray) -> np.ndarray:
        """Unit-sphere points (3, h, w) to head-local points (3, h, w)."""
        m = (e.orient() * np.asarray(e.radii)[None, :]).astype(_DTYPE)
        c = e.centre
        return tuple(m[i, 0] * ep[0] + m[i, 1] * ep[1] + m[i, 2] * ep[2] + _DTYPE(c[i]) for i in range(3))

    def _shade(self, e: _Ellipsoid, ep: np.ndarray, head: bool = True) -> np.ndarray:
        """Lambert shading (h, w) of unit-sphere points of an ellipsoid."""
        rot = (self._R if head else np.eye(3)) @ e.orient()
        lw = (rot.T @ _LIGHT) / np.asarray(e.radii)  # light dotted with the (unnormalised) normal
        ir2 = (1.0 / np.asarray(e.radii) ** 2).astype(_DTYPE)
        n2 = ep[0] * ep[0] * ir2[0] + ep[1] * ep[1] * ir2[1] + ep[2] * ep[2] * ir2[2]
        ndl = (_DTYPE(lw[0]) * ep[0] + _DTYPE(lw[1]) * ep[1] + _DTYPE(lw[2]) * ep[2]) / np.sqrt(n2)
        return _AMBIENT + _DIFFUSE * np.maximum(ndl, 0)

    # -- composite ------------------------------------------------------------
    def _apply(
        self, box, t, alpha, color, is_head: bool = False, points=None, kind: int = SURFACE_HEAD
    ) -> None:
        """Composite a primitive over ``box``; ``points`` (3 x (h, w)) are its surface points
        (head-local, or world for the body) for the surface record."""
        y0, y1, x0, x1 = box
        zc = self._Z[y0:y1, x0:x1]
        front = t < zc
        a = np.where(front, alpha, 0).astype(_DTYPE)
        cc = self._C[y0:y1, x0:x1]
        cc += a[..., None] * (color - cc)
        won = front & (alpha > 0.5)
        if self._P is not None and points is not None:
            pp = self._P[y0:y1, x0:x1]
            for i in range(3):
                pp[..., i] = np.where(won, points[i], pp[..., i])
            self._K[y0:y1, x0:x1] = np.where(won, kind, self._K[y0:y1, x0:x1])
        self._Z[y0:y1, x0:x1] = np.where(won, t, zc)
        vis = self._vis[y0:y1, x0:x1]
        if is_head:
            vis += a * (1 - vis)
        else:
            vis *= 1 - a

    # -- main -----------------------------------------------------------------
    def render(
        self,
        identity: Identity,
        pose: Pose | None = None,
        mouth: Mouth | None = None,
        expression: Expression | None = None,
        surface: bool = False,
    ) -> Frame:
        """Render one frame; same inputs give identical bytes.

        ``surface`` also records the 3D point behind every pixel (``Frame.surface``), from
        which :func:`edtalk_cli.synthetic.correspondence.backward_flow` computes exact
        pixel correspondences between two frames; the image is the same either way.
        """
        pose = pose or Pose()
        mouth = mouth or Mouth()
        expression = expression or Expression()
        g = _head_geom(identity)
        s = self.size
        self._setup(pose)
        self._plan_boxes(g)
        self._C = _background(identity, s).copy()
        self._Z = np.full((s, s), np.inf, dtype=_DTYPE)
        self._vis = np.zeros((s, s), dtype=_DTYPE)
        self._P = np.zeros((s, s, 3), dtype=_DTYPE) if surface else None
        self._K = np.zeros((s, s), dtype=np.uint8) if surface else None
        skin = np.asarray(identity.skin, dtype=_DTYPE)
        hair = np.asarray(identity.hair, dtype=_DTYPE)
        self._skin = skin
        masks = {k: np.zeros((s, s), dtype=bool) for k in MASK_NAMES}

        self._torso(identity, skin)
        self._neck(skin)
        self._hair_cast(g)
        self._hair(g, hair, back=True)
        if g.bun is not None:
            self._blob("bun", g.bun, hair * 0.95)
        self._head(g, identity, mouth, expression, skin, hair, masks)
        for k, ear in enumerate(g.ears):
            self._blob(f"ear{k}", ear, skin * 0.93, ear=True)
        self._nose(g, skin)
        self._hair(g, hair, back=False)

        vis = self._vis > 0.5
        for k in ("mouth", "eyes", "brows", "nose", "face"):
            masks[k] &= vis
        masks["nose"] |= self._nose_vis > 0.5
        img = np.clip(self._C * 255.0 + 0.5, 0, 255).astype(np.uint8)
        lms = self._landmarks(g, mouth, expression)
        return Frame(image=img, landmarks=lms, masks=masks, surface=self._P, surface_kind=self._K)

    # -- body -----------------------------------------------------------------
    def _torso(self, ident: Identity, skin: np.ndarray) -> None:
        e = _TORSO
        box = self._boxes["torso"]
        if box is None:
            return
        h = self._cast(e, box, head=False)
        p = self._to_local(e, h["e0"])
        col = np.empty((*p[0].shape, 3), dtype=_DTYPE)
        col[:] = np.asarray(ident.shirt, dtype=_DTYPE)
        # neckline
        dn = (p[0] / 0.42) ** 2 + ((p[1] + 1.28) / 0.3) ** 2 - 1.0
        _over(col, skin * 0.85, _cov(dn.astype(_DTYPE), 1.0))
        col *= self._shade(e, h["e0"], head=False)[..., None]
        self._apply(box, h["t0"], h["alpha"], col, points=p, kind=SURFACE_BODY)

    def _neck(self, skin: np.ndarray) -> None:
        r, zc, ytop, _ = _NECK
        box = self._boxes["neck"]
        if box is None:
            return
        y0, y1, x0, x1 = box
        du = self._du[y0:y1, x0:x1]
        dv = self._dv[y0:y1, x0:x1]
        o = self._origin
        ox, oz = o[0], o[2] - zc
        a = du * du + 1.0
        b = ox * du - oz
        c = ox * ox + oz * oz - r * r
        tc = -b / a
        dist = np.sqrt(np.maximum(c + r * r + b * tc, 0.0))
        disc = b * b - a * c
        t = tc - np.sqrt(np.maximum(disc, 0)) / a
        yh = o[1] + t * dv
        sdf = np.maximum((dist - r) / r, (yh - ytop) / r)
        alpha = _cov(sdf.astype(_DTYPE), 6 * self._px / r)
        xh = ox + t * du
        zh = oz - t
        ndl = (xh * _LIGHT[0] + zh * _LIGHT[2]) / r
        shade = _AMBIENT + _DIFFUSE * _clip(ndl, 0, 1)
        shade = shade * (1 - 0.35 * _smooth(yh, -1.25, -0.75))  # shadow under the chin
        col = skin[None, None, :] * shade[..., None].astype(_DTYPE)
        points = (xh, yh, zh + zc) if self._P is not None else None
        self._apply(box, t.astype(_DTYPE), alpha, col, points=points, kind=SURFACE_BODY)

    def _blob(self, name: str, e: _Ellipsoid, albedo: np.ndarray, ear: bool = False) -> None:
        box = self._boxes[name]
        if box is None:
            return
        h = self._cast(e, box)
        col = np.empty((*h["t0"].shape, 3), dtype=_DTYPE)
        col[:] = albedo
        if ear:
            ep = h["e0"]
            side = np.sign(e.centre[0])
            d = ((ep[1] + 0.05) / 0.55) ** 2 + (ep[2] / 0.55) ** 2 - 1.0
            d = np.maximum(d, 0.2 - side * ep[0])
            _over(col, albedo * 0.72, _cov(d.astype(_DTYPE), 1.0) * 0.8)
        col *= self._shade(e, h["e0"])[..., None]
        points = self._to_local(e, h["e0"]) if self._P is not None else None
        self._apply(box, h["t0"], h["alpha"], col, points=points)

    # -- hair -----------------------------------------------------------------
    def _hair_keep(self, g: _HeadGeom, p: np.ndarray) -> np.ndarray:
        """SDF (negative = hair kept) of head-local points (3, h, w)."""
        x, y, z = p
        yh = g.hairline + 0.32 * x * x + 0.012 * np.sin(x * 38.0) * (g.hairline < 0.5)
        window = np.maximum(g.hair_zw - z, y - yh)  # < 0 inside the face window
        if g.style == 0 or g.style == 3:
            yb = g.hair_bottom - 0.5 * _clip(-(z + 0.05) / 0.6, 0, 1)
        else:
            yb = np.full_like(y, g.hair_bottom)
        return np.maximum(-window, yb - y)

    def _hair_cast(self, g: _HeadGeom) -> None:
        self._hair_h = None
        if g.hair is None:
            return
        box = self._boxes["hair"]
        if box is not None:
            self._hair_h = (box, self._cast(g.hair, box, back=True))

    def _hair(self, g: _HeadGeom, hair: np.ndarray, back: bool) -> None:
        e = g.hair
        if e is None or self._hair_h is None:
            return
        box, h = self._hair_h
        ep = h["e1"] if back else h["e0"]
        p = self._to_local(e, ep)
        keep = self._hair_keep(g, p).astype(_DTYPE)
        alpha = h["alpha"] * _cov(keep, 6 * self._px)
        shade = self._shade(e, ep)
        if back:
            shade *= 0.55
        else:
            shade *= 1.0 + 0.07 * np.sin(34.0 * p[0] + 9.0 * p[2])  # strands
        col = hair[None, None, :] * shade[..., None]
        self._apply(box, h["t1"] if back else h["t0"], alpha, col, points=p)

    # -- nose -----------------------------------------------------------------
    def _nose(self, g: _HeadGeom, skin: np.ndarray) -> None:
        self._nose_vis = np.zeros((self.size, self.size), dtype=_DTYPE)
        for i, (e, name) in enumerate(zip((g.nose, *g.alae), ("nose", "ala0", "ala1"), strict=True)):
            box = self._boxes[name]
            if box is None:
                continue
            h = self._cast(e, box)
            ep = h["e0"]
            col = np.empty((*h["t0"].shape, 3), dtype=_DTYPE)
            col[:] = skin
            if i == 0:
                # nostrils on the underside of the tip
                for sx in (-1.0, 1.0):
                    d = ((ep[0] - 0.42 * sx) / 0.3) ** 2 + ((ep[1] + 0.86) / 0.14) ** 2 - 1.0
                    d = np.maximum(d, -ep[2] - 0.1)
                    _over(col, skin * 0.35, _cov(d.astype(_DTYPE), 1.0) * 0.85)
                col *= (1.0 + 0.06 * _smooth(ep[2], 0.6, 1.0))[..., None]  # shiny tip
            else:
                side = 1.0 if e.centre[0] > 0 else -1.0
                d = ((ep[0] + 0.05 * side) / 0.75) ** 2 + ((ep[1] + 0.6) / 0.45) ** 2 - 1.0
                _over(col, skin * 0.45, _cov(d.astype(_DTYPE), 1.0) * 0.7)
            col *= self._shade(e, ep)[..., None]
            points = self._to_local(e, ep) if self._P is not None else None
            self._apply(box, h["t0"], h["alpha"], col, points=points)
            y0, y1, x0, x1 = box
            nv = self._nose_vis[y0:y1, x0:x1]
            front = h["t0"] <= self._Z[y0:y1, x0:x1]
            nv += np.where(front, h["alpha"], 0) * (1 - nv)

    # -- head -----------------------------------------------------------------
    def _head(
        self,
        g: _HeadGeom,
        ident: Identity,
        mouth: Mouth,
        ex: Expression,
        skin: np.ndarray,
        hair: np.ndarray,
        masks: dict,
    ) -> None:
        bc = self._boxes["cranium"]
        bj = self._boxes["jaw"]
        if bc is None and bj is None:
            return
        boxes = [b for b in (bc, bj) if b is not None]
        box = (
            min(b[0] for b in boxes),
            max(b[1] for b in boxes),
            min(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        hc = self._cast(g.cranium, box)
        hj = self._cast(g.jaw, box)
        use_j = np.where(
            (hj["alpha"] > 0.5) & (hc["alpha"] > 0.5),
            hj["t0"] < hc["t0"],
            hj["alpha"] > hc["alpha"],
        )
        t = np.where(use_j, hj["t0"], hc["t0"])
        alpha = np.maximum(hc["alpha"], hj["alpha"])
        pc = self._to_local(g.cranium, hc["e0"])
        pj = self._to_local(g.jaw, hj["e0"])
        p = tuple(np.where(use_j, a, b) for a, b in zip(pj, pc, strict=True))
        # texture units per pixel, for antialiasing the painted features
        fx, fy = _fwidth(p[0]), _fwidth(p[1])
        self._pxh = _clip(np.sqrt(0.5 * (fx * fx + fy * fy)), 0.3 * self._px, 4 * self._px)
        # blend the two surfaces' shading near their intersection so the seam is smooth
        wj = np.where(
            (hj["alpha"] > 0.5) & (hc["alpha"] > 0.5),
            _smooth(hc["t0"] - hj["t0"], -0.15, 0.15),
            use_j.astype(_DTYPE),
        )
        shade = wj * self._shade(g.jaw, hj["e0"]) + (1 - wj) * self._shade(g.cranium, hc["e0"])

        col = np.empty((*t.shape, 3), dtype=_DTYPE)
        col[:] = skin
        # hair cap painted on the skin (shows where the hair volume leaves gaps)
        cap = self._hair_keep(g, p).astype(_DTYPE)
        cap_a = _cov(cap, 6 * self._px)
        hair_on_skin = hair * 0.9 if g.style != 4 else hair * 0.55 + skin * 0.45
        _over(col, hair_on_skin, cap_a)
        masks["face"][box[0] : box[1], box[2] : box[3]] = (alpha > 0.5) & (cap_a < 0.5)

        self._paint_eyes(g, ident, ex, p, col, box, masks)
        self._paint_brows(g, ident, ex, p, col, box, masks)
        self._paint_mouth(g, ident, mouth, ex, p, col, box, masks)
        self._paint_wrinkle(g, ex, p, col, box, masks)
        col *= shade[..., None]
        self._apply(box, t, alpha, col, is_head=True, points=p, kind=SURFACE_FACE)

    def _tc(self, sy: slice, sx: slice, d: np.ndarray) -> np.ndarray:
        """Coverage of a painted feature (``d`` in head-local units) on a head sub-box."""
        return _clip(0.5 - d / self._pxh[sy, sx], 0.0, 1.0)

    def _sub(self, box: tuple, name: str):
        """Slices of a painted feature's image box inside the head box (or None)."""
        b = self._boxes[name]
        if b is None:
            return None
        y0 = max(b[0], box[0]) - box[0]
        y1 = min(b[1], box[1]) - box[0]
        x0 = max(b[2], box[2]) - box[2]
        x1 = min(b[3], box[3]) - box[2]
        if y1 - y0 < 3 or x1 - x0 < 3:
            return None
        return (slice(y0, y1), slice(x0, x1)), (y0 + box[0], y1 + box[0], x0 + box[2], x1 + box[2])

    # -- eyes -----------------------------------------------------------------
    def eye_curves(self, g: _HeadGeom, ex: Expression, side: float, x: np.ndarray):
        """Lower lid, upper lid and crease y at head-local x for the eye on ``side`` (+-1)."""
        cx = side * g.eye_x
        s = np.clip((x - cx) / g.eye_w, -1, 1)
        so = s * side  # + towards the outer corner
        q = (1 - s * s) ** 0.8
        openness = float(np.clip(1 + 0.45 * ex.eye_open, 0.05, 1.6)) * (1 - float(ex.blink))
        low = g.eye_low * (1 + 0.55 * min(ex.eye_open, 0.0))
        tilt = 0.012 * so
        y_low = _EYE_Y + tilt - low * q * (1 - 0.15 * so)
        y_up = _EYE_Y + tilt + (openness * (g.eye_up + low) - low) * q * (1 - 0.12 * so)
        crease_h = g.eye_up * (1.0 + 0.25 * max(ex.eye_open, 0.0)) + 0.03
        y_cr = _EYE_Y + tilt + crease_h * (1 - s * s) ** 0.6
        return y_low, y_up, y_cr

    def _paint_eyes(self, g, ident, ex, p, col, box, masks) -> None:
        iris = np.asarray(ident.iris, dtype=_DTYPE)
        skin = np.asarray(ident.skin, dtype=_DTYPE)
        for side in (-1.0, 1.0):
            cx = side * g.eye_x
            sub = self._sub(box, f"eye{int(side)}")
            if sub is None:
                continue
            (sy, sx), ibox = sub
            x, y, z = p[0][sy, sx], p[1][sy, sx], p[2][sy, sx]
            c = col[sy, sx]
            front = z > 0
            y_low, y_up, y_cr = self.eye_curves(g, ex, side, x)
            dx = np.abs(x - cx) - g.eye_w
            # socket shading
            r2 = ((x - cx) / (g.eye_w + 0.05)) ** 2 + ((y - _EYE_Y - 0.02) / 0.11) ** 2
            c *= (1 - 0.09 * _clip(1 - r2, 0, 1) ** 2)[..., None]
            # lid skin between the lash line and the crease
            d_lid = np.maximum(np.maximum(y - y_cr, y_up - y), dx + 0.01)
            _over(c, skin * 0.9, self._tc(sy, sx, d_lid) * 0.8)
            d_cr = np.maximum(np.abs(y - y_cr) - 0.004, dx + 0.02)
            _over(c, skin * 0.7, self._tc(sy, sx, d_cr) * 0.6)
            # opening: sclera, iris, pupil, highlight
            d_open = np.maximum(np.maximum(y_low - y, y - y_up), dx)
            a_open = self._tc(sy, sx, d_open) * front
            eye = np.empty_like(c)
            eye[:] = (0.93, 0.92, 0.88)
            shadow = _smooth(y_up - y, 0.0, 0.03)  # lid shadow on the eyeball
            eye *= (0.75 + 0.25 * shadow)[..., None]
            ri = g.iris_r
            d_iris = np.sqrt((x - cx) ** 2 + (y - _EYE_Y - 0.004) ** 2) - ri
            _over(eye, iris * (0.8 + 0.4 * _smooth(-d_iris, 0, ri)[..., None]), self._tc(sy, sx, d_iris))
            _over(eye, (0.03, 0.03, 0.03), self._tc(sy, sx, d_iris + ri * 0.58))
            d_hl = np.sqrt((x - cx + 0.35 * ri) ** 2 + (y - _EYE_Y - 0.4 * ri) ** 2) - 0.22 * ri
            _over(eye, (1.0, 1.0, 1.0), self._tc(sy, sx, d_hl) * 0.85)
            _over(c, eye * np.maximum(shadow, 0.75)[..., None], a_open)
            # lash line along the upper lid, thin lower lid line
            th = 0.011 * (1.0 + 0.6 * (1 - _clip(np.abs(x - cx) / g.eye_w, 0, 1)))
            d_lash = np.maximum(np.abs(y - y_up - 0.6 * th) - th, dx - 0.012 * (side * (x - cx) > 0))
            _over(c, (0.06, 0.04, 0.04), self._tc(sy, sx, d_lash) * front)
            d_ll = np.maximum(np.abs(y - y_low + 0.003) - 0.004, dx)
            _over(c, skin * 0.6, self._tc(sy, sx, d_ll) * 0.6 * front)
            # eye region mask: lower lid to crease
            d_m = np.maximum(
                np.maximum(y_low - 0.02 - y, y - np.maximum(y_cr, y_up + 0.035) - 0.015), dx - 0.02
            )
            y0, y1, x0, x1 = ibox
            masks["eyes"][y0:y1, x0:x1] |= (d_m < 0) & front

    # -- brows ----------------------------------------------------------------
    def brow_curve(self, g: _HeadGeom, ex: Expression, ax: np.ndarray):
        """Centre-line y, half-thickness and end-distance of a brow at |x| = ax."""
        f = float(ex.brow_furrow)
        x_in = g.eye_x - 0.2 - 0.035 * max(f, 0.0)
        x_out = g.eye_x + 0.16
        t = (ax - x_in) / (x_out - x_in)
        tc = _clip(t, 0, 1)
        yb = _EYE_Y + 0.17 + 0.09 * float(ex.brow_raise)
        arch = 0.04 * np.sin(np.pi * tc**0.75)
        inner = (-0.075 * max(f, 0.0) + 0.08 * max(-f, 0.0)) * (1 - tc) ** 1.6
        outer = -0.02 * max(-f, 0.0) * tc**2
        y_c = yb + arch + inner + outer
        th = g.brow_th * (1.05 - 0.5 * tc)
        d_end = np.maximum(x_in - ax, ax - x_out)
        return y_c, th, d_end

    def _paint_brows(self, g, ident, ex, p, col, box, masks) -> None:
        brow = np.asarray(ident.hair, dtype=_DTYPE) * 0.45 + np.asarray(ident.skin, dtype=_DTYPE) * 0.22
        for side in (-1.0, 1.0):
            sub = self._sub(box, f"brow{int(side)}")
            if sub is None:
                continue
            (sy, sx), ibox = sub
            x, y, z = p[0][sy, sx], p[1][sy, sx], p[2][sy, sx]
            ax = x * side
            y_c, th, d_end = self.brow_curve(g, ex, ax)
            d = np.maximum(np.abs(y - y_c) - th, d_end)
            # rounded ends
            d = np.where(d_end > 0, np.hypot(d_end, np.maximum(np.abs(y - y_c) - th, 0)), d)
            d = np.where(ax > 0, d, np.maximum(d, -ax))
            a = self._tc(sy, sx, d.astype(_DTYPE)) * (z > 0)
            c = col[sy, sx]
            _over(c, brow, a * 0.92)
            y0, y1, x0, x1 = ibox
            masks["brows"][y0:y1, x0:x1] |= a > 0.02

    # -- mouth ----------------------------------------------------------------
    def mouth_curves(self, g: _HeadGeom, mouth: Mouth, ex: Expression, x: np.ndarray):
        """Mouth curves at head-local x: (y_uo, y_ui, y_li, y_lo, half_width, s)."""
        jaw = float(np.clip(mouth.jaw, 0, 1))
        lip = float(np.clip(mouth.lip, -1, 1))
        spread, rnd = max(lip, 0.0), max(-lip, 0.0)
        sm, sk = float(ex.smile), float(ex.smirk)
        w = g.mouth_w * (1 + 0.16 * spread - 0.3 * rnd + 0.14 * max(sm, 0) + 0.05 * abs(sk))
        s = np.clip(x / w, -1, 1)
        corner = (0.1 * sm + 0.09 * sk * (s > 0)) * np.abs(s) ** 2.0
        y0 = _MOUTH_Y
        k_open = 0.5 + 0.35 * spread - 0.15 * rnd
        prof = (1 - s * s) ** k_open
        gap = jaw * (0.27 + 0.05 * rnd - 0.03 * spread)
        y_ui = y0 + corner + 0.22 * gap * prof
        y_li = y0 + corner - 0.78 * gap * prof
        thick = 1 + 0.45 * rnd - 0.25 * spread
        lp = (1 - s * s) ** 0.42
        bow = 0.012 * (
            np.exp(-(((s - 0.2) / 0.13) ** 2)) + np.exp(-(((s + 0.2) / 0.13) ** 2))
        ) - 0.006 * np.exp(-((s / 0.08) ** 2))
        y_uo = y_ui + (g.lip_up * thick + bow) * lp
        y_lo = y_li - g.lip_low * thick * lp * (1 - 0.12 * s * s)
        return y_uo, y_ui, y_li, y_lo, w, s

    def _paint_mouth(self, g, ident, mouth, ex, p, col, box, masks) -> None:
        sub = self._sub(box, "mouth")
        if sub is None:
            return
        (sy, sx), ibox = sub
        x, y, z = p[0][sy, sx], p[1][sy, sx], p[2][sy, sx]
        c = col[sy, sx]
        y_uo, y_ui, y_li, y_lo, w, _ = self.mouth_curves(g, mouth, ex, x)
        dx = np.abs(x) - w
        lipc = np.asarray(ident.lip, dtype=_DTYPE)
        front = z > 0
        d_lips = np.maximum(np.maximum(y_lo - y, y - y_uo), dx)
        a_lips = self._tc(sy, sx, d_lips.astype(_DTYPE)) * front
        lipcol = np.empty_like(c)
        lipcol[:] = lipc
        upper = y > 0.5 * (y_ui + y_li)
        lipcol *= np.where(upper, 0.86, 1.0)[..., None]
        # highlight on the lower lip
        hl = _clip(1 - ((y - (y_li + 0.55 * (y_lo - y_li))) / (0.3 * g.lip_low)) ** 2, 0, 1)
        hl *= _clip(1 - (x / (0.6 * w)) ** 2, 0, 1) * ~upper
        lipcol += (0.18 * hl)[..., None] * (1 - lipcol)
        _over(c, lipcol, a_lips)
        # inner mouth
        d_in = np.maximum(np.maximum(y_li - y, y - y_ui), dx)
        a_in = self._tc(sy, sx, d_in.astype(_DTYPE)) * front
        gap = np.maximum(y_ui - y_li, 1e-4)
        inner = np.empty_like(c)
        inner[:] = (0.22, 0.05, 0.06)
        d_tongue = ((x / (0.62 * w)) ** 2 + ((y - y_li) / (0.45 * gap + 1e-4)) ** 2) - 1.0
        _over(inner, (0.62, 0.27, 0.30), self._tc(sy, sx, d_tongue.astype(_DTYPE) * 0.05) * 0.9)
        d_tu = np.maximum(np.maximum(y_ui - 0.045 - y, np.abs(x) - 0.72 * w), y - y_ui - 0.01)
        _over(inner, (0.93, 0.91, 0.85), self._tc(sy, sx, d_tu.astype(_DTYPE)))
        d_tl = np.maximum(np.maximum(y - y_li - 0.03, np.abs(x) - 0.6 * w), y_li - 0.01 - y)
        _over(inner, (0.85, 0.83, 0.77), self._tc(sy, sx, d_tl.astype(_DTYPE)) * _smooth(gap, 0.08, 0.16))
        inner *= (0.55 + 0.45 * _smooth(y_ui - y, 0.0, 0.04))[..., None]  # lip shadow
        _over(c, inner, a_in)
        # dark seam where the lips meet
        d_seam = np.maximum(np.abs(y - 0.5 * (y_ui + y_li)) - 0.004, dx)
        _over(c, lipc * 0.4, self._tc(sy, sx, d_seam.astype(_DTYPE)) * 0.7 * front)
        y0, y1, x0, x1 = ibox
        masks["mouth"][y0:y1, x0:x1] |= a_lips > 0.02

    def _paint_wrinkle(self, g, ex, p, col, box, masks) -> None:
        w = float(ex.wrinkle)
        sub = self._sub(box, "wrinkle")
        if sub is None:
            return
        (sy, sx), ibox = sub
        x, y = p[0][sy, sx], p[1][sy, sx]
        y0, y1, x0, x1 = ibox
        region = (np.abs(x) < 0.1) & (y > _EYE_Y - 0.1) & (y < _EYE_Y + 0.05)
        masks["nose"][y0:y1, x0:x1] |= region & (p[2][sy, sx] > 0)
        if w <= 0:
            return
        c = col[sy, sx]
        for k, yy in enumerate((-0.07, -0.035, 0.0)):
            yc = _EYE_Y + yy + 0.3 * x * x  # lines curve up at the sides
            d = np.maximum(np.abs(y - yc) - 0.005, np.abs(x) - (0.07 - 0.012 * k))
            _over(c, np.asarray(self._skin) * 0.6, self._tc(sy, sx, d.astype(_DTYPE)) * 0.55 * w)

    # -- landmarks ------------------------------------------------------------
    def landmarks(self, identity: Identity, pose: Pose, mouth: Mouth, expression: Expression) -> np.ndarray:
        """(68, 2) float32 pixel landmarks of a frame (see module docstring)."""
        self._setup(pose)
        return self._landmarks(_head_geom(identity), mouth, expression)

    def _landmarks(self, g: _HeadGeom, mouth: Mouth, ex: Expression) -> np.ndarray:
        static = _static_landmarks(g)  # (68, 3); outline and nose are fixed points
        xy = np.empty((68 - 17 - 9, 2))  # brows (10), eyes (12), mouth (20)
        # brows: left outer -> inner, right inner -> outer
        f = float(ex.brow_furrow)
        x_in = g.eye_x - 0.2 - 0.035 * max(f, 0.0)
        x_out = g.eye_x + 0.16
        ax = x_in + 0.01 + np.linspace(0.0, 1.0, 5) * (x_out - x_in - 0.02)
        yc, _, _ = self.brow_curve(g, ex, ax)
        xy[0:5] = np.stack([-ax[::-1], yc[::-1]], -1)
        xy[5:10] = np.stack([ax, yc], -1)
        # eyes
        for k, side in enumerate((-1.0, 1.0)):
            xs = np.array([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3]) * g.eye_w * 0.999
            if side > 0:  # inner corner first for the image-right eye
                xs = -xs
            xs = side * g.eye_x + xs
            y_low, y_up, _ = self.eye_curves(g, ex, side, xs)
            ys = np.array([y_low[0], y_up[1], y_up[2], y_low[3], y_low[4], y_low[5]])
            ys[0] = 0.5 * (y_low[0] + y_up[0])
            ys[3] = 0.5 * (y_low[3] + y_up[3])
            xy[10 + 6 * k : 16 + 6 * k] = np.stack([xs, ys], -1)
        # mouth: outer 12, inner 8
        w = self.mouth_curves(g, mouth, ex, np.zeros(1))[4]
        xo = np.array([-1.0, -0.62, -0.28, 0.0, 0.28, 0.62, 1.0, 0.62, 0.28, 0.0, -0.28, -0.62]) * w * 0.995
        xi = np.array([-0.9, -0.4, 0.0, 0.4, 0.9, 0.4, 0.0, -0.4]) * w
        y_uo, y_ui, y_li, y_lo, _, _ = self.mouth_curves(g, mouth, ex, np.concatenate([xo, xi]))
        yo = np.concatenate([y_uo[:7], y_lo[7:12]])
        yo[0] = 0.5 * (y_ui[0] + y_li[0])
        yo[6] = 0.5 * (y_ui[6] + y_li[6])
        yi = np.concatenate([y_ui[12:17], y_li[17:]])
        yi[0] = 0.5 * (y_ui[12] + y_li[12])
        yi[4] = 0.5 * (y_ui[16] + y_li[16])
        xy[22:34] = np.stack([xo, yo], -1)
        xy[34:42] = np.stack([xi, yi], -1)
        z = g.surface_z(xy[:, 0], xy[:, 1])
        local = static.copy()
        local[17:27, :2] = xy[0:10]
        local[17:27, 2] = z[0:10]
        local[36:68, :2] = xy[10:42]
        local[36:68, 2] = z[10:42]
        return self.project(self.head_to_world(local)).astype(np.float32)


def render(
    identity: Identity,
    pose: Pose | None = None,
    mouth: Mouth | None = None,
    expression: Expression | None = None,
    size: int = 128,
) -> Frame:
    """Render one frame (convenience wrapper around :class:`Renderer`)."""
    return Renderer(size).render(identity, pose, mouth, expression)
