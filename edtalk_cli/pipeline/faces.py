"""From media files to model-size face crops (sources and reference clips)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edtalk_cli.video import (
    CropTransform,
    FaceDetector,
    crop_box_for_face,
    crop_face,
    find_face,
    is_video_path,
    read_image,
    read_video,
    track_faces,
)

TRACK_EVERY = 5  # detect on every 5th frame of a reference clip and interpolate between


@dataclass
class FaceCrops:
    """Face crops (K, S, S, 3) uint8 of an image (K=1) or a video resampled to ``fps``."""

    crops: np.ndarray
    transforms: list[CropTransform] | None  # None when crop == "none"
    frames: np.ndarray | None  # the original frames, kept only when asked for (paste-back)
    missing_frames: int = 0
    is_video: bool = False


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a whole image to (size, size) with PIL bicubic, as the official demos do."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def face_crops(
    path: str | Path,
    *,
    size: int,
    fps: float | None = None,
    crop: str = "auto",
    detector: FaceDetector | None = None,
    keep_frames: bool = False,
    max_frames: int | None = None,
) -> FaceCrops:
    """Decode ``path`` (image or video, resampled to ``fps``) and cut a face crop per frame.

    ``crop="auto"`` detects (images) or tracks (videos) the face; ``"none"`` resizes the
    whole frame, for inputs that are already face crops.
    """
    path = Path(path)
    video = is_video_path(path)
    frames = read_video(path, fps=fps, max_frames=max_frames) if video else read_image(path)[None]
    if crop == "none":
        crops = np.stack([resize_square(f, size) for f in frames])
        return FaceCrops(crops, None, frames if keep_frames else None, 0, video)
    detector = detector or FaceDetector()
    if video:
        track = track_faces(iter(frames), detector, every=TRACK_EVERY, source=path)
        boxes = track.crop_boxes(frames.shape[1:], fixed_size=True)
        missing = track.missing_frames
    else:
        boxes = [crop_box_for_face(find_face(frames[0], path, detector), frames.shape[1:])]
        missing = 0
    transforms = [CropTransform.from_box(box, frames.shape[1:], size) for box in boxes]
    crops = np.stack([crop_face(f, t, size) for f, t in zip(frames, transforms)])
    return FaceCrops(crops, transforms, frames if keep_frames else None, missing, video)
