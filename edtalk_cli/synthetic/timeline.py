"""Smooth per-frame trajectories of a clip: head motion, emotion segments and blinks."""

from __future__ import annotations

import numpy as np

from edtalk_cli.synthetic.factors import EMOTIONS, EXPRESSION_FIELDS, emotion_matrix
from edtalk_cli.synthetic.speech import FPS

# (std, hard limit) of each pose component: yaw, pitch, roll (degrees), tx, ty, scale-1
_POSE_STATS = ((9.0, 28.0), (5.0, 15.0), (3.5, 10.0), (0.03, 0.08), (0.025, 0.07), (0.025, 0.06))


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-filtered noise of length n (sigma in samples)."""
    r = int(np.ceil(3 * sigma))
    x = rng.standard_normal(n + 2 * r)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    y = np.convolve(x, k / np.sqrt((k * k).sum()), mode="valid")
    return y[:n]


def head_motion(rng: np.random.Generator, n_frames: int, fps: int = FPS, amount: float = 1.0) -> np.ndarray:
    """(T, 6) smooth head pose trajectory: yaw, pitch, roll (deg), tx, ty, scale."""
    out = np.zeros((n_frames, 6), dtype=np.float32)
    offset_scale = rng.uniform(0.3, 1.0)
    for i, (std, lim) in enumerate(_POSE_STATS):
        slow = _smooth_noise(rng, n_frames, 1.2 * fps)  # drifts over seconds
        fast = _smooth_noise(rng, n_frames, 0.25 * fps)  # nods and shakes
        x = std * amount * (0.8 * slow + 0.45 * fast + offset_scale * rng.standard_normal())
        out[:, i] = lim * np.tanh(x / lim)  # soft limit keeps it smooth
    out[:, 5] += 1.0
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def emotion_timeline(
    rng: np.random.Generator,
    n_frames: int,
    fps: int = FPS,
    emotion: str | None = None,
    intensity: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Emotion segments with smooth transitions.

    Returns ``weights`` (T, 8) emotion mixing weights (rows sum to 1), ``label`` (T,) int
    (the dominant emotion, index into EMOTIONS) and ``intensity`` (T,) float32. With a fixed
    ``emotion`` the whole clip shows it (as in MEAD).
    """
    n_emo = len(EMOTIONS)
    if emotion is not None:
        if emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
        idx = EMOTIONS.index(emotion)
        lvl = float(intensity if intensity is not None else rng.uniform(0.5, 1.0))
        w = np.zeros((n_frames, n_emo), dtype=np.float32)
        w[:, idx] = 1.0
        return w, np.full(n_frames, idx, dtype=np.int8), np.full(n_frames, lvl, dtype=np.float32)
    seconds = n_frames / fps
    n_seg = int(np.clip(round(seconds / rng.uniform(2.0, 4.0)), 1, 4))
    cuts = np.sort(rng.uniform(0.2, 0.8, n_seg - 1)) * seconds if n_seg > 1 else np.array([])
    emos = [int(rng.integers(n_emo))]
    for _ in range(n_seg - 1):
        e = int(rng.integers(n_emo - 1))
        emos.append(e if e < emos[-1] else e + 1)  # consecutive segments differ
    lvls = [float(intensity if intensity is not None else rng.uniform(0.4, 1.0)) for _ in emos]
    t = (np.arange(n_frames) + 0.5) / fps
    w = np.zeros((n_frames, n_emo), dtype=np.float64)
    level = np.zeros(n_frames)
    seg = np.searchsorted(cuts, t)  # current segment per frame
    w[np.arange(n_frames), np.asarray(emos)[seg]] = 1.0
    level[:] = np.asarray(lvls)[seg]
    label = np.asarray(emos, dtype=np.int8)[seg]
    for k, c in enumerate(cuts):  # cross-fade around each cut
        half = 0.5 * rng.uniform(0.3, 0.7)
        a = _smoothstep((t - (c - half)) / (2 * half))
        m = (t > c - half) & (t < c + half)
        prev_row = np.zeros(n_emo)
        prev_row[emos[k]] = 1.0
        next_row = np.zeros(n_emo)
        next_row[emos[k + 1]] = 1.0
        w[m] = (1 - a[m, None]) * prev_row + a[m, None] * next_row
        level[m] = (1 - a[m]) * lvls[k] + a[m] * lvls[k + 1]
    return w.astype(np.float32), label, level.astype(np.float32)


def blinks(rng: np.random.Generator, n_frames: int, fps: int = FPS) -> np.ndarray:
    """(T,) blink closure in [0, 1]: events every 2-6 s, fast close, slower open."""
    t = (np.arange(n_frames) + 0.5) / fps
    out = np.zeros(n_frames)
    s = float(rng.uniform(0.3, 3.0))
    while s < t[-1] + 0.5:
        close, hold, open_ = 0.07, rng.uniform(0.02, 0.06), rng.uniform(0.12, 0.2)
        up = _smoothstep((t - s) / close)
        down = 1 - _smoothstep((t - s - close - hold) / open_)
        out = np.maximum(out, np.minimum(up, down))
        s += float(rng.uniform(2.0, 6.0))
    return out.astype(np.float32)


def expression_track(
    rng: np.random.Generator,
    n_frames: int,
    fps: int = FPS,
    emotion: str | None = None,
    intensity: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 7) expression factors (EXPRESSION_FIELDS order), (T,) emotion label, (T,) intensity."""
    w, label, level = emotion_timeline(rng, n_frames, fps, emotion, intensity)
    proto = emotion_matrix()  # (8, 6)
    expr = np.zeros((n_frames, len(EXPRESSION_FIELDS)), dtype=np.float32)
    expr[:, :6] = (w @ proto) * level[:, None]
    # small idiosyncratic variation (brows and eyes), smooth
    for j in (0, 4):
        expr[:, j] += 0.05 * _smooth_noise(rng, n_frames, 0.5 * fps)
    expr[:, :6] = np.clip(expr[:, :6], -1.0, 1.0)
    expr[:, 5] = np.clip(expr[:, 5], 0.0, 1.0)
    expr[:, 6] = blinks(rng, n_frames, fps)
    return expr, label, level
