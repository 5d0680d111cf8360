"""crop: auto face tracking on real footage: the face detector runs every few frames, the landmarks on
every frame, and frames without a face are reported exactly as with a detection on every frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edtalk_cli.pipeline.faces import ALIGN_DETECT_EVERY, crop_key, face_crops
from edtalk_cli.video import FaceDetector, read_video, smooth_transforms, track_faces
from edtalk_cli.video.align import similarity_params
from edtalk_cli.video.boxes import Box
from edtalk_cli.video.faces import track_landmarks

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"


class CountingDetector(FaceDetector):
    """The real dlib detector, recording the frames it scans in full."""

    def __init__(self) -> None:
        super().__init__("dlib")
        self.scanned = 0

    def detect_faces(self, image: np.ndarray):
        self.scanned += 1
        return super().detect_faces(image)


@pytest.fixture(scope="module")
def detector() -> CountingDetector:
    return CountingDetector()


def _on_canvas(clip: np.ndarray, blank: set[int]) -> np.ndarray:
    """The real 256 px clip drifting across a 400x320 grey canvas (2 px right per frame); the
    ``blank`` frames show the canvas alone."""
    frames = np.empty((len(clip), 320, 400, 3), np.uint8)
    frames[:] = (80, 96, 112)
    for t, face in enumerate(clip):
        if t not in blank:
            x = 20 + 2 * t
            frames[t, 30:286, x : x + 256] = face
    return frames


def test_follows_the_face_with_few_detections_and_the_same_landmarks(detector: CountingDetector) -> None:
    frames = read_video(REAL / "mouth_source.mp4", fps=25, max_frames=60)
    detector.scanned = 0
    dense = track_faces(iter(frames), detector, every=1)
    assert detector.scanned == 60
    # the box derived from a frame's landmarks is the one the HOG detector gave (its size steps by 20 %)
    overlap = [detector.box_from_landmarks(p).iou(Box(*r)) for p, r in zip(dense.landmarks, dense.raw)]
    assert np.median(overlap) > 0.8
    detector.scanned = 0
    followed = track_landmarks(iter(frames), detector, detect_every=ALIGN_DETECT_EVERY)
    assert detector.scanned <= math.ceil(60 / ALIGN_DETECT_EVERY) + 2
    assert followed.found.all() and followed.missing_frames == 0
    # landmarks: the difference is the dlib fit's own sensitivity to its box (measured 0.6 px mean)
    per_frame = np.linalg.norm(followed.landmarks - dense.landmarks, axis=2).mean(axis=1)
    assert per_frame.mean() < 1.0 and per_frame.max() < 3.0
    # the smoothed alignment agrees within a fraction of a pixel on average
    shape = frames.shape[1:]
    params = [
        np.stack([similarity_params(t) for t in smooth_transforms(tr.landmarks, tr.found, shape, 256, 2.0)])
        for tr in (dense, followed)
    ]
    centre = np.abs(params[1][:, 2:] - params[0][:, 2:]).max(axis=1)
    assert centre.mean() < 0.4 and np.median(centre) < 0.3
    assert np.abs(np.exp(params[1][:, 0] - params[0][:, 0]) - 1).max() < 0.03


def test_frames_without_a_face_are_reported_as_before(detector: CountingDetector) -> None:
    clip = read_video(REAL / "pose_source2.mp4", fps=25, max_frames=50)
    blank = set(range(14, 27)) | {33}  # the face leaves for 13 frames, then for one frame
    frames = _on_canvas(clip, blank)
    dense = track_faces(iter(frames), detector, every=1)
    followed = track_landmarks(iter(frames), detector, detect_every=ALIGN_DETECT_EVERY)
    assert np.flatnonzero(~dense.found).tolist() == sorted(blank)
    assert np.array_equal(followed.found, dense.found) and followed.missing_frames == len(blank)
    assert np.isnan(followed.landmarks[sorted(blank)]).all()
    assert np.isfinite(followed.landmarks[followed.found]).all()


def test_aligned_video_crops_detect_every_few_frames(detector: CountingDetector) -> None:
    detector.scanned = 0
    crops = face_crops(
        REAL / "mouth_source.mp4", size=64, fps=25, crop="auto", max_frames=40, detector=detector
    )
    assert crops.found.all() and len(crops.transforms) == 40
    assert detector.scanned <= math.ceil(40 / ALIGN_DETECT_EVERY) + 2 <= 40 // 4


def test_cached_crops_name_the_tracking_recipe(detector: CountingDetector) -> None:
    key = crop_key("auto", detector)
    assert key["tracking"]["detect_every"] == ALIGN_DETECT_EVERY
    assert key["tracking"]["follow"]["box"] == "landmarks"
    assert "tracking" not in crop_key("box", detector)
