"""The per-frame coefficient plan: frame coverage, transitions, track extension, intensity, blends."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edtalk_cli.manifest import EmotionSpec, Job, PoseSpec, Segment, Source, load_manifest
from edtalk_cli.pipeline.timeline import (
    CoefficientPlan,
    apply_intensity,
    build_plan,
    extend_indices,
    frame_count,
    segment_frames,
    segment_weights,
)

RNG = np.random.default_rng(0)
VECTORS = {name: RNG.normal(0, 3, size=10) for name in ("neutral", "happy", "sad", "surprised", "angry")}
STATIC_POSE = np.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.4])


class DictResolver:
    """A resolver over fixed arrays: model emotions from VECTORS, videos/tracks from ``tracks``."""

    def __init__(self, tracks: dict[str, np.ndarray] | None = None, neutral: bool = True) -> None:
        self.tracks = tracks or {}
        self.neutral = neutral

    def emotion_coeffs(self, spec: EmotionSpec) -> np.ndarray:
        if spec.kind == "name":
            return VECTORS[spec.name][None]
        if spec.kind == "coeffs":
            return np.asarray(spec.coeffs)[None]
        return self.tracks[spec.path.name]

    def pose_coeffs(self, spec: PoseSpec) -> np.ndarray:
        if spec.kind == "static":
            return STATIC_POSE[None]
        return self.tracks[spec.path.name]

    def neutral_emotion(self) -> np.ndarray | None:
        return VECTORS["neutral"] if self.neutral else None


def name(emotion: str, intensity: float = 1.0) -> EmotionSpec:
    return EmotionSpec(kind="name", name=emotion, intensity=intensity, label=emotion)


def make_job(
    segments: tuple[Segment, ...] = (),
    transition: float = 0.0,
    fps: float = 25.0,
    emotion: EmotionSpec | None = None,
    pose: PoseSpec | None = None,
) -> Job:
    return Job(
        name="t",
        manifest=Path("/m.yaml"),
        source=Source(path=Path("/face.png"), kind="image"),
        audio=Path("/a.wav"),
        output=Path("/out.mp4"),
        emotion=emotion or name("neutral"),
        emotion_explicit=emotion is not None,
        pose=pose or PoseSpec(),
        segments=segments,
        transition=transition,
        fps=fps,
    )


def covered(start: float, end: float | None, i: int, fps: Fraction) -> bool:
    """Independent exact rule: start <= i / fps < end."""
    t = Fraction(i) / fps
    return Fraction(start).limit_denominator(10**6) <= t and (
        end is None or t < Fraction(end).limit_denominator(10**6)
    )


def test_each_segment_emotion_on_exactly_its_frames_hard_cut() -> None:
    segs = (
        Segment(start=1.0, end=2.0, emotion=name("sad")),
        Segment(start=2.0, end=3.0, emotion=name("happy")),
    )
    plan = build_plan(make_job(segs, transition=0.0, emotion=name("angry")), 100, 25.0, DictResolver())
    assert isinstance(plan, CoefficientPlan)
    assert plan.expression.shape == (100, 10) and plan.expression.dtype == np.float32
    assert plan.pose.shape == (100, 6) and plan.pose.dtype == np.float32
    expected_index = np.full(100, -1)
    expected_index[25:50] = 0
    expected_index[50:75] = 1
    np.testing.assert_array_equal(plan.segment_index, expected_index)
    for i in range(100):
        want = {-1: "angry", 0: "sad", 1: "happy"}[int(expected_index[i])]
        np.testing.assert_allclose(plan.expression[i], VECTORS[want], rtol=0, atol=1e-5)
    # pose untouched by emotion-only segments
    np.testing.assert_allclose(plan.pose, np.tile(STATIC_POSE, (100, 1)), atol=1e-7)


@pytest.mark.parametrize(
    ("fps", "start", "end"),
    [(29.97, 1.0, 2.0), (29.97, 0.5, 1.7), (24.0, 0.5, 1.25), (24.0, 1.5, 2.0), (30000 / 1001, 1.001, 3.003)],
)
def test_boundary_frames_at_non_integer_fps(fps: float, start: float, end: float) -> None:
    num = 120
    segs = (Segment(start=start, end=end, emotion=name("happy")),)
    plan = build_plan(make_job(segs, fps=fps), num, fps, DictResolver())
    exact = Fraction(fps).limit_denominator(100000)
    want = np.array([0 if covered(start, end, i, exact) else -1 for i in range(num)])
    np.testing.assert_array_equal(plan.segment_index, want)
    first = int(np.argmax(want == 0))
    # the first covered frame is the first whose time is >= start, the one before is earlier
    assert first / fps >= start - 1e-9 and (first - 1) / fps < start
    np.testing.assert_allclose(plan.expression[first], VECTORS["happy"], atol=1e-5)
    np.testing.assert_allclose(plan.expression[first - 1], VECTORS["neutral"], atol=1e-5)


def test_frame_exact_boundaries_at_24fps() -> None:
    # 0.5 s is exactly frame 12 and 1.25 s exactly frame 30: start included, end excluded
    assert segment_frames(0.5, 1.25, 24.0, 100) == (12, 30)
    assert segment_frames(0.5, None, 24.0, 100) == (12, 100)
    # NTSC: frame 30 is at 1.001 s; a segment from 1.001 s starts there, not at 31
    assert segment_frames(1.001, 2.002, 30000 / 1001, 100) == (30, 60)
    assert segment_frames(5.0, 6.0, 25.0, 100) == (100, 100)  # after the clip: nothing
    assert frame_count(2.0, 25.0) == 50 and frame_count(1.0, 29.97) == 29


def test_transition_is_smooth_bounded_and_monotone() -> None:
    fps, d = 25.0, 0.4  # 10 transition frames
    segs = (Segment(start=2.0, end=4.0, emotion=name("happy")),)
    plan = build_plan(make_job(segs, transition=d, fps=fps), 150, fps, DictResolver())
    e = plan.expression.astype(np.float64)
    jump = np.abs(VECTORS["happy"] - VECTORS["neutral"])
    bound = jump * (math.pi / 2) / (d * fps)
    deltas = np.abs(np.diff(e, axis=0))
    assert np.all(deltas <= bound[None] + 1e-5)
    # the transition is spread: the largest step is far below the jump
    assert deltas.max() < 0.2 * jump.max()
    # monotone per coefficient through the fade-in window [1.8, 2.2] s = frames 45..55
    fade_in = e[44:57]
    for c in range(10):
        steps = np.diff(fade_in[:, c]) * np.sign(VECTORS["happy"][c] - VECTORS["neutral"][c])
        assert np.all(steps >= -1e-6)
    # outside the windows the values are exact; at the boundary frame the mix is half-way
    np.testing.assert_allclose(e[:45], np.tile(VECTORS["neutral"], (45, 1)), atol=1e-5)
    np.testing.assert_allclose(e[55:95], np.tile(VECTORS["happy"], (40, 1)), atol=1e-5)
    np.testing.assert_allclose(e[105:], np.tile(VECTORS["neutral"], (45, 1)), atol=1e-5)
    np.testing.assert_allclose(e[50], (VECTORS["neutral"] + VECTORS["happy"]) / 2, atol=1e-5)
    # segment_index still follows the hard rule
    assert plan.segment_index[49] == -1 and plan.segment_index[50] == 0 and plan.segment_index[99] == 0
    assert plan.segment_index[100] == -1


def test_adjacent_segments_cross_fade_without_dip() -> None:
    fps = 29.97
    segs = (
        Segment(start=1.0, end=2.0, emotion=name("sad")),
        Segment(start=2.0, end=3.5, emotion=name("surprised")),
    )
    weights = segment_weights(segs, 120, fps, 0.5)
    assert np.all(weights.sum(axis=0) <= 1.0 + 1e-12)
    # around the shared boundary the two weights sum to 1: no detour through the base
    t = np.arange(120) / fps
    near = (t > 1.8) & (t < 2.2)
    np.testing.assert_allclose(weights[:, near].sum(axis=0), 1.0, atol=1e-12)
    plan = build_plan(make_job(segs, transition=0.5, fps=fps), 120, fps, DictResolver())
    jump = np.abs(VECTORS["surprised"] - VECTORS["sad"]).max()
    assert np.abs(np.diff(plan.expression[50:70], axis=0)).max() <= jump * (math.pi / 2) / (0.5 * fps) + 1e-5


def test_segment_at_clip_edges_has_no_fade_and_short_segments_stay_bounded() -> None:
    segs = (Segment(start=0.0, end=1.0, emotion=name("sad")), Segment(start=3.0, emotion=name("happy")))
    plan = build_plan(make_job(segs, transition=0.4), 100, 25.0, DictResolver())
    np.testing.assert_allclose(plan.expression[0], VECTORS["sad"], atol=1e-5)  # full at t=0
    np.testing.assert_allclose(plan.expression[99], VECTORS["happy"], atol=1e-5)  # full at the end
    # a segment shorter than the transition never exceeds full weight and stays continuous
    short = (
        Segment(start=1.0, end=1.12, emotion=name("happy")),
        Segment(start=1.12, end=1.2, emotion=name("sad")),
    )
    weights = segment_weights(short, 60, 25.0, 0.4)
    assert np.all(weights >= 0) and np.all(weights.sum(axis=0) <= 1.0 + 1e-12)
    assert weights[0].max() < 1.0


def test_extension_modes() -> None:
    np.testing.assert_array_equal(extend_indices(4, 11, "loop"), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2])
    np.testing.assert_array_equal(extend_indices(4, 11, "pingpong"), [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2])
    np.testing.assert_array_equal(extend_indices(4, 7, "hold"), [0, 1, 2, 3, 3, 3, 3])
    np.testing.assert_array_equal(extend_indices(1, 3, "pingpong"), [0, 0, 0])
    np.testing.assert_array_equal(extend_indices(2, 5, "pingpong"), [0, 1, 0, 1, 0])
    # a track started at frame 3 holds its first frame before that
    np.testing.assert_array_equal(extend_indices(3, 8, "loop", offset=3), [0, 0, 0, 0, 1, 2, 0, 1])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("loop", [0, 1, 2, 0, 1, 2, 0, 1]),
        ("pingpong", [0, 1, 2, 1, 0, 1, 2, 1]),
        ("hold", [0, 1, 2, 2, 2, 2, 2, 2]),
    ],
)
def test_pose_track_extended_in_plan(mode: str, expected: list[int]) -> None:
    track = np.arange(18, dtype=np.float64).reshape(3, 6)
    pose = PoseSpec(kind="video", path=Path("/nod.mp4"), mode=mode)
    plan = build_plan(make_job(pose=pose), 8, 25.0, DictResolver({"nod.mp4": track}))
    np.testing.assert_allclose(plan.pose, track[expected], atol=1e-6)


def test_segment_reference_starts_at_segment_start() -> None:
    track = np.arange(24, dtype=np.float64).reshape(4, 6)
    segs = (Segment(start=0.4, end=0.8, pose=PoseSpec(kind="track", path=Path("/t.npy"), mode="hold")),)
    plan = build_plan(make_job(segs), 25, 25.0, DictResolver({"t.npy": track}))
    np.testing.assert_allclose(plan.pose[:10], np.tile(STATIC_POSE, (10, 1)), atol=1e-6)
    np.testing.assert_allclose(plan.pose[10:20], track[[0, 1, 2, 3, 3, 3, 3, 3, 3, 3]], atol=1e-6)
    np.testing.assert_allclose(plan.pose[20:], np.tile(STATIC_POSE, (5, 1)), atol=1e-6)
    # expression untouched by a pose-only segment
    np.testing.assert_allclose(plan.expression, np.tile(VECTORS["neutral"], (25, 1)), atol=1e-5)


def test_emotion_video_follows_frames() -> None:
    video = RNG.normal(size=(5, 10))
    spec = EmotionSpec(kind="video", path=Path("/ref.mp4"), mode="pingpong", intensity=1.0)
    plan = build_plan(make_job(emotion=spec), 12, 25.0, DictResolver({"ref.mp4": video}))
    np.testing.assert_allclose(plan.expression, video[[0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]], atol=1e-5)


def test_intensity_scales_towards_neutral_or_zero() -> None:
    n, h = VECTORS["neutral"], VECTORS["happy"]
    plan = build_plan(make_job(emotion=name("happy", 0.5)), 3, 25.0, DictResolver())
    np.testing.assert_allclose(plan.expression[0], n + 0.5 * (h - n), atol=1e-5)
    plan0 = build_plan(make_job(emotion=name("happy", 0.0)), 3, 25.0, DictResolver())
    np.testing.assert_allclose(plan0.expression[0], n, atol=1e-5)
    plan2 = build_plan(make_job(emotion=name("happy", 1.5)), 3, 25.0, DictResolver())
    np.testing.assert_allclose(plan2.expression[0], n + 1.5 * (h - n), atol=1e-5)
    # without a neutral vector intensity scales the raw coefficients
    plan_raw = build_plan(make_job(emotion=name("happy", 0.5)), 3, 25.0, DictResolver(neutral=False))
    np.testing.assert_allclose(plan_raw.expression[0], 0.5 * h, atol=1e-5)
    np.testing.assert_allclose(apply_intensity(h[None], 0.25, n)[0], 0.75 * n + 0.25 * h)


def test_blend_weights_normalised_then_intensity() -> None:
    h, s, n = VECTORS["happy"], VECTORS["surprised"], VECTORS["neutral"]
    blend = EmotionSpec(
        kind="blend",
        intensity=0.5,
        components=((3.0, name("happy")), (2.0, name("surprised", 0.5))),  # unnormalised on purpose
    )
    plan = build_plan(make_job(emotion=blend), 2, 25.0, DictResolver())
    mix = 0.6 * h + 0.4 * (n + 0.5 * (s - n))
    np.testing.assert_allclose(plan.expression[1], n + 0.5 * (mix - n), atol=1e-5)


def test_plan_from_a_real_manifest(tmp_path: Path) -> None:
    for f in ("face.png", "voice.wav"):
        (tmp_path / f).write_bytes(b"x")
    (tmp_path / "m.yaml").write_text(
        "version: 1\n"
        "jobs:\n"
        "  - name: vo\n"
        "    source: face.png\n"
        "    audio: voice.wav\n"
        "    fps: 24\n"
        "    transition: 0\n"
        "    emotion: {blend: {happy: 3, sad: 1}, intensity: 0.5}\n"
        "    segments:\n"
        "      - {start: '00:00:01:12', end: '0:02.5', emotion: surprised}\n"
    )
    job = load_manifest(tmp_path / "m.yaml").jobs[0]
    plan = build_plan(job, 72, job.fps, DictResolver())
    n = VECTORS["neutral"]
    base = n + 0.5 * (0.75 * VECTORS["happy"] + 0.25 * VECTORS["sad"] - n)
    # 00:00:01:12 at 24 fps = 1.5 s = frame 36; 0:02.5 = 2.5 s = frame 60
    assert np.flatnonzero(plan.segment_index == 0).tolist() == list(range(36, 60))
    np.testing.assert_allclose(plan.expression[35], base, atol=1e-5)
    np.testing.assert_allclose(plan.expression[36], VECTORS["surprised"], atol=1e-5)
    np.testing.assert_allclose(plan.expression[60], base, atol=1e-5)


def test_bad_resolver_shapes_are_reported() -> None:
    class Bad(DictResolver):
        def pose_coeffs(self, spec: PoseSpec) -> np.ndarray:
            return np.zeros((3, 5))

    with pytest.raises(ValueError, match=r"shape \(K, 6\)"):
        build_plan(make_job(), 4, 25.0, Bad())


def test_segment_emotion_reference_starts_at_segment_start() -> None:
    """A segment's reference clip plays from its own first frame at the segment's first frame."""
    clip = RNG.normal(size=(3, 10))
    ref = EmotionSpec(kind="video", path=Path("/ref.mp4"), mode="loop")
    segs = (Segment(start=0.4, end=0.8, emotion=ref),)  # frames 10 .. 19
    plan = build_plan(make_job(segs), 25, 25.0, DictResolver({"ref.mp4": clip}))
    np.testing.assert_allclose(plan.expression[10:20], clip[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]], atol=1e-5)
    np.testing.assert_allclose(plan.expression[:10], np.tile(VECTORS["neutral"], (10, 1)), atol=1e-5)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_intensity_scales_reference_emotions_towards_neutral(kind: str) -> None:
    """Intensity applies to an emotion read off a reference as it does to a model emotion."""
    n = VECTORS["neutral"]
    ref = RNG.normal(0, 3, size=(4 if kind == "video" else 1, 10))
    spec = EmotionSpec(kind=kind, path=Path("/ref"), mode="hold", intensity=0.5)
    segment_spec = EmotionSpec(kind=kind, path=Path("/ref"), mode="hold", intensity=0.25)
    segs = (Segment(start=0.4, emotion=segment_spec),)  # frames 10 .. 11
    plan = build_plan(make_job(segs, emotion=spec), 12, 25.0, DictResolver({"ref": ref}))
    base = ref[np.minimum(np.arange(10), len(ref) - 1)]  # held from frame 0
    segment = ref[np.minimum(np.arange(2), len(ref) - 1)]  # from frame 10
    np.testing.assert_allclose(plan.expression[:10], n + 0.5 * (base - n), atol=1e-5)
    np.testing.assert_allclose(plan.expression[10:], n + 0.25 * (segment - n), atol=1e-5)


def test_the_job_resolver_scales_intensity_towards_the_models_neutral(tiny_weights: Path) -> None:
    """Through the renderer's own resolver: intensity 0 is the model's neutral vector, not zeros."""
    from edtalk_cli.pipeline.engine import CoefficientTrack
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.weights.bundle import ModelBundle

    bundle = ModelBundle.from_dir(tiny_weights, "edtalk")
    n, h = bundle.emotions["neutral"].astype(np.float64), bundle.emotions["happy"].astype(np.float64)
    assert np.linalg.norm(n) > 1  # a neutral far from zero tells the two rules apart
    source = CoefficientTrack(mouth=np.zeros((1, 20)), pose=np.zeros((1, 6)), expression=np.zeros((1, 10)))
    renderer = JobRenderer(bundle)
    for intensity in (0.0, 0.5):
        plan = renderer.plan(make_job(emotion=name("happy", intensity)), 3, source)
        np.testing.assert_allclose(plan.expression, np.tile(n + intensity * (h - n), (3, 1)), atol=1e-5)
