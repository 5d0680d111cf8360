"""Face detection, 68-point landmarks, crop boxes, and smoothed face tracks over video frames.

Detector backends (:class:`FaceDetector`):

* ``dlib`` (the offline default): dlib's HOG detector and 68-point landmark model, shipped in the
  ``dlib-bin`` and ``face-recognition-models`` wheels (see :mod:`edtalk_cli.video.landmarks`,
  which also states the landmark model's licence terms).
* ``fan``: face-alignment's S3FD detector with its 2D-FAN landmark network, when *both* weight
  files are cached (never downloaded).
* ``face_alignment``: S3FD from the face-alignment package, used only when its weights are
  already cached in ``$TORCH_HOME/hub/checkpoints/`` (``s3fd-619a316812.pth``). We build the bare
  ``SFDDetector`` from that file (``torch.load(weights_only=True)``), so no landmark network is
  loaded, nothing is compiled and nothing is ever downloaded. Frames are downscaled so the
  longest side is <= 640 px (as the official ``crop_video.py`` does) and boxes scaled back.
* ``cascade``: scikit-image's LBP frontal-face cascade, the last resort when dlib is not
  installed (no landmarks; it misses many close-ups). Frames are downscaled to a longest side
  of <= 400 px first. Its boxes are tighter and sit higher than S3FD's (brows to lower lip rather than hairline to chin), so they are
  shifted down by 8 % and enlarged by 5 % to approximate S3FD boxes [UNCERTAIN: calibrated by
  eye on ``skimage.data.astronaut()``; S3FD weights were not available to compare with].

``backend="auto"`` picks ``fan`` when both its weight files are cached, else ``dlib``, else
S3FD alone (boxes only) when its weights are cached, else the cascade. Only ``dlib`` and ``fan``
give landmarks (:attr:`FaceDetector.has_landmarks`), which the official alignment needs.
Frames are uint8 RGB (H, W, 3) or grey (H, W); ``dlib`` and the cascade work on grey frames as they
are (:attr:`FaceDetector.takes_grey`), S3FD and FAN get them repeated to 3 channels.

No-face policy for video (:func:`track_faces`): frames where no face is found are marked
``found == False`` (their landmarks are NaN) and counted in ``FaceTrack.missing_frames``; only the
crop *box* holds the last good box there (before the first detection: the first good box), so a
crop exists for every frame. A video with no face at all raises :class:`MediaError`.
:func:`track_landmarks` (``crop: auto``) gives the same per-frame ``found`` with the full-frame
detector on every few frames only, the face being followed by its landmarks in between.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edtalk_cli.errors import MediaError, WeightsError
from edtalk_cli.video.boxes import S3FD_URL, Box, backend_image, downscale, s3fd_weights_path
from edtalk_cli.video.spans import track_in_spans

if TYPE_CHECKING:
    from edtalk_cli.video.landmarks import LandmarkDetector

__all__ = [
    "DEFAULT_INCREASE",
    "S3FD_URL",
    "Box",
    "FaceDetector",
    "FaceTrack",
    "crop_box_for_face",
    "detect_face",
    "detect_faces",
    "find_face",
    "find_face_landmarks",
    "follow_recipe",
    "s3fd_weights_path",
    "track_faces",
    "track_landmarks",
]

# Crop margin: side = (1 + 2 * increase) * max(w, h) of the (S3FD-like) face box.
# 0.1 is the official crop_video.py value; 0.3 (the default) gives the face ~60 % of the crop,
# closer to the template-aligned 256-px source crops of the official demo [UNCERTAIN].
DEFAULT_INCREASE = 0.3
_CASCADE_SHIFT_Y = 0.08  # cascade box -> S3FD-like box: move down by 8 % of its height
_CASCADE_SCALE = 1.05  # ... and enlarge by 5 %
# dlib's HOG boxes (brows to chin) -> S3FD-like boxes for `crop: box`: the S3FD-like cascade boxes
# were a median 1.2x as wide and 3 % of the width higher, over the astronaut, the real test photo
# and 10 frames of the real test clip [UNCERTAIN: S3FD itself was not available to compare with]
_DLIB_BOX_SCALE = 1.2
_DLIB_BOX_SHIFT_Y = -0.03
# track_landmarks: a followed face whose landmarks' bounding box moves by more than FOLLOW_MAX_SHIFT
# of its size, or changes size by more than FOLLOW_MAX_RESIZE, from one frame to the next is detected again
FOLLOW_MAX_SHIFT = 0.25
FOLLOW_MAX_RESIZE = 1.25
# frames per span of a tracked video (edtalk_cli/video/spans.py): spans are tracked in threads, and
# a landmark track runs its full-frame detector on each span's first frame (2 s at 25 fps)
TRACK_SPAN = 50


def crop_box_for_face(
    box: Box,
    image_shape: tuple[int, ...],
    increase: float = DEFAULT_INCREASE,
    *,
    shift_y: float = 0.0,
    clip_to_image: bool = False,
) -> Box:
    """Square crop box around a face box, EDTalk ``crop_video.py`` style.

    The official expansion grows the box by ``increase`` on each side of its longer dimension,
    which makes it square: side = ``(1 + 2 * increase) * max(w, h)``, centred on the face
    (moved by ``shift_y * side`` vertically, negative = up). Unlike the official code we do *not*
    clip it to the image, which breaks squareness and then distorts the aspect ratio when
    resized to 256x256: the box may extend past the image, and :func:`~edtalk_cli.video.crop.
    crop_face` pads the missing part with edge pixels. With ``clip_to_image=True`` the square is
    shifted (not shrunk) to lie inside the image where it fits, trading centring for less padding.
    ``image_shape`` is (H, W, ...) of the image the box lives in; the side is capped at twice
    the image's longer side.
    """
    if increase < 0:
        raise ValueError(f"increase must be >= 0, got {increase}")
    h_img, w_img = int(image_shape[0]), int(image_shape[1])
    side = (1.0 + 2.0 * increase) * max(box.width, box.height)
    side = min(max(side, 2.0), 2.0 * max(h_img, w_img))
    cx, cy = box.cx, box.cy + shift_y * side
    if clip_to_image:
        if side <= w_img:
            cx = min(max(cx, side / 2), w_img - side / 2)
        if side <= h_img:
            cy = min(max(cy, side / 2), h_img - side / 2)
    return Box.from_center(cx, cy, side, side, box.score)


# --------------------------------------------------------------------------------------- detectors


class _CascadeBackend:
    name = "cascade"
    takes_grey = True  # it works on grey

    def __init__(self, max_side: int, min_face: float, scale_factor: float, step_ratio: float) -> None:
        from skimage import data
        from skimage.feature import Cascade

        self._cascade = Cascade(data.lbp_frontal_face_cascade_filename())
        self.max_side = max_side
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.step_ratio = step_ratio

    def __call__(self, image: np.ndarray) -> list[Box]:
        import cv2

        small, back = downscale(image, self.max_side)
        if small.ndim == 3:
            small = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
        grey = small.astype(np.float32) / 255.0
        h, w = grey.shape
        short = min(h, w)
        min_px = max(24, round(self.min_face * short))
        if min_px > short:
            return []
        found = self._cascade.detect_multi_scale(
            img=grey,
            scale_factor=self.scale_factor,
            step_ratio=self.step_ratio,
            min_size=(min_px, min_px),
            max_size=(short, short),
            min_neighbor_number=4,
            intersection_score_threshold=0.5,
        )
        boxes = []
        for d in found:
            raw = Box(d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]).scaled(back)
            boxes.append(
                Box.from_center(
                    raw.cx,
                    raw.cy + _CASCADE_SHIFT_Y * raw.height,
                    raw.width * _CASCADE_SCALE,
                    raw.height * _CASCADE_SCALE,
                    1.0,  # the cascade gives no confidence
                )
            )
        return boxes


class _S3FDBackend:
    name = "face_alignment"
    takes_grey = False  # S3FD takes RGB

    def __init__(self, weights: Path, device: str, max_side: int, threshold: float) -> None:
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        # path_to_detector -> torch.load(weights_only=True); never load_state_dict_from_url
        self._det = SFDDetector(device=device, path_to_detector=str(weights), filter_threshold=threshold)
        self.max_side = max_side

    def __call__(self, image: np.ndarray) -> list[Box]:
        small, back = downscale(image, self.max_side)
        found = self._det.detect_from_image(np.ascontiguousarray(small))
        return [
            Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])).scaled(back) for b in found
        ]


class _LandmarkBackend:
    """Boxes and 68 landmarks from a :class:`~edtalk_cli.video.landmarks.LandmarkDetector`."""

    def __init__(self, backend: str, device: str, max_side: int) -> None:
        from edtalk_cli.video.landmarks import LandmarkDetector

        self.detector = LandmarkDetector(backend, device=device, max_side=max_side)
        self.name = self.detector.backend
        self.takes_grey = self.detector.takes_grey

    def __call__(self, image: np.ndarray) -> list[Box]:
        return self.detector.boxes(image)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return self.detector.landmarks_in(image, box)


class FaceDetector:
    """Face detector with a selectable backend: ``"auto"``, ``"dlib"``, ``"fan"``,
    ``"face_alignment"`` (S3FD boxes only) or ``"cascade"`` (see the module docstring).

    ``.backend`` names the one in use (for logs and cache keys); ``.has_landmarks`` says whether
    it fits 68 landmarks. Asking for a backend whose files are missing raises
    :class:`WeightsError` (nothing is ever downloaded).
    """

    BACKENDS = ("auto", "dlib", "fan", "face_alignment", "cascade")

    def __init__(
        self,
        backend: str = "auto",
        *,
        device: str = "cpu",
        cascade_max_side: int = 400,
        cascade_min_face: float = 0.1,
        cascade_scale_factor: float = 1.2,
        cascade_step_ratio: float = 1.2,
        s3fd_max_side: int = 640,
        s3fd_threshold: float = 0.5,
        landmark_max_side: int = 640,
    ) -> None:
        if backend not in self.BACKENDS:
            choices = ", ".join(self.BACKENDS)
            raise ValueError(f"face detector backend must be one of {choices}; got {backend!r}")
        if backend == "auto":
            from edtalk_cli.video.landmarks import dlib_available, fan_weights_path

            if s3fd_weights_path() is not None and fan_weights_path() is not None:
                backend = "fan"
            elif dlib_available():
                backend = "dlib"
        self._impl: _CascadeBackend | _S3FDBackend | _LandmarkBackend
        if backend in ("dlib", "fan"):
            self._impl = _LandmarkBackend(backend, device, landmark_max_side)
            return
        weights = s3fd_weights_path() if backend in ("auto", "face_alignment") else None
        if backend == "face_alignment" and weights is None:
            import torch.hub

            folder = Path(torch.hub.get_dir()) / "checkpoints"
            raise WeightsError(
                f"S3FD face-detector weights not found in '{folder}'",
                hint=f"download {S3FD_URL} into that folder, or use the 'dlib' (or 'auto') detector",
            )
        if weights is not None:
            self._impl = _S3FDBackend(weights, device, s3fd_max_side, s3fd_threshold)
        else:
            self._impl = _CascadeBackend(
                cascade_max_side, cascade_min_face, cascade_scale_factor, cascade_step_ratio
            )

    @property
    def backend(self) -> str:
        """Name of the backend in use: ``"dlib"``, ``"fan"``, ``"face_alignment"`` or ``"cascade"``."""
        return self._impl.name

    @property
    def takes_grey(self) -> bool:
        """True when the backend works on grey (H, W) frames (dlib, cascade); the others (S3FD, FAN)
        are given grey frames repeated to 3 channels (:func:`~edtalk_cli.video.boxes.backend_image`)."""
        return self._impl.takes_grey

    def _image(self, image: np.ndarray) -> np.ndarray:
        return backend_image(image, takes_grey=self._impl.takes_grey)

    @property
    def has_landmarks(self) -> bool:
        """True when the backend fits 68 landmarks (``dlib`` and ``fan``)."""
        return isinstance(self._impl, _LandmarkBackend)

    @property
    def thread_safe(self) -> bool:
        """True when several threads may use this detector at once (``dlib``); the others serve
        one thread at a time."""
        return isinstance(self._impl, _LandmarkBackend) and self._impl.detector.thread_safe

    def framing(self, box: Box) -> Box:
        """``box`` as an S3FD-like face box (hairline to chin), the one ``crop: box`` frames:
        dlib boxes are enlarged and moved up (see ``_DLIB_BOX_SCALE``); others are already so."""
        if self.backend != "dlib":
            return box
        side_w, side_h = box.width * _DLIB_BOX_SCALE, box.height * _DLIB_BOX_SCALE
        return Box.from_center(box.cx, box.cy + _DLIB_BOX_SHIFT_Y * box.width, side_w, side_h, box.score)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks (68, 2) float64, frame pixels, of the face in ``box``."""
        if not isinstance(self._impl, _LandmarkBackend):
            raise WeightsError(
                f"the '{self.backend}' face detector gives no landmarks, which the aligned crop needs",
                hint="pip install dlib-bin face-recognition-models, or use `crop: box`",
            )
        return self._impl.landmarks(self._image(image), box)

    @property
    def can_follow(self) -> bool:
        """True when a face can be followed by its landmarks between detections (:func:`track_landmarks`)."""
        return isinstance(self._impl, _LandmarkBackend) and self._impl.detector.can_follow

    def box_from_landmarks(self, points: np.ndarray) -> Box:
        """The box this detector would give the face whose landmarks are ``points`` (68, 2)."""
        return self._landmark_detector().box_from_landmarks(points)

    def redetect(self, image: np.ndarray, box: Box) -> Box | None:
        """The face detected in a small window around ``box``, or None (see
        :meth:`~edtalk_cli.video.landmarks.LandmarkDetector.redetect`)."""
        return self._landmark_detector().redetect(image, box)

    def _landmark_detector(self) -> LandmarkDetector:
        if not isinstance(self._impl, _LandmarkBackend):
            raise ValueError(f"the '{self.backend}' face detector gives no landmarks")
        return self._impl.detector

    def detect_faces(self, image: np.ndarray) -> list[Box]:
        """All faces in a uint8 image, grey (H, W) or RGB (H, W, 3), largest first."""
        boxes = self._impl(self._image(image))
        return sorted(boxes, key=lambda b: b.area, reverse=True)

    def detect_face(self, image: np.ndarray) -> Box | None:
        """The largest face, or None."""
        boxes = self.detect_faces(image)
        return boxes[0] if boxes else None

    def __repr__(self) -> str:
        return f"FaceDetector(backend={self.backend!r})"


