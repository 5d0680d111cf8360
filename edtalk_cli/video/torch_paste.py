"""Paste-back of a batch of generated faces in torch, on the job's device.

The same operations as the CPU path (:func:`edtalk_cli.video.align.paste_back`,
:func:`edtalk_cli.video.crop.square_paste_back`, :func:`edtalk_cli.video.masks.match_color`), for B
frames at once, so a GPU job does not send every full frame through numpy:

* only the union of the batch's face bounding boxes travels to the device (uint8), and only that
  box comes back (uint8), written into copies of the frames;
* the face and the crop-space mask are warped with the inverse crop transform by bilinear
  sampling at the frame pixels (``grid_sample``, ``align_corners=True``: pixel centres at integer
  coordinates, 0 outside the face, as ``cv2.warpAffine`` with ``INTER_LINEAR`` and a constant 0
  border); each frame's mask is cut to its own bounding box, as the CPU path touches only that;
* a square crop (:class:`~edtalk_cli.video.crop.CropTransform`) with the default mask is resized
  with Pillow's bicubic filter reproduced in exact integer arithmetic (the CPU path resizes with
  Pillow), and blended with :func:`~edtalk_cli.video.crop.feather_mask` of its side;
* colour matching uses the CIELAB formulas and constants of OpenCV's float conversion and the
  statistics of :func:`~edtalk_cli.video.masks.match_color`;
* the blend is ``cv2.blendLinear``'s ``(src * m + dst * (1 - m)) / (1 + 1e-5)``, rounded; every
  pixel where the warped mask is 0 is the frame's own value, bit for bit.

Measured against the CPU path on real footage (``tests/test_torch_paste.py``): at most 1 level
apart, on at most 0.1 % of the pasted pixels (float rounding at .5), identical where the mask is 0.

Region masks of ``mouth`` / ``lower`` are built by the caller in crop space (a face-sized
float32 array, :func:`~edtalk_cli.video.masks.region_mask`), then warped here.
torch is imported inside the functions: the video layer stays importable without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from edtalk_cli.video.align import AnyTransform, _rescaled, crop_matrix, frame_bbox
from edtalk_cli.video.crop import CropTransform, checked_paste_inputs, feather_mask
from edtalk_cli.video.masks import STD_RATIO_RANGE
from edtalk_cli.video.yuv import union_box

if TYPE_CHECKING:
    import torch

__all__ = ["match_color_batch", "paste_back_batch", "pil_bicubic_resize"]

# OpenCV's float RGB <-> CIELAB (D65, sRGB primaries)
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]]
)
_WHITE = np.array([0.950456, 1.0, 1.088754])
_LAB_T = 0.008856  # CIE epsilon
_LAB_K = 7.787
_LAB_L = 903.3
_LUT_DIM = 33  # OpenCV's RGB -> Lab grid: 32 cells a channel
_LAB_BASE = 1 << 14  # its fixed-point unit
_PIL_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling
_BLEND_EPS = 1e-5  # cv2.blendLinear's denominator guard


def _device(device: str | torch.device | None) -> torch.device:
    import torch

    return torch.device("cpu" if device is None else device)


# ------------------------------------------------------------------------------------ colour


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def _lab_exact(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> CIELAB (..., 3), float64, the textbook sRGB / D65 formulas."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ (_RGB_TO_XYZ / _WHITE[:, None]).T
    f = np.where(xyz > _LAB_T, np.cbrt(xyz), _LAB_K * xyz + 16 / 116)
    light = np.where(xyz[..., 1] > _LAB_T, 116 * f[..., 1] - 16, _LAB_L * xyz[..., 1])
    return np.stack([light, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def _lab_grid() -> np.ndarray:
    """(33**3, 3) int64: OpenCV's RGB -> Lab lookup grid (L / 100, (a + 128) / 256, (b + 128) / 256
    in units of ``2**-14``) at RGB steps of 1/32, flattened as ``(r * 33 + g) * 33 + b``."""
    steps = np.arange(_LUT_DIM) / (_LUT_DIM - 1)
    lab = _lab_exact(np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1))
    scaled = np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 256, (lab[..., 2] + 128) / 256], axis=-1)
    grid = np.rint(scaled * _LAB_BASE).astype(np.int64).reshape(-1, 3)
    grid.setflags(write=False)
    return grid


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) float32 RGB in [0, 1] -> CIELAB (L 0..100), as ``cv2.COLOR_RGB2Lab`` on float32
    computes it: the input in steps of ``2**-14``, trilinear interpolation in the 33**3 grid of
    :func:`_lab_grid` with weights in 1/16 of a cell, fixed-point rounding."""
    import torch

    grid = torch.as_tensor(np.array(_lab_grid()), device=rgb.device)  # (33**3, 3)
    fixed = torch.round(rgb.clamp(0.0, 1.0) * float(_LAB_BASE)).to(torch.int64)  # (B, 3, S, S)
    cell = fixed >> 9  # 2**14 / 32
    frac = (fixed >> 5) & 15  # position in the cell, 1/16 steps
    total = torch.zeros((*rgb.shape[:1], *rgb.shape[2:], 3), dtype=torch.int64, device=rgb.device)
    top = _LUT_DIM - 1
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                corner = [(cell[:, k] + d).clamp_max(top) for k, d in enumerate((dr, dg, db))]
                weight = torch.ones_like(cell[:, 0])
                for k, d in enumerate((dr, dg, db)):
                    weight = weight * (frac[:, k] if d else 16 - frac[:, k])
                index = (corner[0] * _LUT_DIM + corner[1]) * _LUT_DIM + corner[2]  # (B, S, S)
                total += weight[..., None] * grid[index]
    value = ((total + 2048) >> 12).float() / float(_LAB_BASE)  # (B, S, S, 3)
    light, a, b = value.unbind(-1)
    return torch.stack([light * 100.0, a * 256.0 - 128.0, b * 256.0 - 128.0], dim=1)


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) CIELAB -> RGB in [0, 1], as ``cv2.COLOR_Lab2RGB`` on float32."""
    import torch

    light, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    low = light <= _LAB_T * _LAB_L
    y = torch.where(low, light / _LAB_L, ((light + 16) / 116) ** 3)
    fy = torch.where(low, _LAB_K * y + 16 / 116, (light + 16) / 116)
    f_threshold = _LAB_K * _LAB_T + 16 / 116
    fxz = torch.stack([a / 500 + fy, fy - b / 200], dim=1)
    xz = torch.where(fxz <= f_threshold, (fxz - 16 / 116) / _LAB_K, fxz**3)
    xyz = torch.stack([xz[:, 0], y, xz[:, 1]], dim=1)
    matrix = torch.as_tensor(_XYZ_TO_RGB * _WHITE[None, :], dtype=lab.dtype, device=lab.device)
    rgb = torch.einsum("ij,bjhw->bihw", matrix, xyz).clamp(0.0, 1.0)
    return _linear_to_srgb(rgb)


def match_color_batch(faces: torch.Tensor, references: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """:func:`~edtalk_cli.video.masks.match_color` of B faces at once.

    ``faces``, ``references``: (B, 3, S, S) float32 holding uint8 values; ``masks`` (B, S, S).
    Returns (B, 3, S, S) float32 holding the matched uint8 values; a face whose mask is all 0
    is returned unchanged.
    """
    import torch

    lab_f = _rgb_to_lab(faces / 255.0)
    lab_r = _rgb_to_lab(references / 255.0)
    w = masks.to(torch.float64)
    total = w.sum(dim=(1, 2))  # (B,)
    weights = (w / total.clamp_min(1e-300)[:, None, None])[:, None]  # (B, 1, S, S)
    dims = (2, 3)
    mean_f = (lab_f.double() * weights).sum(dim=dims, keepdim=True)  # (B, 3, 1, 1)
    mean_r = (lab_r.double() * weights).sum(dim=dims, keepdim=True)
    std_f = (((lab_f.double() - mean_f) ** 2) * weights).sum(dim=dims, keepdim=True).sqrt()
    std_r = (((lab_r.double() - mean_r) ** 2) * weights).sum(dim=dims, keepdim=True).sqrt()
    ratio = (std_r / std_f.clamp_min(1e-6)).clamp(*STD_RATIO_RANGE)
    matched = ((lab_f.double() - mean_f) * ratio + mean_r).float()
    rgb = torch.round(_lab_to_rgb(matched) * 255.0).clamp(0, 255)
    return torch.where((total > 0)[:, None, None, None], rgb, faces)


# ------------------------------------------------------------------------------------ resize


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5  # Pillow's bicubic kernel
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@lru_cache(maxsize=64)
def _pil_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 holding Pillow's integer bicubic weights (``2**22`` = 1)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    out = np.zeros((out_size, in_size))
    for xx in range(out_size):
        centre = (xx + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        w = _bicubic((np.arange(lo, hi) - centre + 0.5) / filter_scale)
        total = w.sum()
        if total != 0:
            w = w / total
        fixed = w * (1 << _PIL_BITS)
        out[xx, lo:hi] = np.trunc(np.where(fixed < 0, fixed - 0.5, fixed + 0.5))
    out.setflags(write=False)
    return out


def pil_bicubic_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, F, F) float holding uint8 values -> (B, 3, size, size), equal to Pillow's bicubic
    ``Image.resize`` of each image (horizontal pass, rounded to uint8, then vertical pass)."""
    import torch

    side = images.shape[-1]
    if side == size:
        return images
    weights = torch.as_tensor(
        np.array(_pil_coefficients(side, size)), dtype=torch.float64, device=images.device
    )
    half = float(1 << (_PIL_BITS - 1))

    def to_u8(x: torch.Tensor) -> torch.Tensor:  # Pillow's clip8: arithmetic shift, then clamp
        return torch.floor((x + half) / float(1 << _PIL_BITS)).clamp(0, 255)

    x = images.double()
    x = to_u8(torch.matmul(x, weights.T))  # rows resampled: (B, 3, F, size)
    x = to_u8(torch.matmul(weights, x))  # columns: (B, 3, size, size)
    return x.float()


