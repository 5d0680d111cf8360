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

Videos (``auto`` and ``box``) are tracked on a decode of their own (:func:`track_video`): grey
frames, the luma plane, for detectors that work on grey (dlib, the cascade; S3FD and FAN get RGB),
scaled with swscale's ``area`` so the longer side is at most ``TRACK_MAX_SIDE`` px; the track
(landmarks, boxes) is mapped back to full-frame pixels once, and crops are cut from the
full-resolution frames.
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
    smooth_transforms,
    track_faces,
)
from edtalk_cli.video.align import (
    ALIGN_POINTS,
    DEFAULT_SMOOTHING,
    AlignTransform,
    AnyTransform,
    frame_bbox,
    in_box,
)
from edtalk_cli.video.faces import TRACK_SPAN, FaceTrack, follow_recipe, track_landmarks
from edtalk_cli.video.io import VIDEO_HINT, VideoInfo
from edtalk_cli.video.yuv import Box, Colorimetry, even_box, to_rgb

CROP_MODES = ("auto", "box", "none")
TRACK_EVERY = 5  # crop: box detects on every 5th frame of a clip and interpolates between
# crop: auto fits landmarks on every frame (per-frame `found` flags); the full-frame detector runs
# on every ALIGN_DETECT_EVERY-th frame and whenever the face is lost, the face being followed by its
# landmarks in between (video.faces.track_landmarks; measured in benchmarks/RESULTS.md)
ALIGN_DETECT_EVERY = 10
# a video's face is tracked in frames of its own decode (track_video): grey, the luma plane, for
# detectors that work on grey (FaceDetector.takes_grey: dlib, the cascade), RGB for the others (S3FD,
# FAN), scaled with swscale's `area` so the longer side is at most TRACK_MAX_SIDE (smaller frames as
# they are); the track is mapped back to full-frame pixels once (FaceTrack.rescaled). Measured in
# benchmarks/RESULTS.md ("Face tracking on a downscaled grey decode")
TRACK_MAX_SIDE = 1280
TRACK_SCALE_FLAGS = "area"
# frames tracked past the last one a job uses: covers the smoothing windows (the box size's
# Gaussian reaches 4 x 3 sigma = 24 frames, plus the 5-tap median and the interpolation between
# examined frames), so the used frames' transforms are those of the whole clip
TRACK_MARGIN = 32
# a video's spans of TRACK_SPAN frames are tracked in up to this many threads (tracking_threads):
# dlib's HOG detector runs without the GIL, its landmark fit holds it (about a third of a frame's
# tracking), so more threads gain little. Measured in benchmarks/RESULTS.md ("Tracking in threads")
TRACK_THREADS_MAX = 8
# I420 sources: pixels converted around the frame box a crop reads or a paste-back writes (the
# interpolation's reach past the box), before widening it to whole 2x2 chroma blocks
BOX_CONTEXT_PX = 2


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
    """What a crop depends on besides the file and size, for cache keys: mode, detector backend, the
    frames a video is tracked in (:func:`tracking_recipe`), and for ``auto`` the alignment recipe and
    its smoothing (``detector`` may be None for ``none``)."""
    if crop == "none" or detector is None:
        return {"crop": crop, "detector": None}
    key: dict[str, object] = {"crop": crop, "detector": detector.backend, "frames": tracking_recipe(detector)}
    if crop == "auto":
        key["alignment"] = {"template": "M003", "points": ALIGN_POINTS, "smoothing": DEFAULT_SMOOTHING}
        key["tracking"] = {
            "detect_every": ALIGN_DETECT_EVERY,
            "follow": follow_recipe(detector),
            "span": TRACK_SPAN,
        }
    return key


def tracking_recipe(detector: FaceDetector) -> dict[str, object]:
    """The frames :func:`track_video` tracks a face in with ``detector``: pixel format, longest side, scaling."""
    pix_fmt = "gray" if detector.takes_grey else "rgb24"
    return {"pix_fmt": pix_fmt, "max_side": TRACK_MAX_SIDE, "scale": TRACK_SCALE_FLAGS}


def tracking_size(width: int, height: int) -> tuple[int, int] | None:
    """(width, height) of the frames a ``width`` x ``height`` video is tracked in; None when not scaled."""
    longest = max(width, height)
    if longest <= TRACK_MAX_SIDE:
        return None
    factor = TRACK_MAX_SIDE / longest
    return max(1, round(width * factor)), max(1, round(height * factor))