_default_detector: FaceDetector | None = None


def _default() -> FaceDetector:
    global _default_detector
    if _default_detector is None:
        _default_detector = FaceDetector("auto")
    return _default_detector


def detect_faces(image: np.ndarray, detector: FaceDetector | None = None) -> list[Box]:
    """All faces in ``image``, largest first (default detector: ``FaceDetector("auto")``)."""
    return (detector or _default()).detect_faces(image)


def detect_face(image: np.ndarray, detector: FaceDetector | None = None) -> Box | None:
    """The largest face in ``image``, or None."""
    return (detector or _default()).detect_face(image)


def find_face(image: np.ndarray, source: str | Path, detector: FaceDetector | None = None) -> Box:
    """The largest face in an image read from ``source``; :class:`MediaError` naming it when none."""
    det = detector or _default()
    box = det.detect_face(image)
    if box is None:
        raise MediaError(
            f"no face found in '{source}' (detector: {det.backend})",
            hint="use an image with a clearly visible, roughly frontal face, or set 'crop: none' "
            "(in the manifest) if the image is already a 256x256 face crop",
        )
    return box


def find_face_landmarks(
    image: np.ndarray, source: str | Path, detector: FaceDetector | None = None
) -> tuple[Box, np.ndarray]:
    """The largest face in an image read from ``source`` and its 68 landmarks (68, 2), frame pixels;
    :class:`MediaError` naming the file when there is no face."""
    det = detector or _default()
    box = find_face(image, source, det)
    return box, det.landmarks(image, box)


