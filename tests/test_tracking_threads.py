"""A video's face is tracked in spans on several threads with exactly the one-thread result, on real
footage: face gaps and a second, larger face at span starts included; dlib detectors used from
several threads at once find what they find one at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edtalk_cli.pipeline.faces import TRACK_SPAN, crop_key, track_video
from edtalk_cli.video import FaceDetector, read_video, track_faces
from edtalk_cli.video.faces import FaceTrack, track_landmarks

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return read_video(REAL / "mouth_source.mp4", fps=25, max_frames=60)


def _same(one: FaceTrack, other: FaceTrack) -> None:
    assert np.array_equal(one.found, other.found)
    assert one.missing_frames == other.missing_frames
    assert np.array_equal(one.raw, other.raw, equal_nan=True)
    assert np.array_equal(one.boxes, other.boxes)
    if one.landmarks is None:
        assert other.landmarks is None
    else:
        assert np.array_equal(one.landmarks, other.landmarks, equal_nan=True)


def _canvas(frames: int) -> np.ndarray:
    canvas = np.empty((frames, 400, 640, 3), np.uint8)
    canvas[:] = (80, 96, 112)
    return canvas


def test_detectors_in_two_threads_at_once_find_what_each_finds_alone(clip: np.ndarray) -> None:
    other = read_video(REAL / "pose_source2.mp4", fps=25, max_frames=60)
    inputs = [clip, other]

    def detect(frames: np.ndarray) -> list:
        detector = FaceDetector("dlib")  # each thread its own, as the runner's preparing thread has
        return [
            (detector.detect_faces(f), detector.landmarks(f, detector.detect_faces(f)[0])) for f in frames
        ]

    alone = [detect(frames) for frames in inputs]
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(detect, inputs))
        for got, want in zip(together, alone):
            assert [boxes for boxes, _ in got] == [boxes for boxes, _ in want]
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want))


@pytest.mark.parametrize("threads", [2, 4])
def test_spans_tracked_in_threads_give_the_one_thread_track(clip: np.ndarray, threads: int) -> None:
    # the face leaves across two span starts (frames 20 and 40 with spans of 10) and for one frame
    blank = set(range(18, 23)) | set(range(39, 44)) | {50}
    frames = _canvas(len(clip))
    for t, face in enumerate(clip):
        if t not in blank:
            frames[t, 60:316, 40 + 3 * t : 296 + 3 * t] = face
    detector = FaceDetector("dlib")
    one = track_landmarks(iter(frames), detector, detect_every=10, span=10)
    assert np.flatnonzero(~one.found).tolist() == sorted(blank)
    _same(one, track_landmarks(iter(frames), detector, detect_every=10, span=10, threads=threads))
    boxes = track_faces(iter(frames), detector, every=5, span=10)
    _same(boxes, track_faces(iter(frames), detector, every=5, span=10, threads=threads))
    assert not boxes.found[20] and boxes.found[45]


def test_a_span_starting_beside_a_larger_face_keeps_the_followed_one(clip: np.ndarray) -> None:
    import cv2

    small = np.stack([cv2.resize(face, (170, 170), interpolation=cv2.INTER_AREA) for face in clip[:40]])
    frames = _canvas(len(small))
    for t in range(len(small)):
        frames[t, 120:290, 20:190] = small[t]  # followed from the first frame
        if t >= 15:  # a larger face joins before the span starting at frame 20
            frames[t, 100:356, 360:616] = clip[len(clip) - 1 - t]
    detector = FaceDetector("dlib")
    assert detector.detect_faces(frames[20])[0].x0 > 300  # a fresh track would take the larger one
    one = track_landmarks(iter(frames), detector, detect_every=10, span=10)
    assert one.found.all() and (one.landmarks[..., 0] < 200).all()
    _same(one, track_landmarks(iter(frames), detector, detect_every=10, span=10, threads=3))
    boxes = track_faces(iter(frames), detector, every=5, span=10)
    assert (boxes.boxes[:, 2] < 250).all()
    _same(boxes, track_faces(iter(frames), detector, every=5, span=10, threads=3))


def test_a_video_tracked_with_threads_gives_the_one_thread_crops() -> None:
    detector = FaceDetector("dlib")
    source = REAL / "pose_source2.mp4"
    one = track_video(source, 25, "auto", detector, limit=2 * TRACK_SPAN + 7, threads=1)
    assert len(one) == 2 * TRACK_SPAN + 7 and one.found.all()
    _same(one, track_video(source, 25, "auto", detector, limit=2 * TRACK_SPAN + 7, threads=2))
    assert crop_key("auto", detector)["tracking"]["span"] == TRACK_SPAN
