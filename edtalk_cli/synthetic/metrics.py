"""Metrics for outputs judged against the synthetic world's exact ground truth.

Analogues of the paper's metrics: PSNR and SSIM on the full frame and on the mouth, eye and
brow regions; M-LMD / F-LMD (mouth / all 68 landmark distances); emotion accuracy; lip-sync
correlation (ground-truth jaw opening vs the jaw regressed from the output); and leakage
(how far the factors that should stay put move when one driver changes). Landmarks, jaw and
emotions of generated frames come from the judges (:mod:`edtalk_cli.synthetic.judges`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edtalk_cli.synthetic.factors import Expression, Identity, Mouth, Pose
from edtalk_cli.synthetic.render import LANDMARK_GROUPS, Frame, Renderer

MOUTH_LANDMARKS = slice(LANDMARK_GROUPS["mouth_outer"][0], LANDMARK_GROUPS["mouth_inner"][1])  # 48..67
# Natural spread of each factor group, used to normalise leakage (per component).
FACTOR_SCALES: dict[str, np.ndarray] = {
    "pose": np.array([10.0, 6.0, 4.0, 0.03, 0.03, 0.03]),
    "mouth": np.array([0.3, 0.5]),
    "expression": np.array([0.4, 0.4, 0.4, 0.3, 0.4, 0.3, 0.3]),
}


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of uint8 images or stacks (..., H, W, 3), optionally over a (.., H, W) mask."""
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, dtype=bool)[..., None], d.shape)
        if not m.any():
            return float("nan")
        mse = d[m].mean()
    else:
        mse = d.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two uint8 RGB images (H, W, 3) or stacks, optionally averaged over a mask."""
    from skimage.metrics import structural_similarity

    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 3:
        a, b = a[None], b[None]
        mask = None if mask is None else np.asarray(mask)[None]
    vals = []
    for i in range(len(a)):
        _, smap = structural_similarity(a[i], b[i], channel_axis=-1, data_range=255, full=True, win_size=7)
        smap = smap.mean(-1)
        if mask is None:
            vals.append(smap.mean())
        elif np.asarray(mask[i]).any():
            vals.append(smap[np.asarray(mask[i], dtype=bool)].mean())
    return float(np.mean(vals)) if vals else float("nan")


def _gradient_magnitude(images: np.ndarray) -> np.ndarray:
    """Central-difference gradient magnitude of the grey values of (..., H, W, 3) images, on the
    interior pixels: (..., H-2, W-2)."""
    grey = np.asarray(images, dtype=np.float64).mean(-1)
    d_y = grey[..., 2:, 1:-1] - grey[..., :-2, 1:-1]
    d_x = grey[..., 1:-1, 2:] - grey[..., 1:-1, :-2]
    return np.hypot(d_x, d_y)


def detail_ratio(out: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """How sharp ``out`` is next to ``gt``: the mean gradient magnitude of the output over that
    of the ground truth, inside an optional (..., H, W) mask.

    1 means edges as strong as the truth's. On a 64 px synthetic face a Gaussian blur of 0.75 /
    1.5 / 4 px scores about 0.73 / 0.55 / 0.37 (the head outline survives any blur); added
    noise scores above 1. It is the check behind the leakage numbers: a featureless head moves
    nothing, so it leaks nothing.
    """
    grad_out, grad_gt = _gradient_magnitude(out), _gradient_magnitude(gt)
    if mask is not None:
        inner = np.broadcast_to(np.asarray(mask, dtype=bool), grad_out.shape[:-2] + np.shape(mask)[-2:])
        inner = inner[..., 1:-1, 1:-1]
        if not inner.any():
            return float("nan")
        grad_out, grad_gt = grad_out[inner], grad_gt[inner]
    reference = grad_gt.mean()
    return float("nan") if reference == 0 else float(grad_out.mean() / reference)


def region_scores(
    out: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """PSNR/SSIM on the full frames and on each region: ``{"full": {...}, "mouth": {...}}``."""
    res = {"full": {"psnr": psnr(out, gt), "ssim": ssim(out, gt)}}
    for name, m in masks.items():
        res[name] = {"psnr": psnr(out, gt, m), "ssim": ssim(out, gt, m)}
    return res


def lmd(pred: np.ndarray, gt: np.ndarray, points: slice | Sequence[int] | None = None) -> float:
    """Mean Euclidean landmark distance (pixels) over frames and the selected points."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if points is not None:
        p, g = p[..., points, :], g[..., points, :]
    return float(np.linalg.norm(p - g, axis=-1).mean())


def m_lmd(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mouth landmark distance (points 48-67)."""
    return lmd(pred, gt, MOUTH_LANDMARKS)


def f_lmd(pred: np.ndarray, gt: np.ndarray) -> float:
    """Face landmark distance (all 68 points)."""
    return lmd(pred, gt)


def emotion_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of frames whose predicted emotion index equals the ground truth."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    return float((pred == gt).mean())


def lip_sync_correlation(gt_jaw: np.ndarray, pred_jaw: np.ndarray) -> float:
    """Pearson correlation of ground-truth and regressed jaw opening (0 when either is constant)."""
    a = np.asarray(gt_jaw, dtype=np.float64)
    b = np.asarray(pred_jaw, dtype=np.float64)
    if a.std() < 1e-8 or b.std() < 1e-8:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def leakage(reference: dict[str, np.ndarray], changed: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean normalised change of each factor group between two judged outputs.

    ``reference`` / ``changed`` hold (T, k) arrays under ``pose``, ``mouth`` and
    ``expression`` (e.g. FactorJudge predictions for outputs that differ in one driver only).
    Each component is divided by its natural spread (:data:`FACTOR_SCALES`), so 1.0 means a
    change as large as typical variation; groups that should stay put ought to be near 0.
    """
    out = {}
    for k, s in FACTOR_SCALES.items():
        if k in reference and k in changed:
            d = np.abs(np.asarray(reference[k], dtype=np.float64) - np.asarray(changed[k], dtype=np.float64))
            out[k] = float((d / s[: d.shape[-1]]).mean())
    return out


def cross_reenactment_target(
    identity: Identity,
    mouth: np.ndarray,
    pose: np.ndarray,
    expression: np.ndarray,
    size: int = 128,
) -> list[Frame]:
    """Exact target frames: ``identity`` driven by the mouth of clip A, the pose of clip B and
    the expression of clip C ((T, 2), (T, 6), (T, 7) arrays; T = the shortest)."""
    n = min(len(mouth), len(pose), len(expression))
    r = Renderer(size)
    return [
        r.render(
            identity,
            Pose.from_vector(pose[i]),
            Mouth.from_vector(mouth[i]),
            Expression.from_vector(expression[i]),
        )
        for i in range(n)
    ]