# --------------------------------------------------------------------------------------- tracking


@dataclass
class FaceTrack:
    """A smoothed face box for every frame of a video.

    ``boxes`` (T, 4) are smoothed face boxes [x0, y0, x1, y1]; ``raw`` (T, 4) are the selected
    detections (NaN where a frame had no face or was not examined); ``found`` (T,) is True where
    the box is backed by detections (examined, or interpolated between two examined frames with
    faces); the other ``missing_frames`` frames have no face: their box holds the last (or first)
    good box, for a crop only. ``landmarks`` (T, 68, 2) float64, frame pixels, NaN where not
    ``found``; None when the backend gives no landmarks.
    """

    boxes: np.ndarray
    raw: np.ndarray
    found: np.ndarray
    missing_frames: int
    backend: str
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def rescaled(self, scale_x: float, scale_y: float) -> FaceTrack:
        """This track in the pixels of a frame ``scale_x`` times as wide and ``scale_y`` times as tall
        as the one it was tracked in (one continuous mapping: pixel centres, as the landmarks are,
        go x -> (x + 0.5) * scale_x - 0.5; box coordinates are pixel edges, x1 being the last
        pixel + 1, and go x -> x * scale_x)."""
        edges = np.array([scale_x, scale_y, scale_x, scale_y])
        landmarks = None
        if self.landmarks is not None:
            landmarks = (self.landmarks + 0.5) * np.array([scale_x, scale_y]) - 0.5
        return FaceTrack(
            boxes=self.boxes * edges,
            raw=self.raw * edges,
            found=self.found.copy(),
            missing_frames=self.missing_frames,
            backend=self.backend,
            landmarks=landmarks,
        )

    def box(self, i: int) -> Box:
        """The smoothed face box of frame ``i``."""
        x0, y0, x1, y1 = (float(v) for v in self.boxes[i])
        return Box(x0, y0, x1, y1)

    def crop_boxes(
        self,
        image_shape: tuple[int, ...],
        increase: float = DEFAULT_INCREASE,
        *,
        shift_y: float = 0.0,
        fixed_size: bool = False,
        framing: Callable[[Box], Box] | None = None,
    ) -> list[Box]:
        """Square crop boxes for every frame (:func:`crop_box_for_face`); ``fixed_size`` uses one
        side length (the median) for the whole track; ``framing`` maps each face box first
        (e.g. :meth:`FaceDetector.framing`)."""
        boxes = [self.box(i) for i in range(len(self))]
        if framing is not None:
            boxes = [framing(b) for b in boxes]
        if fixed_size and boxes:
            size = float(np.median([max(b.width, b.height) for b in boxes]))
            boxes = [Box.from_center(b.cx, b.cy, size, size) for b in boxes]
        return [crop_box_for_face(b, image_shape, increase, shift_y=shift_y) for b in boxes]


