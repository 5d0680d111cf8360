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


def resize_to_frame(face: np.ndarray, height: int, width: int) -> np.ndarray:
    """The inverse of :func:`resize_square`: a model-size face back to the source's (height, width)."""
    if face.shape[:2] == (height, width):
        return face
    return np.asarray(Image.fromarray(face).resize((width, height), Image.BICUBIC))


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


class VideoFaceSource:
    """A video source for dubbing, streamed from disk instead of held in memory.

    Pass 1 (constructor, ``crop="auto"``) tracks the face over the whole clip, one decoded
    frame at a time. Frames are then served by index: sequential reads stream from the
    decoder, a read behind the decoder restarts it, and the most recent frames are kept in
    a bounded cache so ping-pong playback of short clips is served from memory.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        size: int,
        crop: str = "auto",
        detector: FaceDetector | None = None,
        cache_bytes: int = 1 << 30,
    ) -> None:
        from edtalk_cli.video import probe_video

        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.info = probe_video(self.path)
        self.num_frames = self.info.frames_at(fps)
        frame_bytes = max(1, self.info.width * self.info.height * 3)
        self._cache_frames = max(2, cache_bytes // frame_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._iter = None
        self._pos = 0  # index of the next frame the decoder yields
        self.transforms: list[CropTransform] | None = None
        self.missing_frames = 0
        if crop == "auto":
            detector = detector or FaceDetector()
            track = track_faces(self._stream(), detector, every=TRACK_EVERY, source=self.path)
            shape = (self.info.height, self.info.width, 3)
            boxes = track.crop_boxes(shape, fixed_size=True)
            self.transforms = [CropTransform.from_box(box, shape, size) for box in boxes]
            self.missing_frames = track.missing_frames
            self.num_frames = min(self.num_frames, len(self.transforms))

    def _stream(self):
        from edtalk_cli.video import iter_video_frames

        return iter_video_frames(self.path, fps=self.fps)

    def frame(self, index: int) -> np.ndarray:
        """Full-resolution RGB frame ``index`` (at the job fps)."""
        if index in self._cache:
            return self._cache[index]
        if self._iter is None or index < self._pos:
            self._iter, self._pos = self._stream(), 0
        while True:
            try:
                frame = next(self._iter)
            except StopIteration:
                raise IndexError(f"frame {index} is past the end of '{self.path}'") from None
            self._cache[self._pos] = frame
            if len(self._cache) > self._cache_frames:
                self._cache.pop(next(iter(self._cache)))  # oldest first (dicts keep insertion order)
            self._pos += 1
            if self._pos - 1 == index:
                return frame

    def crop(self, index: int) -> np.ndarray:
        """Model-size face crop of frame ``index``."""
        frame = self.frame(index)
        if self.transforms is None:
            return resize_square(frame, self.size)
        return crop_face(frame, self.transforms[index], self.size)

    def crops(self, indices) -> np.ndarray:
        return np.stack([self.crop(int(i)) for i in indices])
