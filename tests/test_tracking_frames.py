"""A dubbing source's face is tracked on its own cheap decode (grey, scaled down to TRACK_MAX_SIDE), and
the track comes back in full-frame pixels, agreeing with a fit on the full-resolution RGB frames."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from edtalk_cli.pipeline.faces import (
    ALIGN_DETECT_EVERY,
    TRACK_EVERY,
    TRACK_MAX_SIDE,
    VideoFaceSource,
    crop_key,
    tracking_size,
)
from edtalk_cli.video import CropTransform, FaceDetector, read_video, track_faces
from edtalk_cli.video.boxes import backend_image
from edtalk_cli.video.faces import FaceTrack, track_landmarks

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
FRAMES = 30
# the real 256-px head scaled to FACE px and placed at (X0, Y0) of a 1920x1080 grey-blue canvas
FACE, X0, Y0 = 540, 700, 270
MOUTH = slice(48, 68)


class RecordingDetector(FaceDetector):
    """The real dlib detector, recording the shape of every frame it scans in full."""

    def __init__(self) -> None:
        super().__init__("dlib")
        self.shapes: list[tuple[int, ...]] = []

    def detect_faces(self, image: np.ndarray):
        self.shapes.append(image.shape)
        return super().detect_faces(image)


@pytest.fixture(scope="module")
def canvas_1080p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tracking") / "actor_1080p.mp4"
    graph = f"color=c=0x506070:s=1920x1080:r=25[bg];[0:v]fps=25,scale={FACE}:{FACE}[f];[bg][f]overlay={X0}:{Y0}:shortest=1"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(REAL / "pose_source2.mp4")]
    cmd += ["-frames:v", str(FRAMES), "-filter_complex", graph, "-an", "-c:v", "libx264", "-crf", "16"]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_a_1080p_source_is_tracked_downscaled_and_agrees_with_the_full_resolution_fit(
    canvas_1080p: Path,
) -> None:
    detector = RecordingDetector()
    source = VideoFaceSource(canvas_1080p, fps=25, size=256, crop="auto", detector=detector)
    width, height = tracking_size(1920, 1080)
    assert max(width, height) == TRACK_MAX_SIDE < 1920
    # the detector saw grey frames of the tracking size only
    assert detector.shapes and set(detector.shapes) == {(height, width)}

    frames = read_video(canvas_1080p, fps=25)
    reference = track_landmarks(iter(frames), FaceDetector("dlib"), detect_every=ALIGN_DETECT_EVERY)
    assert source.found.all() and np.array_equal(source.found, reference.found)
    # landmarks in full-frame pixels, within the fit's own noise of the full-resolution RGB fit
    # (measured: 1.1 px mean, 1.5 px max per frame; the fit's own box floor at 1080p is 1.0 px)
    per_frame = np.linalg.norm(source.landmarks - reference.landmarks, axis=2).mean(axis=1)
    assert per_frame.mean() < 2.0 and per_frame.max() < 3.0

    # the mouth lands where the actor's mouth is in the full frame: the 256-px clip's own fit, placed
    clip = read_video(REAL / "pose_source2.mp4", fps=25, max_frames=FRAMES)
    own = track_landmarks(iter(clip), FaceDetector("dlib"), detect_every=ALIGN_DETECT_EVERY)
    expected = (own.landmarks[:, MOUTH].mean(axis=1) + 0.5) * FACE / 256 - 0.5 + (X0, Y0)
    mouth = source.landmarks[:, MOUTH].mean(axis=1)
    error = np.linalg.norm(mouth - expected, axis=1)
    assert error.mean() < 1.5 and error.max() < 3.0  # measured 0.7 / 1.5 (the RGB fit: 0.8 / 1.8)


def test_a_box_crop_of_a_1080p_source_is_tracked_downscaled(canvas_1080p: Path) -> None:
    detector = RecordingDetector()
    source = VideoFaceSource(canvas_1080p, fps=25, size=256, crop="box", detector=detector)
    assert set(detector.shapes) == {tuple(reversed(tracking_size(1920, 1080)))}
    frames = read_video(canvas_1080p, fps=25)
    dlib = FaceDetector("dlib")
    reference = track_faces(iter(frames), dlib, every=TRACK_EVERY)
    assert source.found.all() and np.array_equal(source.found, reference.found)
    # the HOG box steps by about 35 px here from one examined frame to the next (its 8-px cells in
    # the <= 640-px image it scans): the crop squares agree within one such step, the sides within 1 %
    boxes = reference.crop_boxes(frames.shape[1:], fixed_size=True, framing=dlib.framing)
    expected = [CropTransform.from_box(b, frames.shape[1:], 256) for b in boxes]
    corners = np.array([[t.x0 - e.x0, t.y0 - e.y0] for t, e in zip(source.transforms, expected)])
    assert np.abs(corners).max() <= 40 and np.abs(corners).mean() < 5
    assert all(abs(t.side - e.side) <= 0.01 * e.side for t, e in zip(source.transforms, expected))


def test_small_sources_are_tracked_at_their_own_size() -> None:
    assert tracking_size(800, 450) is None and tracking_size(TRACK_MAX_SIDE, 300) is None
    assert tracking_size(1920, 1080) == (TRACK_MAX_SIDE, round(1080 * TRACK_MAX_SIDE / 1920))
    assert tracking_size(1080, 1920) == (round(1080 * TRACK_MAX_SIDE / 1920), TRACK_MAX_SIDE)


def test_a_track_maps_to_the_full_frame_with_pixel_centres() -> None:
    points = np.zeros((1, 68, 2))
    points[0, 1] = (9.0, 4.0)
    track = FaceTrack(
        boxes=np.array([[10.0, 20.0, 30.0, 40.0]]),
        raw=np.array([[10.0, 20.0, 30.0, 40.0]]),
        found=np.ones(1, bool),
        missing_frames=0,
        backend="dlib",
        landmarks=points,
    )
    full = track.rescaled(2.0, 1.5)
    # pixel centres: x -> (x + 0.5) * 2 - 0.5, y -> (y + 0.5) * 1.5 - 0.5
    assert full.landmarks[0, 0].tolist() == [0.5, 0.25] and full.landmarks[0, 1].tolist() == [18.5, 6.25]
    # box edges (x1 = last pixel + 1) scale as they are: the same pixels, twice as wide
    assert full.boxes[0].tolist() == [20.0, 30.0, 60.0, 60.0] and full.raw[0].tolist() == [
        20.0,
        30.0,
        60.0,
        60.0,
    ]


def test_the_cascade_takes_grey_frames() -> None:
    import cv2
    from skimage import data

    cascade = FaceDetector("cascade")
    rgb = data.astronaut()
    assert cascade.takes_grey
    assert cascade.detect_faces(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)) == cascade.detect_faces(rgb) != []


def test_dlib_fits_grey_frames_as_they_are() -> None:
    detector = FaceDetector("dlib")
    assert detector.takes_grey
    grey = np.ascontiguousarray(read_video(REAL / "pose_source2.mp4", max_frames=1)[0, :, :, 1])
    assert backend_image(grey, takes_grey=True) is grey  # no 3-channel copy
    assert backend_image(grey, takes_grey=False).shape == (*grey.shape, 3)
    box = detector.detect_face(grey)
    as_rgb = np.repeat(grey[..., None], 3, axis=2)
    # the same face box (the HOG score differs in the last digits) and the same landmarks
    assert np.array_equal(box.as_array(), detector.detect_face(as_rgb).as_array())
    assert np.array_equal(detector.landmarks(grey, box), detector.landmarks(as_rgb, box))


def test_cached_crops_name_the_tracking_frames() -> None:
    detector = FaceDetector("dlib")
    frames = {"pix_fmt": "gray", "max_side": TRACK_MAX_SIDE, "scale": "area"}
    assert crop_key("auto", detector)["frames"] == frames
    assert crop_key("box", detector)["frames"] == frames
    assert "frames" not in crop_key("none", None)
