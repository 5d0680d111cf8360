"""The per-frame coefficient timeline: pose (T, 6) and expression (T, 10) for every output frame.

Pure numpy; no model. A :class:`CoefficientResolver` turns specs (model emotion names,
reference images/videos, pose clips, saved tracks) into coefficient arrays; this module only
places them in time.

Rules (also in docs/manifest.md):

- **Frame coverage.** Frame ``i`` is shown at ``t = i / fps``. A segment ``[start, end)`` covers
  exactly the frames with ``start <= t < end`` (``end`` omitted: up to the last frame), i.e.
  frames ``ceil(start * fps) .. ceil(end * fps) - 1``. Times within 1e-6 of a frame's time count
  as that frame's time, so ``HH:MM:SS:FF`` timecodes land on the frame they name.
- **Reference tracks** (K frames, already at the output fps) start at frame 0 for the job's base
  and at the segment's first frame for a segment. When shorter than needed they are extended by
  their mode: ``loop`` (0..K-1, 0..K-1, ...), ``pingpong`` (0..K-1, K-2..1, 0..K-1, ...: the
  endpoints are not repeated) or ``hold`` (the last frame). Before a segment's first frame
  (during its fade-in) its track holds frame 0.
- **Intensity** ``s``: ``e' = n + s * (e - n)`` where ``n`` is the neutral expression vector when
  the resolver provides one, else ``e' = s * e``. Raw expression coefficients are not centred on
  "no expression": the neutral vector itself is far from zero (norm ~7), so scaling towards zero
  would leave the region of coefficients the model was trained on; scaling towards neutral keeps
  intensity 0 = neutral face and 1 = the emotion as defined.
- **Blend**: the weighted sum of the component vectors (each after its own intensity), weights
  normalised to sum to 1; then the blend's intensity.
- **Transitions** of ``d`` seconds are centred on every segment boundary ``b`` that lies strictly
  inside the clip: over ``[b - d/2, b + d/2]`` the weight of the incoming state rises as
  ``w(u) = (1 - cos(pi * u)) / 2`` with ``u = (t - b + d/2) / d``, and the outgoing state gets
  ``1 - w``. Between two constant states the per-frame change is therefore at most
  ``jump * (pi / 2) / (d * fps)`` and monotone. A segment starting at 0 or ending at/after the
  last frame has no transition there. A segment shorter than ``d`` (or segments closer than
  ``d``) never reaches full weight: the overlapping weights are renormalised so they never sum
  to more than 1. With ``d = 0`` the change is a hard cut exactly at the first covered frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from edtalk_cli.manifest.model import EmotionSpec, Job, PoseSpec, Segment

__all__ = [
    "EXP_DIM",
    "POSE_DIM",
    "CoefficientPlan",
    "CoefficientResolver",
    "RowLocalPlan",
    "apply_intensity",
    "build_plan",
    "ease",
    "extend_indices",
    "frame_count",
    "row_local_plan",
    "segment_frames",
    "segment_weights",
]

POSE_DIM = 6
EXP_DIM = 10
_EPS = 1e-6  # in frames


class CoefficientResolver(Protocol):
    """Turns specs into coefficient arrays sampled at the job's fps."""

    def emotion_coeffs(self, spec: EmotionSpec) -> np.ndarray:
        """Raw expression coefficients, (K, 10), before intensity: K = 1 for a model emotion,
        image or coeffs, K frames for a reference video. Never called with a blend."""
        ...

    def pose_coeffs(self, spec: PoseSpec) -> np.ndarray:
        """Pose coefficients (K, 6): K = 1 for static (the source's own pose), K frames otherwise."""
        ...

    def neutral_emotion(self) -> np.ndarray | None:
        """The neutral expression vector (10,), or None when unknown."""
        ...


@dataclass(frozen=True)
class CoefficientPlan:
    """Per-frame coefficients for T output frames."""

    pose: np.ndarray  # (T, 6) float32
    expression: np.ndarray  # (T, 10) float32
    segment_index: np.ndarray  # (T,) int64: index into job.segments covering the frame, -1 = none

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])


def frame_count(duration_s: float, fps: float) -> int:
    """Whole output frames in ``duration_s`` seconds: floor(duration * fps) (never past the audio)."""
    return max(0, math.floor(duration_s * fps + _EPS))


def segment_frames(start: float, end: float | None, fps: float, num_frames: int) -> tuple[int, int]:
    """The frame range ``[first, stop)`` covered by ``[start, end)`` (clipped to the clip)."""
    first = max(0, math.ceil(start * fps - _EPS))
    stop = num_frames if end is None else math.ceil(end * fps - _EPS)
    first, stop = min(first, num_frames), min(max(stop, 0), num_frames)
    return first, max(first, stop)