# ------------------------------------------------------------------------------------ blend


def _blend(dst: torch.Tensor, src: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8-valued (B, 3, h, w) float images blended with (B, 1, h, w) weights as ``blendLinear``;
    pixels where ``mask`` is 0 keep ``dst`` exactly."""
    import torch

    rest = 1.0 - mask
    mixed = torch.round((src * mask + dst * rest) / (mask + rest + _BLEND_EPS)).clamp(0, 255)
    return torch.where(mask > 0, mixed, dst)


def _as_float_images(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) on ``device``."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    return t.to(device, non_blocking=True).permute(0, 3, 1, 2).float()


def _sampling_grid(
    matrices: np.ndarray, union: tuple[int, int, int, int], side: int, device: torch.device
) -> torch.Tensor:
    """(B, h, w, 2) grid_sample coordinates (align_corners=True) of the union box's frame pixels
    in a ``side`` square, through the (B, 2, 3) frame -> square pixel ``matrices``."""
    import torch

    x0, y0, x1, y1 = union
    m = torch.as_tensor(matrices, dtype=torch.float64, device=device)  # (B, 2, 3)
    xs = torch.arange(x0, x1, dtype=torch.float64, device=device)
    ys = torch.arange(y0, y1, dtype=torch.float64, device=device)
    u = (
        m[:, 0, 0, None, None] * xs[None, None, :]
        + m[:, 0, 1, None, None] * ys[None, :, None]
        + m[:, 0, 2, None, None]
    )
    v = (
        m[:, 1, 0, None, None] * xs[None, None, :]
        + m[:, 1, 1, None, None] * ys[None, :, None]
        + m[:, 1, 2, None, None]
    )
    scale = 2.0 / (side - 1) if side > 1 else 0.0
    return (torch.stack([u, v], dim=-1) * scale - 1.0).float()


def _box_masks(
    boxes: Sequence[tuple[int, int, int, int]], union: tuple[int, int, int, int], device: torch.device
) -> torch.Tensor:
    """(B, 1, h, w) float32: 1 inside each frame's own box, 0 elsewhere in the union box."""
    import torch

    x0, y0, x1, y1 = union
    b = torch.as_tensor(np.array(boxes), device=device)
    xs = torch.arange(x0, x1, device=device)
    ys = torch.arange(y0, y1, device=device)
    inside_x = (xs[None, :] >= b[:, 0, None]) & (xs[None, :] < b[:, 2, None])  # (B, w)
    inside_y = (ys[None, :] >= b[:, 1, None]) & (ys[None, :] < b[:, 3, None])  # (B, h)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def _warped_region(
    region: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    transforms: Sequence[AnyTransform],
    boxes: Sequence[tuple[int, int, int, int]],
    union: tuple[int, int, int, int],
) -> torch.Tensor:
    """The union box ``region`` (B, 3, h, w) with each face (B, 3, F, F) warped in through its mask
    (B, 1, M, M): the general (any similarity) paste-back."""
    import torch
    import torch.nn.functional as F

    device = region.device
    face_side, mask_side = faces.shape[-1], masks.shape[-1]
    face_m = np.stack([_rescaled(crop_matrix(t), t.size, face_side) for t in transforms])
    mask_m = np.stack([_rescaled(crop_matrix(t), t.size, mask_side) for t in transforms])
    opts = {"mode": "bilinear", "padding_mode": "zeros", "align_corners": True}
    src = F.grid_sample(faces, _sampling_grid(face_m, union, face_side, device), **opts)
    src = torch.round(src).clamp(0, 255)  # the warped face is a uint8 image on the CPU path too
    if masks.shape[0] != faces.shape[0]:
        masks = masks.expand(faces.shape[0], -1, -1, -1)
    weight = F.grid_sample(masks, _sampling_grid(mask_m, union, mask_side, device), **opts).clamp(0.0, 1.0)
    weight = weight * _box_masks(boxes, union, device)
    return _blend(region, src, weight)