def track_video(
    path: Path,
    fps: float | None,
    crop: str,
    detector: FaceDetector,
    limit: int | None = None,
    info: VideoInfo | None = None,
    hwaccel: str | None = None,
    threads: int | None = None,
) -> FaceTrack:
    """The face track of the video ``path`` at ``fps`` (its first ``limit`` frames, or all), for
    ``crop`` ``"auto"`` (landmarks on every frame) or ``"box"``, in full-frame pixels.

    The frames are decoded for tracking alone (:func:`tracking_recipe`): grey or RGB as the
    detector takes them, at most :data:`TRACK_MAX_SIDE` px on the longer side; the track is mapped
    back to the full frame once (:meth:`~edtalk_cli.video.faces.FaceTrack.rescaled`). ``info``: the
    video's :func:`~edtalk_cli.video.io.probe_video`, when the caller has it. ``hwaccel``: the
    decoder's accelerator (:func:`~edtalk_cli.video.hwdecode.decode_accel`; None: software).
    ``threads``: spans of the video tracked at once (:func:`tracking_threads` when None); the
    track is the same whatever their number.
    """
    from edtalk_cli.video import iter_video_frames, probe_video

    info = info or probe_video(path)
    size = tracking_size(info.width, info.height)
    pix_fmt = str(tracking_recipe(detector)["pix_fmt"])
    stream = iter_video_frames(
        path, fps=fps, size=size, pix_fmt=pix_fmt, scale_flags=TRACK_SCALE_FLAGS, hwaccel=hwaccel
    )
    try:
        frames = islice(stream, limit)
        threads = tracking_threads() if threads is None else threads
        if crop == "auto":
            track = _track_aligned(frames, detector, path, threads)
        else:
            track = track_faces(frames, detector, every=TRACK_EVERY, source=path, threads=threads)
    finally:
        stream.close()
    if size is None:
        return track
    return track.rescaled(info.width / size[0], info.height / size[1])


def source_track(
    path: Path,
    fps: float,
    crop: str,
    detector: FaceDetector,
    max_frames: int | None,
    info: VideoInfo | None = None,
    hwaccel: str | None = None,
) -> FaceTrack:
    """The face track a dubbing source's crops are cut with (``crop`` ``auto`` or ``box``): its first
    ``max_frames`` frames plus :data:`TRACK_MARGIN` (all frames when None), so the smoothing near the
    last used frame sees the same neighbours as over the whole clip."""
    limit = None if max_frames is None else max_frames + TRACK_MARGIN
    return track_video(path, fps, crop, detector, limit, info, hwaccel=hwaccel)


def _check_mode(crop: str) -> None:
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}; got {crop!r}")


def _track_aligned(
    frames: Iterable[np.ndarray], detector: FaceDetector, source: Path, threads: int
) -> FaceTrack:
    """The ``crop: auto`` face track of a video: landmarks on every frame (a detector without
    landmarks gets a box track, which :func:`aligned_track` then refuses with a clear message)."""
    if detector.has_landmarks:
        return track_landmarks(
            frames, detector, detect_every=ALIGN_DETECT_EVERY, source=source, threads=threads, span=TRACK_SPAN
        )
    return track_faces(frames, detector, every=1, source=source, threads=threads, span=TRACK_SPAN)


def tracking_threads() -> int:
    """Spans of a video tracked at once: this process's CPU threads (the worker's share of the
    host, as torch has them), at most :data:`TRACK_THREADS_MAX`."""
    import torch

    return max(1, min(TRACK_THREADS_MAX, torch.get_num_threads()))


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