def _pick(candidates: list[Box], reference: Box | None) -> Box | None:
    """The candidate that continues ``reference`` (best IoU > 0.2), or the largest without one."""
    if not candidates:
        return None
    if reference is None:
        return max(candidates, key=lambda b: b.area)
    best = max(candidates, key=reference.iou)
    return best if reference.iou(best) > 0.2 else None


class _TrackSelector:
    """Chooses, frame after frame, the detection that continues the track."""

    def __init__(self, reacquire_after: int) -> None:
        self.reference: Box | None = None
        self.misses = 0
        self.reacquire_after = reacquire_after

    def choose(self, candidates: list[Box]) -> Box | None:
        choice = _pick(candidates, self.reference)
        if choice is None and self.reference is not None and self.misses + 1 >= self.reacquire_after:
            choice = _pick(candidates, None)  # lost for too long: take the largest face again
        if choice is None:
            self.misses += 1
        else:
            self.reference, self.misses = choice, 0
        return choice

    def follow(self, box: Box) -> None:
        """The track continues in ``box`` (found without the full-frame detector)."""
        self.reference, self.misses = box, 0


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase smoothing: 5-tap median (drops one-frame outliers), then a Gaussian."""
    from scipy.ndimage import gaussian_filter1d, median_filter

    if sigma <= 0 or values.shape[0] < 3:
        return values
    out = median_filter(values, size=min(5, values.shape[0] | 1), mode="nearest")
    return gaussian_filter1d(out, sigma=sigma, mode="nearest")


@dataclass
class TrackedSpan:
    """The raw track of the frames ``start`` .. ``start + frames - 1`` of a video (see
    :mod:`edtalk_cli.video.spans`): the box picked on each ``examined`` frame (None: no face there),
    the landmarks fitted on each frame (None per frame without, or the whole list None without a
    landmark backend), and the selection it hands to the next span.

    ``entry``: the detections on the span's first frame, which it examines whatever the state.
    """

    start: int
    frames: int
    examined: list[int]
    picked: list[Box | None]
    fitted: list[np.ndarray | None] | None
    entry: list[Box]
    exit_state: _TrackSelector

    def continues(self, state: _TrackSelector | None) -> bool:
        """True when the span, tracked from a fresh start, is what it is from ``state``: the first
        frame's choice is the same, or no face is followed on either side (``state`` without a
        reference chooses as a fresh one does)."""
        if state is None or state.reference is None:
            return True
        return copy.copy(state).choose(self.entry) == self.picked[0] is not None


class _BoxTracker:
    """:func:`track_faces`'s frame-by-frame pass over one span (which starts on an examined frame)."""

    def __init__(
        self,
        detector: FaceDetector,
        every: int,
        reacquire_after: int,
        start: int,
        state: _TrackSelector | None,
    ) -> None:
        self.detector, self.every, self.start = detector, every, start
        self.selector = copy.copy(state) if state is not None else _TrackSelector(reacquire_after)
        self.examined: list[int] = []
        self.picked: list[Box | None] = []
        self.fitted: list[np.ndarray | None] = []  # landmarks per frame (with a landmark backend)
        self.anchor: tuple[Box, np.ndarray] | None = None  # last detection and the centroid fitted in it
        self.entry: list[Box] = []
        self.count = 0
        self.unexamined: np.ndarray | None = None  # the last frame fed, when it was not examined

    def _fit(self, frame: np.ndarray, box: Box | None, shift: np.ndarray) -> np.ndarray | None:
        if box is None:
            return None
        moved = Box(box.x0 + shift[0], box.y0 + shift[1], box.x1 + shift[0], box.y1 + shift[1], box.score)
        return self.detector.landmarks(frame, moved)

    def _examine(self, k: int, frame: np.ndarray) -> None:
        candidates = self.detector.detect_faces(frame)
        if k == 0:
            self.entry = candidates
        self.examined.append(self.start + k)
        box = self.selector.choose(candidates)
        self.picked.append(box)
        if self.detector.has_landmarks:
            points = self._fit(frame, box, np.zeros(2))
            self.anchor = None if points is None or box is None else (box, points.mean(axis=0))
            self.fitted[k] = points

    def _follow(self, k: int, frame: np.ndarray) -> None:
        if self.anchor is None or self.fitted[k - 1] is None:
            return
        box, centre = self.anchor
        self.fitted[k] = self._fit(frame, box, self.fitted[k - 1].mean(axis=0) - centre)

    def feed(self, frame: np.ndarray) -> None:
        k = self.count
        self.count += 1
        if self.detector.has_landmarks:
            self.fitted.append(None)
        if (self.start + k) % self.every == 0:
            self._examine(k, frame)
            self.unexamined = None
        else:
            if self.detector.has_landmarks:
                self._follow(k, frame)
            self.unexamined = frame  # kept so the video's last frame is always examined

    def finish(self, last: bool) -> TrackedSpan:
        if last and self.unexamined is not None:
            self._examine(self.count - 1, self.unexamined)
        self.unexamined = None
        fitted = self.fitted if self.detector.has_landmarks else None
        return TrackedSpan(
            self.start, self.count, self.examined, self.picked, fitted, self.entry, copy.copy(self.selector)
        )