def _square_region(
    region: torch.Tensor,
    faces: torch.Tensor,
    transforms: Sequence[CropTransform],
    boxes: Sequence[tuple[int, int, int, int]],
    union: tuple[int, int, int, int],
    feathers: Sequence[float],
    shape: str,
) -> torch.Tensor:
    """The union box ``region`` with each face resized onto its integer square (Pillow bicubic) and
    blended with :func:`feather_mask` of the square's side (:func:`square_paste_back`)."""
    import torch

    ux0, uy0 = union[0], union[1]
    out = region.clone()
    for i, (t, (x0, y0, x1, y1), feather) in enumerate(zip(transforms, boxes, feathers)):
        up = pil_bicubic_resize(faces[i : i + 1], t.side)  # (1, 3, side, side)
        sx, sy = x0 - t.x0, y0 - t.y0
        src = up[:, :, sy : sy + (y1 - y0), sx : sx + (x1 - x0)]
        mask = torch.as_tensor(np.array(feather_mask(t.side, feather, shape)), device=region.device)
        weight = mask[sy : sy + (y1 - y0), sx : sx + (x1 - x0)][None, None]
        window = (slice(i, i + 1), slice(None), slice(y0 - uy0, y1 - uy0), slice(x0 - ux0, x1 - ux0))
        out[window] = _blend(region[window], src, weight)
    return out