def ease(u: np.ndarray) -> np.ndarray:
    """Cosine ease from 0 to 1 on [0, 1] (clipped outside); ``ease(1 - u) = 1 - ease(u)``."""
    u = np.clip(u, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def extend_indices(
    num_source: int, length: int, mode: Literal["loop", "pingpong", "hold"], offset: int = 0
) -> np.ndarray:
    """Source indices (length,) for a K-frame track started at frame ``offset``.

    Output frame ``i`` reads local frame ``j = i - offset``; ``j < 0`` holds frame 0 and ``j >= K``
    is extended by ``mode``.
    """
    if num_source < 1:
        raise ValueError("a reference track needs at least one frame")
    j = np.arange(length, dtype=np.int64) - offset
    j = np.maximum(j, 0)
    if num_source == 1:
        return np.zeros(length, dtype=np.int64)
    if mode == "loop":
        return j % num_source
    if mode == "pingpong":
        period = 2 * num_source - 2
        p = j % period
        return np.where(p < num_source, p, period - p)
    if mode == "hold":
        return np.minimum(j, num_source - 1)
    raise ValueError(f"unknown extension mode {mode!r}")


def apply_intensity(e: np.ndarray, intensity: float, neutral: np.ndarray | None) -> np.ndarray:
    """``neutral + intensity * (e - neutral)``, or ``intensity * e`` without a neutral vector."""
    e = np.asarray(e, dtype=np.float64)
    if neutral is None:
        return intensity * e
    n = (
        np.asarray(neutral, dtype=np.float64).reshape(1, -1)
        if e.ndim == 2
        else np.asarray(neutral, np.float64)
    )
    return n + intensity * (e - n)


def _boundary_ramp(t: np.ndarray, b: float, d: float) -> np.ndarray:
    """Weight of the state after boundary ``b`` at times ``t``: 0 before, 1 after, eased over d."""
    return ease((t - b + d / 2.0) / d)


def segment_weights(
    segments: Sequence[Segment], num_frames: int, fps: float, transition: float
) -> np.ndarray:
    """Per-frame weight of every segment, (S, T); the base gets ``1 - sum``; columns sum to <= 1."""
    weights = np.zeros((len(segments), num_frames), dtype=np.float64)
    t = np.arange(num_frames, dtype=np.float64) / fps
    d = max(0.0, float(transition))
    for k, seg in enumerate(segments):
        first, stop = segment_frames(seg.start, seg.end, fps, num_frames)
        if first >= num_frames:  # starts after the last frame
            continue
        if d * fps < 1e-9:  # hard cut
            weights[k, first:stop] = 1.0
            continue
        rise = np.ones(num_frames) if first <= 0 else _boundary_ramp(t, seg.start, d)
        fall = np.ones(num_frames) if stop >= num_frames else 1.0 - _boundary_ramp(t, seg.end, d)  # type: ignore[arg-type]
        weights[k] = rise * fall
    total = weights.sum(axis=0)
    over = total > 1.0
    if np.any(over):
        weights[:, over] /= total[over]
    return weights


def _track(raw: np.ndarray, dim: int, num_frames: int, mode: str, offset: int, what: str) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 1:
        raw = raw.reshape(1, -1)
    if raw.ndim != 2 or raw.shape[1] != dim or raw.shape[0] < 1:
        raise ValueError(f"{what} coefficients must have shape (K, {dim}) with K >= 1, got {raw.shape}")
    return raw[extend_indices(raw.shape[0], num_frames, mode, offset)]  # type: ignore[arg-type]


def _emotion_track(
    spec: EmotionSpec, resolver: CoefficientResolver, neutral: np.ndarray | None, num_frames: int, offset: int
) -> np.ndarray:
    """(T, 10) expression for ``spec`` placed at ``offset``, intensity applied."""
    if spec.kind == "blend":
        components = spec.components or ()
        total = sum(w for w, _ in components)
        if not total > 0:
            raise ValueError("blend weights must have a positive sum")
        mixed = np.zeros((num_frames, EXP_DIM))
        for weight, component in components:
            mixed += (weight / total) * _emotion_track(component, resolver, neutral, num_frames, offset)
        return apply_intensity(mixed, spec.intensity, neutral)
    raw = _track(
        resolver.emotion_coeffs(spec), EXP_DIM, num_frames, spec.mode, offset, f"emotion {spec.label!r}"
    )
    return apply_intensity(raw, spec.intensity, neutral)


def _pose_track(spec: PoseSpec, resolver: CoefficientResolver, num_frames: int, offset: int) -> np.ndarray:
    return _track(resolver.pose_coeffs(spec), POSE_DIM, num_frames, spec.mode, offset, f"pose {spec.kind}")


def build_plan(
    job: Job, num_frames: int, fps: float, resolver: CoefficientResolver, dtype: type = np.float32
) -> CoefficientPlan:
    """The coefficient plan of ``job`` for ``num_frames`` frames at ``fps`` (see the module rules).

    Computed in float64; ``dtype`` is that of the returned pose and expression.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    neutral = resolver.neutral_emotion()
    if neutral is not None:
        neutral = np.asarray(neutral, dtype=np.float64).reshape(-1)
        if neutral.shape != (EXP_DIM,):
            raise ValueError(f"neutral emotion must have shape ({EXP_DIM},), got {neutral.shape}")
    segments = tuple(job.segments)
    starts = [segment_frames(s.start, s.end, fps, num_frames)[0] for s in segments]

    base_exp = _emotion_track(job.emotion, resolver, neutral, num_frames, 0)
    base_pose = _pose_track(job.pose, resolver, num_frames, 0)
    weights = segment_weights(segments, num_frames, fps, job.transition)  # (S, T)
    base_weight = 1.0 - weights.sum(axis=0)  # (T,)

    expression = base_exp * base_weight[:, None]
    pose = base_pose * base_weight[:, None]
    for k, seg in enumerate(segments):
        w = weights[k][:, None]
        if not np.any(w):
            continue
        seg_exp = (
            base_exp
            if seg.emotion is None
            else _emotion_track(seg.emotion, resolver, neutral, num_frames, starts[k])
        )
        seg_pose = base_pose if seg.pose is None else _pose_track(seg.pose, resolver, num_frames, starts[k])
        expression += w * seg_exp
        pose += w * seg_pose

    index = np.full(num_frames, -1, dtype=np.int64)
    for k, seg in enumerate(segments):
        first, stop = segment_frames(seg.start, seg.end, fps, num_frames)
        index[first:stop] = k
    return CoefficientPlan(pose=pose.astype(dtype), expression=expression.astype(dtype), segment_index=index)


@dataclass(frozen=True)
class RowLocalPlan:
    """A plan whose row ``t`` depends on a per-frame source track only through the track's row ``t``:
    ``plan[t] = offset[t] + gain[t] * source[t]`` (element-wise, float64), so it can be evaluated
    batch by batch while the source's coefficients are computed."""

    pose_offset: np.ndarray  # (T, 6)
    pose_gain: np.ndarray  # (T, 6)
    expression_offset: np.ndarray  # (T, 10)
    expression_gain: np.ndarray  # (T, 10)

    def rows(self, rows: slice, source_pose: np.ndarray, source_expression: np.ndarray | None):
        """(pose (B, 6), expression (B, 10)) float32 of output frames ``rows`` from the source's rows."""
        exp = np.zeros_like(self.expression_offset[rows]) if source_expression is None else source_expression
        pose = self.pose_offset[rows] + self.pose_gain[rows] * np.asarray(source_pose, dtype=np.float64)
        expression = self.expression_offset[rows] + self.expression_gain[rows] * np.asarray(
            exp, dtype=np.float64
        )
        return pose.astype(np.float32), expression.astype(np.float32)


def row_local_plan(
    num_frames: int, build: Callable[[np.ndarray, np.ndarray], CoefficientPlan]
) -> RowLocalPlan | None:
    """Decompose a plan that depends on a per-frame source track (pose (T, 6), expression (T, 10)).

    ``build(pose, expression)`` builds the float64 plan for a given source track. The plan is
    affine in the track (weights, intensities and blends are linear); it is row-local unless a
    segment re-starts the source's own track at its first frame. Probes with zeros and ones give
    the offset and the gain; a random probe checks locality. None when it is not row-local.
    """
    shape_p, shape_e = (num_frames, POSE_DIM), (num_frames, EXP_DIM)
    zero = build(np.zeros(shape_p), np.zeros(shape_e))
    unit = build(np.ones(shape_p), np.ones(shape_e))
    rng = np.random.default_rng(0)
    probe_p, probe_e = rng.normal(size=shape_p), rng.normal(size=shape_e)
    probe = build(probe_p, probe_e)
    local = RowLocalPlan(
        np.asarray(zero.pose, np.float64),
        np.asarray(unit.pose, np.float64) - zero.pose,
        np.asarray(zero.expression, np.float64),
        np.asarray(unit.expression, np.float64) - zero.expression,
    )
    for offset, gain, values, expected in (
        (local.pose_offset, local.pose_gain, probe_p, probe.pose),
        (local.expression_offset, local.expression_gain, probe_e, probe.expression),
    ):
        scale = 1.0 + np.abs(offset).max(initial=0.0) + np.abs(gain).max(initial=0.0)
        if not np.allclose(offset + gain * values, expected, rtol=0.0, atol=1e-9 * scale):
            return None
    return local