def track_faces(
    frames: Iterable[np.ndarray],
    detector: FaceDetector,
    *,
    every: int = 1,
    smoothing: float = 2.0,
    size_smoothing: float | None = None,
    reacquire_after: int = 10,
    source: str | Path = "<frames>",
    threads: int = 1,
    span: int = TRACK_SPAN,
) -> FaceTrack:
    """Detect the face on every ``every``-th frame and return a smoothed :class:`FaceTrack`.

    Frames are consumed one at a time (constant memory). Per examined frame the detection that
    overlaps the previous one best is kept (IoU > 0.2), so a stray false positive does not
    hijack the track; after ``reacquire_after`` examined frames without a match the largest face
    is taken again. Between examined frames the box is interpolated linearly. The box centre is
    smoothed with a zero-phase Gaussian of ``smoothing`` frames (sigma) after a 5-tap median, the
    size with ``size_smoothing`` (default 3x ``smoothing``) so the crop size varies slowly.
    With a landmark backend, the 68 landmarks are fitted on every frame: in the detection on
    examined frames, in between in the last detection moved with the landmarks' centroid.
    No-face policy: ``found`` is False and the landmarks NaN; the box holds the last good box
    (before the first detection: the first good box); those frames are counted in
    ``missing_frames``. No face anywhere: :class:`MediaError`.

    ``threads`` > 1 (with a :attr:`FaceDetector.thread_safe` detector) tracks spans of ``span``
    frames (rounded up to a multiple of ``every``) in that many threads, with the same result
    (:func:`~edtalk_cli.video.spans.track_in_spans`).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    span = -(-span // every) * every  # spans start on examined frames

    def new_tracker(start: int, state: _TrackSelector | None) -> _BoxTracker:
        return _BoxTracker(detector, every, reacquire_after, start, state)

    spans = track_in_spans(frames, new_tracker, span=span, threads=threads if detector.thread_safe else 1)
    return _assemble_spans(spans, detector, smoothing=smoothing, size_smoothing=size_smoothing, source=source)


def _plausible_step(points: np.ndarray, previous: np.ndarray) -> bool:
    """False when the landmarks' bounding box jumped or changed size abnormally from one frame to the
    next (a fit that slid off the face)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    plo, phi = previous.min(axis=0), previous.max(axis=0)
    size, prev_size = float(np.max(hi - lo)), float(np.max(phi - plo))
    ratio = size / prev_size if prev_size > 0 else 0.0
    if not (np.isfinite(ratio) and 1 / FOLLOW_MAX_RESIZE <= ratio <= FOLLOW_MAX_RESIZE):
        return False
    shift = float(np.linalg.norm((lo + hi) / 2 - (plo + phi) / 2))
    return shift <= FOLLOW_MAX_SHIFT * prev_size