def track_transforms(
    track: FaceTrack,
    crop: str,
    shape: tuple[int, ...],
    size: int,
    smoothing: float,
    detector: FaceDetector,
    source: str | Path,
) -> list[AnyTransform]:
    """The crop transform of every frame of a video's ``track`` (frames of ``shape``) at ``size``:
    smoothed official alignments for ``crop: auto``, fixed-size squares for ``box``."""
    if crop == "auto":
        return list(aligned_track(track, shape, size, smoothing, source))
    boxes = track.crop_boxes(shape, fixed_size=True, framing=detector.framing)
    return [CropTransform.from_box(box, shape, size) for box in boxes]


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
    hwaccel: str | None = None,
) -> FaceCrops:
    """Decode ``path`` (image or video, resampled to ``fps``) and cut a face crop per frame.

    ``crop`` is ``"auto"`` (official alignment), ``"box"`` (square box) or ``"none"`` (the
    whole frame, for inputs that are already face crops); see the module docstring.
    ``smoothing`` is the Gaussian sigma in frames of a video's aligned transforms. ``hwaccel``:
    the video decoder's accelerator (:func:`~edtalk_cli.video.hwdecode.decode_accel`; the frames
    are the same; None: software). A video is tracked first (:func:`track_video`), then decoded
    once more and cut frame by frame, so only its crops are held (its frames too with
    ``keep_frames``).
    """
    _check_mode(crop)
    path = Path(path)
    if is_video_path(path):
        return _video_crops(path, size, fps, crop, detector, keep_frames, max_frames, smoothing, hwaccel)
    frames = read_image(path)[None]
    kept = frames if keep_frames else None
    if crop == "none":
        return FaceCrops(np.stack([resize_square(f, size) for f in frames]), None, kept, 0, False)
    detector = detector or FaceDetector()
    shape = frames.shape[1:]
    if crop == "auto":
        _, points = find_face_landmarks(frames[0], path, detector)
        transforms: list[AnyTransform] = [official_transform(points, shape, size)]
        crops = np.stack([crop_image(frames[0], transforms[0])])
        return FaceCrops(crops, transforms, kept, 0, False, points[None], np.ones(1, dtype=bool))
    box = crop_box_for_face(detector.framing(find_face(frames[0], path, detector)), shape)
    transforms = [CropTransform.from_box(box, shape, size)]
    crops = np.stack([crop_face(frames[0], transforms[0], size)])
    return FaceCrops(crops, transforms, kept, 0, False, None, np.ones(1, dtype=bool))


def _video_crops(
    path: Path,
    size: int,
    fps: float | None,
    crop: str,
    detector: FaceDetector | None,
    keep_frames: bool,
    max_frames: int | None,
    smoothing: float,
    hwaccel: str | None,
) -> FaceCrops:
    """:func:`face_crops` of a video: the face tracked over its first ``max_frames`` frames (or all),
    then its RGB frames decoded one at a time and cut with the track's transforms."""
    from edtalk_cli.video import iter_video_frames, probe_video

    info = probe_video(path)
    shape = (info.height, info.width, 3)
    transforms: list[AnyTransform] | None = None
    track: FaceTrack | None = None
    if crop != "none":
        detector = detector or FaceDetector()
        track = track_video(path, fps, crop, detector, max_frames, info, hwaccel=hwaccel)
        transforms = track_transforms(track, crop, shape, size, smoothing, detector, path)
        max_frames = len(transforms)
    crops: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    stream = iter_video_frames(path, fps=fps, hwaccel=hwaccel)
    try:
        for k, frame in enumerate(islice(stream, max_frames)):
            if transforms is None:
                crops.append(resize_square(frame, size))
            elif crop == "auto":
                crops.append(crop_image(frame, transforms[k]))
            else:
                crops.append(crop_face(frame, transforms[k], size))
            if keep_frames:
                kept.append(frame)
    finally:
        stream.close()
    if not crops:
        raise MediaError(f"video '{path}' gave no frames", hint=VIDEO_HINT)
    count = len(crops)
    frames = np.stack(kept) if keep_frames else None
    if track is None:
        return FaceCrops(np.stack(crops), None, frames, 0, True)
    found = track.found[:count]
    landmarks = None if crop != "auto" or track.landmarks is None else track.landmarks[:count]
    missing = int(count - found.sum())
    return FaceCrops(np.stack(crops), transforms[:count], frames, missing, True, landmarks, found)


def transform_box(transform: AnyTransform) -> Box:
    """The even-aligned frame box converted from I420 for a crop or paste-back through
    ``transform``: its :func:`~edtalk_cli.video.align.frame_bbox` (not None) grown by
    :data:`BOX_CONTEXT_PX`, clipped to the frame."""
    bbox = frame_bbox(transform)
    if bbox is None:
        raise ValueError("the transform's crop lies outside the frame")
    return even_box(bbox, transform.image_shape, grow=BOX_CONTEXT_PX)


