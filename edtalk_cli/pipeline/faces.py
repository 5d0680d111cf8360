"""From media files to model-size face crops (sources and reference clips).

Crop modes (the manifest's ``crop``):

* ``auto``: the official alignment (:mod:`edtalk_cli.video.align`): 68 landmarks, a similarity
  transform to the EDTalk template, the frame warped into the model size. Videos get landmarks on
  every frame (the face detector itself runs every ``ALIGN_DETECT_EVERY`` frames, the face being
  followed by its landmarks in between) and the per-frame similarity is smoothed over time
  (``smoothing`` frames, sigma).
* ``box``: a square box around the detected face (``crop_video.py`` style), tracked and smoothed
  for videos.
* ``none``: the whole frame resized, for inputs that are already face crops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from edtalk_cli.errors import MediaError
from edtalk_cli.video import (
    CropTransform,
    FaceDetector,
    crop_box_for_face,
    crop_face,
    crop_image,
    find_face,
    find_face_landmarks,
    is_video_path,
    official_transform,
    read_image,
    read_video,
    smooth_transforms,
    track_faces,
)
from edtalk_cli.video.align import ALIGN_POINTS, DEFAULT_SMOOTHING, AlignTransform, AnyTransform
from edtalk_cli.video.faces import FaceTrack, follow_recipe, track_landmarks

CROP_MODES = ("auto", "box", "none")
TRACK_EVERY = 5  # crop: box detects on every 5th frame of a clip and interpolates between
# crop: auto fits landmarks on every frame (per-frame `found` flags); the full-frame detector runs
# on every ALIGN_DETECT_EVERY-th frame and whenever the face is lost, the face being followed by its
# landmarks in between (video.faces.track_landmarks; measured in benchmarks/RESULTS.md)
ALIGN_DETECT_EVERY = 10
# frames tracked past the last one a job uses: covers the smoothing windows (the box size's
# Gaussian reaches 4 x 3 sigma = 24 frames, plus the 5-tap median and the interpolation between
# examined frames), so the used frames' transforms are those of the whole clip
TRACK_MARGIN = 32


@dataclass
class FaceCrops:
    """Face crops (K, S, S, 3) uint8 of an image (K=1) or a video resampled to ``fps``.

    ``transforms``: per crop an :class:`~edtalk_cli.video.align.AlignTransform` (``crop: auto``)
    or a :class:`~edtalk_cli.video.crop.CropTransform` (``crop: box``); None for ``crop: none``.
    ``landmarks`` (K, 68, 2) frame pixels, NaN where no face (``crop: auto`` only, else None);
    ``found`` (K,) bool, True where a face was found (None for ``crop: none``).
    """

    crops: np.ndarray
    transforms: list[AnyTransform] | None  # None when crop == "none"
    frames: np.ndarray | None  # the original frames, kept only when asked for (paste-back)
    missing_frames: int = 0
    is_video: bool = False
    landmarks: np.ndarray | None = None
    found: np.ndarray | None = None


def crop_key(crop: str, detector: FaceDetector | None) -> dict[str, object]:
    """What a crop depends on besides the file and size, for cache keys: mode, detector backend,
    and for ``auto`` the alignment recipe and its smoothing (``detector`` may be None for ``none``)."""
    if crop == "none" or detector is None:
        return {"crop": crop, "detector": None}
    key: dict[str, object] = {"crop": crop, "detector": detector.backend}
    if crop == "auto":
        key["alignment"] = {"template": "M003", "points": ALIGN_POINTS, "smoothing": DEFAULT_SMOOTHING}
        key["tracking"] = {"detect_every": ALIGN_DETECT_EVERY, "follow": follow_recipe(detector)}
    return key


def _check_mode(crop: str) -> None:
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}; got {crop!r}")


def _track_aligned(frames: Iterable[np.ndarray], detector: FaceDetector, source: Path) -> FaceTrack:
    """The ``crop: auto`` face track of a video: landmarks on every frame (a detector without
    landmarks gets a box track, which :func:`aligned_track` then refuses with a clear message)."""
    if detector.has_landmarks:
        return track_landmarks(frames, detector, detect_every=ALIGN_DETECT_EVERY, source=source)
    return track_faces(frames, detector, every=1, source=source)


def aligned_track(
    track: FaceTrack, image_shape: tuple[int, ...], size: int, smoothing: float, source: str | Path
) -> list[AlignTransform]:
    """Smoothed official transforms for every frame of a landmark ``track``."""
    if track.landmarks is None:
        raise MediaError(
            f"cannot align the face in '{source}': the '{track.backend}' detector gives no landmarks",
            hint="pip install dlib-bin face-recognition-models, or set `crop: box`",
        )
    return smooth_transforms(track.landmarks, track.found, image_shape, size, smoothing)


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
    smoothing: float = DEFAULT_SMOOTHING,
) -> FaceCrops:
    """Decode ``path`` (image or video, resampled to ``fps``) and cut a face crop per frame.

    ``crop`` is ``"auto"`` (official alignment), ``"box"`` (square box) or ``"none"`` (the
    whole frame, for inputs that are already face crops); see the module docstring.
    ``smoothing`` is the Gaussian sigma in frames of a video's aligned transforms.
    """
    _check_mode(crop)
    path = Path(path)
    video = is_video_path(path)
    frames = read_video(path, fps=fps, max_frames=max_frames) if video else read_image(path)[None]
    kept = frames if keep_frames else None
    if crop == "none":
        crops = np.stack([resize_square(f, size) for f in frames])
        return FaceCrops(crops, None, kept, 0, video)
    detector = detector or FaceDetector()
    shape = frames.shape[1:]
    if crop == "auto":
        if video:
            track = _track_aligned(iter(frames), detector, path)
            transforms = aligned_track(track, shape, size, smoothing, path)
            landmarks, found, missing = track.landmarks, track.found, track.missing_frames
        else:
            _, points = find_face_landmarks(frames[0], path, detector)
            transforms = [official_transform(points, shape, size)]
            landmarks, found, missing = points[None], np.ones(1, dtype=bool), 0
        crops = np.stack([crop_image(f, t) for f, t in zip(frames, transforms)])
        return FaceCrops(crops, transforms, kept, missing, video, landmarks, found)
    if video:
        track = track_faces(iter(frames), detector, every=TRACK_EVERY, source=path)
        boxes = track.crop_boxes(shape, fixed_size=True, framing=detector.framing)
        missing, found = track.missing_frames, track.found
    else:
        boxes = [crop_box_for_face(detector.framing(find_face(frames[0], path, detector)), shape)]
        missing, found = 0, np.ones(1, dtype=bool)
    transforms = [CropTransform.from_box(box, shape, size) for box in boxes]
    crops = np.stack([crop_face(f, t, size) for f, t in zip(frames, transforms)])
    return FaceCrops(crops, transforms, kept, missing, video, None, found)


class VideoFaceSource:
    """A video source for dubbing, streamed from disk instead of held in memory.

    Pass 1 (constructor, ``crop="auto"`` or ``"box"``) tracks the face one decoded frame at a
    time, over the first ``max_frames`` frames (plus :data:`TRACK_MARGIN`, so the smoothing
    near the last used frame sees the same neighbours) or the whole clip; ``transforms``,
    ``landmarks`` (``auto`` only), ``found`` and ``missing_frames`` mean what they mean on
    :class:`FaceCrops`. Frames are then served by index: sequential reads stream from the
    decoder, a read behind the decoder restarts it. The most recent full frames
    (``cache_bytes``) and model-size crops (``crop_cache_bytes``) are kept in bounded caches,
    so memory does not grow with the clip's length or resolution.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        size: int,
        crop: str = "auto",
        detector: FaceDetector | None = None,
        cache_bytes: int = 128 << 20,
        crop_cache_bytes: int = 64 << 20,
        smoothing: float = DEFAULT_SMOOTHING,
        max_frames: int | None = None,
    ) -> None:
        from edtalk_cli.video import probe_video

        _check_mode(crop)
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.info = probe_video(self.path)
        self.total_frames = self.info.frames_at(fps)  # the whole clip at ``fps``
        self.num_frames = self.total_frames  # frames served: the tracked ones
        frame_bytes = max(1, self.info.width * self.info.height * 3)
        self._cache_frames = max(2, cache_bytes // frame_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._crop_cache_frames = max(1, crop_cache_bytes // (size * size * 3))
        self._crop_cache: dict[int, np.ndarray] = {}
        self._iter = None
        self._pos = 0  # index of the next frame the decoder yields
        self.transforms: list[AnyTransform] | None = None
        self.landmarks: np.ndarray | None = None  # (T, 68, 2) frame pixels, NaN where no face
        self.found: np.ndarray | None = None  # (T,) bool
        self.missing_frames = 0
        if crop != "none":
            detector = detector or FaceDetector()
            limit = None if max_frames is None else max_frames + TRACK_MARGIN
            stream = self._stream()
            try:
                if crop == "auto":
                    track = _track_aligned(islice(stream, limit), detector, self.path)
                else:
                    track = track_faces(islice(stream, limit), detector, every=TRACK_EVERY, source=self.path)
            finally:
                stream.close()
            shape = (self.info.height, self.info.width, 3)
            if crop == "auto":
                self.transforms = aligned_track(track, shape, size, smoothing, self.path)
                self.landmarks = track.landmarks
            else:
                boxes = track.crop_boxes(shape, fixed_size=True, framing=detector.framing)
                self.transforms = [CropTransform.from_box(box, shape, size) for box in boxes]
            self.found = track.found
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
        if index in self._crop_cache:
            return self._crop_cache[index]
        frame = self.frame(index)
        if self.transforms is None:
            crop = resize_square(frame, self.size)
        else:
            crop = crop_image(frame, self.transforms[index])
        self._crop_cache[index] = crop
        if len(self._crop_cache) > self._crop_cache_frames:
            self._crop_cache.pop(next(iter(self._crop_cache)))  # oldest first
        return crop

    def crops(self, indices) -> np.ndarray:
        return np.stack([self.crop(int(i)) for i in indices])