def follow_recipe(detector: FaceDetector) -> dict[str, object] | None:
    """What :func:`track_landmarks` results depend on besides ``detect_every`` (for cache keys);
    None when ``detector`` cannot follow a face (it then detects on every frame)."""
    if not detector.can_follow:
        return None
    from edtalk_cli.video.landmarks import REDETECT_FACE_PX, REDETECT_MARGIN

    return {
        "box": "landmarks",
        "max_shift": FOLLOW_MAX_SHIFT,
        "max_resize": FOLLOW_MAX_RESIZE,
        "redetect": [REDETECT_MARGIN, REDETECT_FACE_PX],
    }


class _LandmarkTracker:
    """:func:`track_landmarks`'s frame-by-frame pass over one span: the full-frame detector runs on
    the span's first frame and on every frame whose index is a multiple of ``restart_every``."""

    def __init__(
        self,
        detector: FaceDetector,
        detect_every: int,
        restart_every: int,
        reacquire_after: int,
        start: int,
        state: _TrackSelector | None,
    ) -> None:
        self.detector, self.detect_every, self.restart_every, self.start = (
            detector,
            detect_every,
            restart_every,
            start,
        )
        self.follows = detector.can_follow and detect_every > 1
        self.selector = copy.copy(state) if state is not None else _TrackSelector(reacquire_after)
        self.picked: list[Box | None] = []
        self.fitted: list[np.ndarray | None] = []
        self.entry: list[Box] = []
        self.previous: np.ndarray | None = None  # the last frame's landmarks (68, 2), None without a face
        self.since_detection = 0

    def feed(self, frame: np.ndarray) -> None:
        k = len(self.picked)
        box: Box | None = None
        points: np.ndarray | None = None
        restart = (self.start + k) % self.restart_every == 0
        if (
            self.follows
            and self.previous is not None
            and self.since_detection + 1 < self.detect_every
            and not restart
        ):
            guess = self.detector.box_from_landmarks(self.previous)
            if self.detector.redetect(frame, guess) is not None:
                points = self.detector.landmarks(frame, guess)
                if _plausible_step(points, self.previous):
                    box, self.since_detection = guess, self.since_detection + 1
                    self.selector.follow(guess)
                else:
                    points = None
        if box is None:
            candidates = self.detector.detect_faces(frame)
            if k == 0:
                self.entry = candidates
            box = self.selector.choose(candidates)
            points = None if box is None else self.detector.landmarks(frame, box)
            self.since_detection = 0
        self.picked.append(box)
        self.fitted.append(points)
        self.previous = points

    def finish(self, last: bool) -> TrackedSpan:
        n = len(self.picked)
        examined = list(range(self.start, self.start + n))
        return TrackedSpan(
            self.start, n, examined, self.picked, self.fitted, self.entry, copy.copy(self.selector)
        )