class VideoFaceSource:
    """A video source for dubbing, streamed from disk instead of held in memory.

    Pass 1 (constructor, ``crop="auto"`` or ``"box"``) tracks the face (:func:`source_track`: on
    the tracking decode of :func:`track_video`, grey, downscaled) over the first ``max_frames``
    frames plus a margin, or the whole clip; ``transforms``,
    ``landmarks`` (``auto`` only), ``found`` and ``missing_frames`` mean what they mean on
    :class:`FaceCrops`. Frames are then served by index: sequential reads stream from the
    decoder, a read behind the decoder restarts it. The most recent full frames
    (``cache_bytes``) and model-size crops (``crop_cache_bytes``) are kept in bounded caches,
    so memory does not grow with the clip's length or resolution.

    ``planes=True``: the frames are decoded as the source's own I420 planes when
    :meth:`Colorimetry.of_video <edtalk_cli.video.yuv.Colorimetry.of_video>` can read them
    (:attr:`colorimetry` is then set; else None, and frames are RGB as without it): :meth:`planes`
    gives them as decoded, :meth:`frame` converts a whole frame to RGB, :meth:`crop` converts only
    the box its crop reads (:func:`transform_box`).

    ``hwaccel``: the accelerator of every decode of the clip, tracking included
    (:func:`~edtalk_cli.video.hwdecode.decode_accel`; the frames are the same; None: software).
    ``track``: the clip's :func:`source_track` for these ``fps``, ``crop`` and ``max_frames``, when
    it was computed ahead (it is then not tracked again).
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
        planes: bool = False,
        hwaccel: str | None = None,
        track: FaceTrack | None = None,
    ) -> None:
        from edtalk_cli.video import probe_video

        _check_mode(crop)
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.hwaccel = hwaccel
        self.info = probe_video(self.path)
        self.total_frames = self.info.frames_at(fps)  # the whole clip at ``fps``
        self.num_frames = self.total_frames  # frames served: the tracked ones
        # planes=True: the render pass decodes the source's own I420 planes when yuv.py can read them
        self.colorimetry = Colorimetry.of_video(self.info) if planes else None
        frame_bytes = max(1, self.info.width * self.info.height * (3 if self.colorimetry is None else 3 / 2))
        self._cache_frames = max(2, int(cache_bytes // frame_bytes))
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
            if track is None:
                track = source_track(self.path, fps, crop, detector, max_frames, self.info, hwaccel)
            shape = (self.info.height, self.info.width, 3)
            self.transforms = track_transforms(track, crop, shape, size, smoothing, detector, self.path)
            self.landmarks = track.landmarks if crop == "auto" else None
            self.found = track.found
            self.missing_frames = track.missing_frames
            self.num_frames = min(self.num_frames, len(self.transforms))

    def _stream(self):
        from edtalk_cli.video import iter_video_frames

        if self.colorimetry is None:
            return iter_video_frames(self.path, fps=self.fps, hwaccel=self.hwaccel)
        return iter_video_frames(self.path, fps=self.fps, pix_fmt=self.info.pix_fmt, hwaccel=self.hwaccel)

    def frame(self, index: int) -> np.ndarray:
        """Full-resolution RGB frame ``index`` (at the job fps); converted whole from
        :meth:`planes` when the source decodes I420."""
        if self.colorimetry is None:
            return self._decoded(index)
        height, width = self.info.height, self.info.width
        return to_rgb(self._decoded(index), (0, 0, width, height), self.colorimetry)

    def planes(self, index: int) -> np.ndarray:
        """The source's I420 planes (H * 3 / 2, W) uint8 of frame ``index``, as decoded (read them
        with :attr:`colorimetry`); only when the source was opened with ``planes`` and
        :attr:`colorimetry` is not None."""
        if self.colorimetry is None:
            raise ValueError(f"'{self.path}' is decoded to RGB, not to I420 planes")
        return self._decoded(index)

    def _decoded(self, index: int) -> np.ndarray:
        """Frame ``index`` as the render pass decodes it (RGB, or I420 planes), through the cache."""
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
        if self.transforms is None:
            crop = resize_square(self.frame(index), self.size)
        else:
            crop = crop_image(*self._crop_input(index))
        self._crop_cache[index] = crop
        if len(self._crop_cache) > self._crop_cache_frames:
            self._crop_cache.pop(next(iter(self._crop_cache)))  # oldest first
        return crop

    def _crop_input(self, index: int) -> tuple[np.ndarray, AnyTransform]:
        """(image, transform) whose crop is frame ``index``'s: with I420 planes only the box the crop
        reads (plus interpolation context) is converted, with the transform moved onto it."""
        transform = self.transforms[index]
        if self.colorimetry is None or frame_bbox(transform) is None:
            return self.frame(index), transform
        box = transform_box(transform)
        return to_rgb(self.planes(index), box, self.colorimetry), in_box(transform, box)

    def crops(self, indices) -> np.ndarray:
        return np.stack([self.crop(int(i)) for i in indices])