def paste_back_batch(
    frames: Sequence[np.ndarray] | np.ndarray,
    faces: np.ndarray | torch.Tensor,
    transforms: Sequence[AnyTransform],
    masks: np.ndarray | torch.Tensor | None = None,
    *,
    references: np.ndarray | torch.Tensor | None = None,
    feather: float | Sequence[float] = 0.1,
    shape: str = "ellipse",
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """:func:`edtalk_cli.video.align.paste_back` of B faces into B frames, computed on ``device``.

    ``frames``: B uint8 (H, W, 3) frames of one size; ``faces``: uint8 (B, F, F, 3) (an array, or
    a tensor on any device); ``transforms``: the B crop transforms (all at one crop ``size``).
    ``masks``: float32 crop-space blend weights, (M, M) shared or (B, M, M); None is
    :func:`feather_mask` with ``feather`` (one value, or one a frame) and ``shape`` (on a
    :class:`CropTransform`, the square paste-back). ``references``: uint8 (B, F, F, 3) colour targets; when given, each face is
    colour matched (:func:`match_color_batch`) under its mask (which must then be F x F) first.
    Returns B new uint8 frames; only the faces' bounding boxes differ from the inputs.
    """
    import torch

    dev = _device(device)
    count = len(transforms)
    if len(frames) != count or len(faces) != count:
        raise ValueError(f"{len(frames)} frames, {len(faces)} faces and {count} transforms: give one of each")
    if count == 0:
        return []
    if isinstance(faces, np.ndarray):
        checked = [
            checked_paste_inputs(f, fc, t.image_shape)[0] for f, fc, t in zip(frames, faces, transforms)
        ]
    else:
        shape_ok = faces.ndim == 4 and faces.shape[3] == 3 and faces.shape[1] == faces.shape[2]
        if faces.dtype != torch.uint8 or not shape_ok:
            raise ValueError(f"faces must be uint8 (B, F, F, 3), got {faces.dtype} {tuple(faces.shape)}")
        any_face = np.zeros((1, 1, 3), np.uint8)
        checked = [checked_paste_inputs(f, any_face, t.image_shape)[0] for f, t in zip(frames, transforms)]
    if len({f.shape for f in checked}) != 1:
        raise ValueError("a batch's frames must all have one size")
    feathers = [float(feather)] * count if np.isscalar(feather) else [float(f) for f in feather]
    square = masks is None and all(isinstance(t, CropTransform) for t in transforms)
    if masks is None and not square:
        masks = np.stack([feather_mask(t.size, f, shape) for t, f in zip(transforms, feathers)])
    outputs = [f.copy() for f in checked]
    boxes = [frame_bbox(t) for t in transforms]
    keep = [i for i, b in enumerate(boxes) if b is not None]
    if not keep:
        return outputs
    kept_boxes = [boxes[i] for i in keep]
    union = union_box(kept_boxes)
    x0, y0, x1, y1 = union
    with torch.no_grad():
        region = _as_float_images(np.stack([outputs[i][y0:y1, x0:x1] for i in keep]), dev)
        index = torch.as_tensor(keep, device=dev)
        face_t = _as_float_images(faces, dev)
        if len(keep) < count:
            face_t = face_t.index_select(0, index)
        kept_transforms = [transforms[i] for i in keep]
        if square:
            pasted = _square_region(
                region, face_t, kept_transforms, kept_boxes, union, [feathers[i] for i in keep], shape
            )  # type: ignore[arg-type]
        else:
            mask_t = (
                torch.from_numpy(np.array(masks, dtype=np.float32))
                if not isinstance(masks, torch.Tensor)
                else masks
            )
            mask_t = mask_t.to(dev, torch.float32)
            mask_t = mask_t[None] if mask_t.ndim == 2 else mask_t.index_select(0, index.to(mask_t.device))
            if mask_t.ndim != 3 or mask_t.shape[-1] != mask_t.shape[-2]:
                raise ValueError(f"masks must be (M, M) or (B, M, M), got {tuple(mask_t.shape)}")
            if references is not None:
                ref_t = _as_float_images(references, dev).index_select(0, index)
                if mask_t.shape[-1] != face_t.shape[-1] or ref_t.shape != face_t.shape:
                    raise ValueError("colour matching needs masks and references the size of the faces")
                face_t = match_color_batch(face_t, ref_t, mask_t.expand(len(keep), -1, -1))
            pasted = _warped_region(region, face_t, mask_t[:, None], kept_transforms, kept_boxes, union)
        result = pasted.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # only uint8 comes back
    for k, i in enumerate(keep):
        bx0, by0, bx1, by1 = boxes[i]
        outputs[i][by0:by1, bx0:bx1] = result[k, by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
    return outputs