def track_landmarks(
    frames: Iterable[np.ndarray],
    detector: FaceDetector,
    *,
    detect_every: int,
    smoothing: float = 2.0,
    size_smoothing: float | None = None,
    reacquire_after: int = 10,
    source: str | Path = "<frames>",
    threads: int = 1,
    span: int = TRACK_SPAN,
) -> FaceTrack:
    """68 landmarks on every frame, as ``track_faces(every=1)`` but with the full-frame detector on
    only every ``detect_every``-th frame; a :class:`FaceTrack` with the same per-frame ``found``.

    On the other frames the face is followed: its box is the detector-convention box of the
    previous frame's landmarks (:meth:`FaceDetector.box_from_landmarks`), confirmed by the detector
    run on a small window around it (:meth:`FaceDetector.redetect`), and the landmarks are fitted
    in it. The full-frame detector runs (with :func:`track_faces`'s selection of the face that
    continues the track) every ``detect_every`` frames, on every frame whose index is a multiple
    of ``span``, and whenever the track is lost: no face on the previous frame, no face in the
    window, or landmarks whose bounding box jumped or changed size abnormally. A frame where that
    detection finds no face has no face (``found`` False), and the track starts again from the
    next detection. Detectors that cannot follow (:attr:`FaceDetector.can_follow`) detect on
    every frame.

    ``threads`` > 1 (with a :attr:`FaceDetector.thread_safe` detector) tracks the spans of ``span``
    frames in that many threads, with the same result
    (:func:`~edtalk_cli.video.spans.track_in_spans`).
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    if not detector.has_landmarks:
        raise ValueError(f"the '{detector.backend}' face detector gives no landmarks to follow a face with")

    def new_tracker(start: int, state: _TrackSelector | None) -> _LandmarkTracker:
        return _LandmarkTracker(detector, detect_every, span, reacquire_after, start, state)

    spans = track_in_spans(frames, new_tracker, span=span, threads=threads if detector.thread_safe else 1)
    return _assemble_spans(spans, detector, smoothing=smoothing, size_smoothing=size_smoothing, source=source)


def _assemble_spans(
    spans: list[TrackedSpan],
    detector: FaceDetector,
    *,
    smoothing: float,
    size_smoothing: float | None,
    source: str | Path,
) -> FaceTrack:
    """The :class:`FaceTrack` of the consecutive ``spans`` of a video."""
    n = sum(part.frames for part in spans)
    if n == 0:
        raise MediaError(f"no frames to track a face in: '{source}'")
    fitted = None if spans[0].fitted is None else [p for part in spans for p in part.fitted]
    return _assemble_track(
        n,
        [i for part in spans for i in part.examined],
        [b for part in spans for b in part.picked],
        fitted,
        detector.backend,
        smoothing=smoothing,
        size_smoothing=size_smoothing,
        source=source,
    )


def _assemble_track(
    n: int,
    examined: list[int],
    picked: list[Box | None],
    fitted: list[np.ndarray | None] | None,
    backend: str,
    *,
    smoothing: float,
    size_smoothing: float | None,
    source: str | Path,
) -> FaceTrack:
    """A :class:`FaceTrack` of ``n`` frames from the boxes ``picked`` on the ``examined`` frames
    (None: no face there) and the landmarks ``fitted`` per frame (None without a landmark backend)."""
    raw = np.full((n, 4), np.nan)
    for i, b in zip(examined, picked, strict=True):
        if b is not None:
            raw[i] = b.as_array()
    good = [i for i, b in zip(examined, picked, strict=True) if b is not None]
    if not good:
        raise MediaError(
            f"no face found in any of the {n} frames of '{source}' (detector: {backend})",
            hint="use a video in which a roughly frontal face is visible, or set 'crop: none' in the manifest",
        )

    # found: examined frames with a face, and the frames between two consecutive examined frames
    # that both had one (linearly interpolated). Every other frame holds the last good box.
    found = np.zeros(n, dtype=bool)
    filled = np.empty((n, 4))
    for j in range(len(examined)):
        i, b = examined[j], picked[j]
        if b is None:
            continue
        found[i] = True
        filled[i] = raw[i]
        if j + 1 < len(examined) and picked[j + 1] is not None:
            nxt = examined[j + 1]
            t = (np.arange(i + 1, nxt) - i) / (nxt - i)
            filled[i + 1 : nxt] = raw[i] * (1 - t[:, None]) + raw[nxt] * t[:, None]
            found[i + 1 : nxt] = True
    held = raw[good[0]]  # before the first detection: the first good box
    for i in range(n):
        if found[i]:
            held = filled[i]
        else:
            filled[i] = held
    missing = int(n - found.sum())

    # smooth centre and size separately (zero-phase)
    cx = (filled[:, 0] + filled[:, 2]) / 2
    cy = (filled[:, 1] + filled[:, 3]) / 2
    w = filled[:, 2] - filled[:, 0]
    h = filled[:, 3] - filled[:, 1]
    s_sigma = 3.0 * smoothing if size_smoothing is None else size_smoothing
    cx, cy = _smooth(cx, smoothing), _smooth(cy, smoothing)
    w, h = _smooth(w, s_sigma), _smooth(h, s_sigma)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    landmarks = None
    if fitted is not None:
        landmarks = np.full((n, 68, 2), np.nan)
        for i, points in enumerate(fitted):
            if found[i] and points is not None:
                landmarks[i] = points
        found &= np.isfinite(landmarks).all(axis=(1, 2))
        missing = int(n - found.sum())
    return FaceTrack(
        boxes=boxes,
        raw=raw,
        found=found,
        missing_frames=missing,
        backend=backend,
        landmarks=landmarks,
    )
