"""Batched torch paste-back (the GPU path) against the per-frame OpenCV path, on CPU torch, real footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edtalk_cli.manifest.model import PasteBack
from edtalk_cli.pipeline.paste import FacePaster
from edtalk_cli.video import FaceDetector, read_image
from edtalk_cli.video.align import AlignTransform, official_transform, paste_back, warp_to_crop
from edtalk_cli.video.crop import CropTransform, crop_face
from edtalk_cli.video.masks import match_color, region_mask
from edtalk_cli.video.torch_paste import match_color_batch, paste_back_batch, pil_bicubic_resize

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
PHOTO = REAL / "uncrop_face.jpg"
SIZE = 256
# measured on this footage: at most 1 level apart (rounding at .5 of float32 sums), on < 0.1 % of
# the pasted box's pixels
MAX_LEVELS = 2
MAX_OFF_BY_MORE_THAN_ONE = 1e-4


@pytest.fixture(scope="module")
def scenes() -> dict[str, tuple[np.ndarray, AlignTransform, np.ndarray]]:
    """(frame, transform, frame landmarks (68, 2)) of the real photo: upright, rotated by 25 degrees
    (landmarks detected again), and shifted so the face crop leaves the frame on the left."""
    detector = FaceDetector("dlib")
    photo = read_image(PHOTO)

    def found(image: np.ndarray) -> tuple[np.ndarray, AlignTransform, np.ndarray]:
        box = detector.detect_face(image)
        assert box is not None
        landmarks = detector.landmarks(image, box)
        return image, official_transform(landmarks, image.shape, SIZE), landmarks

    upright = found(photo)
    h, w = photo.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 25.0, 1.0)
    rotated = found(
        cv2.warpAffine(photo, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    )
    frame, t, landmarks = upright
    dx = int(t.to_image(np.array([[SIZE / 2, SIZE / 2]]))[0, 0])  # the crop centre's column
    matrix = t.matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([dx, 0.0])  # the same face in the frame cut at column dx
    cut = np.ascontiguousarray(frame[:, dx:])
    edge = (cut, AlignTransform(matrix, SIZE, cut.shape[:2]), landmarks - [dx, 0.0])
    assert edge[1].frame_bbox()[0] == 0  # the face crop touches the frame's left edge
    return {"upright": upright, "rotated": rotated, "edge": edge}


def generated(
    frame: np.ndarray, transform: AlignTransform, side: int = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(a stand-in generated face, the source crop): the crop moved 3 px, darker and warmer."""
    crop = warp_to_crop(frame, transform)
    moved = np.roll(crop, 3, axis=0).astype(np.float64) * [0.85, 0.8, 0.7] + [20, 10, 0]
    face = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    if side != SIZE:
        face = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return face, crop


def assert_parity(expected: list[np.ndarray], actual: list[np.ndarray], frames: list[np.ndarray]) -> None:
    for want, got, frame in zip(expected, actual, frames):
        assert got.dtype == np.uint8 and got.shape == want.shape
        diff = np.abs(want.astype(np.int16) - got.astype(np.int16))
        changed = np.any(want != frame, axis=2)
        assert changed.sum() > 5000  # the face was really pasted
        assert diff.max() <= MAX_LEVELS
        assert (diff > 1).mean() <= MAX_OFF_BY_MORE_THAN_ONE
        assert (diff > 0).mean() < 1e-3
        # where the CPU path left the frame as it was, so does the torch path, bit for bit
        untouched = ~changed
        assert np.array_equal(got[untouched], frame[untouched])


@pytest.mark.parametrize("region", ["face", "lower", "mouth"])
@pytest.mark.parametrize("color_match", [False, True])
def test_torch_batch_equals_the_opencv_path(scenes, region: str, color_match: bool) -> None:
    names = ["upright", "rotated", "edge"]
    frames = [scenes[n][0] for n in names]
    transforms = [scenes[n][1] for n in names]
    cpu = FacePaster(PasteBack(region=region, color_match=color_match), SIZE, on_device=False)
    on_torch = FacePaster(
        PasteBack(region=region, color_match=color_match), SIZE, device="cpu", on_device=True
    )
    landmarks = [cpu.crop_landmarks(t, scenes[n][2]) for n, t in zip(names, transforms)]
    # each frame its own size: batches are of one frame size, so paste one frame per batch
    for frame, t, lm in zip(frames, transforms, landmarks):
        face, crop = generated(frame, t)
        faces = np.stack([face, np.flipud(face)])  # a batch of two different faces into one frame
        want = [cpu.paste(frame, f, t, landmarks=lm, reference=crop) for f in faces]
        got = on_torch.paste_many([frame, frame], faces, [t, t], landmarks=[lm, lm], references=[crop, crop])
        assert_parity(want, got, [frame, frame])


def test_enhanced_size_faces_and_a_batch_of_different_transforms(scenes) -> None:
    """Faces twice the model size (as after enhancement), frames of one size with three placements."""
    frame, t, lm = scenes["upright"]
    shifted = []
    for dx, dy in [(0, 0), (37, -21), (-60, 15)]:
        m = t.matrix.copy()
        m[:, 2] -= m[:, :2] @ np.array([dx, dy], dtype=np.float64)
        shifted.append(AlignTransform(m, SIZE, t.image_shape))
    cpu = FacePaster(PasteBack(region="mouth", color_match=True), SIZE)
    on_torch = FacePaster(PasteBack(region="mouth", color_match=True), SIZE, device="cpu", on_device=True)
    marks = [cpu.crop_landmarks(s, lm + 0.0) for s in shifted]
    pairs = [generated(frame, s, 2 * SIZE) for s in shifted]
    want = [cpu.paste(frame, f, s, landmarks=m, reference=c) for (f, c), s, m in zip(pairs, shifted, marks)]
    got = on_torch.paste_many(
        [frame] * 3,
        np.stack([f for f, _ in pairs]),
        shifted,
        landmarks=marks,
        references=[c for _, c in pairs],
    )
    assert_parity(want, got, [frame] * 3)
    assert not np.array_equal(got[0], got[1])


def test_square_crop_paste_back_equals_the_pillow_path(scenes) -> None:
    """crop: box (integer squares, Pillow bicubic resize), one square leaving the frame at the top left."""
    frame = scenes["upright"][0]
    squares = [
        CropTransform(300, 260, 390, SIZE, frame.shape[:2]),
        CropTransform(-40, -25, 300, SIZE, frame.shape[:2]),
    ]
    faces = np.stack([np.roll(crop_face(frame, s, SIZE), 4, axis=1) for s in squares])
    cpu = FacePaster(PasteBack(), SIZE)
    on_torch = FacePaster(PasteBack(), SIZE, device="cpu", on_device=True)
    want = [cpu.paste(frame, f, s) for f, s in zip(faces, squares)]
    got = on_torch.paste_many([frame, frame], faces, squares)
    assert_parity(want, got, [frame, frame])


def test_pillow_bicubic_resize_is_exact() -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    for side in (31, 64, 97, 250):
        want = np.stack([np.asarray(Image.fromarray(i).resize((side, side), Image.BICUBIC)) for i in images])
        got = pil_bicubic_resize(tensor, side).permute(0, 2, 3, 1).to(torch.uint8).numpy()
        assert np.array_equal(got, want)


def test_colour_match_batch_follows_opencv_lab(scenes) -> None:
    frame, t, lm = scenes["rotated"]
    face, crop = generated(frame, t)
    mask = region_mask("lower", SIZE, 12.8, FacePaster(PasteBack(), SIZE).crop_landmarks(t, lm))
    want = match_color(face, crop, mask)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None].permute(0, 3, 1, 2).float()  # noqa: E731
    got = match_color_batch(as_tensor(face), as_tensor(crop), torch.from_numpy(mask)[None])
    got = got.permute(0, 2, 3, 1)[0].to(torch.uint8).numpy()
    diff = np.abs(want.astype(np.int16) - got)
    assert np.abs(want.astype(np.int16) - face).mean() > 5  # the match moved the colours
    assert diff.max() <= 1 and (diff > 0).mean() < 3e-3  # measured: 0.12 % of values 1 level apart
    # an all-zero mask leaves the face as it is
    still = match_color_batch(as_tensor(face), as_tensor(crop), torch.zeros(1, SIZE, SIZE))
    assert np.array_equal(still.permute(0, 2, 3, 1)[0].to(torch.uint8).numpy(), face)


def test_bad_batches_are_refused(scenes) -> None:
    frame, t, _ = scenes["upright"]
    face = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match="give one of each"):
        paste_back_batch([frame, frame], face, [t])
    with pytest.raises(ValueError, match="frame is"):
        paste_back_batch([frame[:-1]], face, [t])
    with pytest.raises(ValueError, match="uint8"):
        paste_back_batch([frame], torch.zeros(1, SIZE, SIZE, 3), [t])


def test_a_mask_reaching_the_crop_border_stays_inside_each_frames_own_box(scenes) -> None:
    """An all-ones mask on large crops (0.4 crop px per frame px), two placements in one batch: the
    same frames as align.paste_back up to the square's border."""
    frame = scenes["upright"][0]
    turn = 0.4 * np.eye(2)
    transforms = [
        AlignTransform(np.column_stack([turn, [127.5, 127.5] - turn @ centre]), SIZE, frame.shape[:2])
        for centre in (np.array([420.3, 500.6]), np.array([400.8, 520.2]))
    ]
    faces = np.stack([generated(frame, s)[0] for s in transforms])
    ones = np.ones((SIZE, SIZE), np.float32)
    want = [paste_back(frame, f, s, ones) for f, s in zip(faces, transforms)]
    got = paste_back_batch([frame, frame], faces, transforms, ones)
    assert_parity(want, got, [frame, frame])


@pytest.mark.parametrize("region", ["face", "mouth"])
def test_dubbing_batch_on_the_device_equals_frame_by_frame(tmp_path: Path, region: str) -> None:
    """DubbingPaster.frames of a real clip's frames (crop: auto) through torch against the CPU path."""
    from edtalk_cli.pipeline.faces import VideoFaceSource
    from edtalk_cli.pipeline.paste import DubbingPaster

    options = PasteBack(region=region, color_match=True)
    source = VideoFaceSource(REAL / "mouth_source.mp4", fps=25, size=SIZE, crop="auto", max_frames=4)
    ids = [0, 1, 2, 3, 2]  # a repeated frame, as a ping-pong loop gives
    crops = source.crops(ids)
    faces = np.stack([np.roll(c, 4, axis=0) // 2 + 60 for c in crops])  # a dimmer, shifted face
    cpu = DubbingPaster(source, options, SIZE)
    on_torch = DubbingPaster(source, options, SIZE, device="cpu", on_device=True)
    want = list(cpu.frames(ids, faces, crops))
    got = list(on_torch.frames(ids, faces, crops))
    assert_parity(want, got, [source.frame(i) for i in ids])
