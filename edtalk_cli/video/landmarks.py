"""68-point face landmarks (iBUG 300-W order, as dlib and the official crop use), offline.

Two backends:

* ``dlib``: dlib's HOG frontal-face detector and its 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat``). Both ship inside wheels from the package index
  (``dlib-bin`` and ``face-recognition-models``), so nothing is downloaded. Detection runs on a
  copy downscaled to a longest side of ``max_side`` px (upsampled once more when nothing is found);
  the landmarks are fitted on the full-resolution image. Both work on grey (H, W) frames as they
  are (RGB frames are converted by dlib itself). A face followed through a video is
  confirmed by the detector on a small window around its expected box (:meth:`LandmarkDetector.
  redetect`), that box derived from the previous frame's landmarks (``box_from_landmarks``).
* ``fan``: face-alignment's S3FD detector and 2D-FAN landmark network, used only when *both*
  weight files are already cached in ``$TORCH_HOME/hub/checkpoints/`` (it never downloads). They
  take RGB: a grey frame is repeated to 3 channels (:func:`~edtalk_cli.video.boxes.backend_image`).

``backend="auto"`` picks ``fan`` when its weights are cached, else ``dlib``.

Licence note: the 68-point model was trained by Davis King on the iBUG 300-W data set, whose
licence excludes commercial use; dlib's author advises checking with Imperial College London
before using the model file in a commercial product (see docs/manifest.md, "Faces").
"""

from __future__ import annotations

import importlib.util
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edtalk_cli.errors import MediaError, WeightsError
from edtalk_cli.video.boxes import Box, backend_image, downscale, s3fd_weights_path

__all__ = [
    "FAN_FILENAME",
    "LANDMARK_GROUPS",
    "Face",
    "LandmarkDetector",
    "dlib_available",
    "dlib_model_path",
    "fan_weights_path",
]

FAN_FILENAME = "2DFAN4-11f355bf06.pth.tar"
DLIB_68_FILENAME = "shape_predictor_68_face_landmarks.dat"

# dlib's HOG box from the bounding rectangle (x0, y0, w, h) of the 68 landmarks fitted in it: a
# square of side 1.007 w centred 0.029 w left of and 0.077 h above the rectangle's centre (medians
# over 900 frames of ../shared/real/*.mp4 at 256 px, 450 px and placed in a 1080p canvas; the HOG
# box itself varies by +-6 % from frame to frame, its pyramid's size steps being 20 %)
_DLIB_BOX_SIDE = 1.007
_DLIB_BOX_SHIFT_X = -0.029
_DLIB_BOX_SHIFT_Y = -0.077
# re-detection around a followed face: a window of (1 + 2 x REDETECT_MARGIN) box sides, resized so
# the box is REDETECT_FACE_PX wide; the HOG window being 80 px, faces down to 0.83x the box are seen,
# and the pyramid has about four levels (2.1 ms at 256 px, 3.0 at 1080p, against 5.5 and 20 for
# a full-frame detection, 1 thread)
REDETECT_MARGIN = 0.3
REDETECT_FACE_PX = 96

# index ranges of the iBUG 68-point layout
LANDMARK_GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose": range(27, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lips": range(48, 60),
    "inner_lips": range(60, 68),
}


@dataclass(frozen=True)
class Face:
    """One detected face: its detector box and 68 landmarks (x, y) in image pixels, float64 (68, 2)."""

    box: Box
    landmarks: np.ndarray

    @property
    def landmark_box(self) -> Box:
        """The tight box around the 68 landmarks."""
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        return Box(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), self.box.score)


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (face_recognition_models imports
    pkg_resources at import time, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def dlib_available() -> bool:
    """True when dlib and its 68-point model are installed (nothing is loaded)."""
    return importlib.util.find_spec("dlib") is not None and dlib_model_path() is not None


def dlib_model_path() -> Path | None:
    """The 68-point shape predictor shipped by ``face-recognition-models``, or None."""
    folder = _package_dir("face_recognition_models")
    if folder is None:
        return None
    path = folder / "models" / DLIB_68_FILENAME
    return path if path.is_file() else None


def fan_weights_path() -> Path | None:
    """The cached 2D-FAN weights in ``torch.hub.get_dir()/checkpoints``, or None."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / FAN_FILENAME
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _dlib_predictor() -> object:
    """dlib's 68-point shape predictor (one per process: it is read-only, so threads share it)."""
    try:
        import dlib
    except ImportError as exc:
        raise WeightsError(
            f"the offline landmark detector needs dlib ({exc})",
            hint="pip install dlib-bin face-recognition-models",
        ) from None
    model = dlib_model_path()
    if model is None:
        raise WeightsError(
            f"dlib's 68-point landmark model ({DLIB_68_FILENAME}) is not installed",
            hint="pip install face-recognition-models",
        )
    return dlib.shape_predictor(str(model))


# dlib's HOG detector keeps the image pyramid of its last call in the object, so two threads
# running one detector corrupt each other's memory (the process aborts): each call borrows an
# idle detector, and as many exist as calls ever ran at once (making one costs about 0.2 s)
_idle_hog_detectors: queue.SimpleQueue = queue.SimpleQueue()


@contextmanager
def _hog_detector() -> Iterator[object]:
    """An idle dlib HOG face detector, this caller's alone until the block ends."""
    try:
        detector = _idle_hog_detectors.get_nowait()
    except queue.Empty:
        import dlib

        detector = dlib.get_frontal_face_detector()
    try:
        yield detector
    finally:
        _idle_hog_detectors.put(detector)


class _DlibBackend:
    name = "dlib"
    takes_grey = True  # the HOG detector and the shape predictor take 2-D uint8 arrays
    thread_safe = True  # each call borrows its own HOG detector; the shape predictor is read-only

    def __init__(self, max_side: int) -> None:
        self._predictor = _dlib_predictor()
        self.max_side = max_side

    def boxes(self, image: np.ndarray) -> list[Box]:
        small, back = downscale(image, self.max_side)
        small = np.ascontiguousarray(small)
        with _hog_detector() as detector:
            for upsample in (0, 1):
                rects, scores, _ = detector.run(small, upsample, 0.0)
                if len(rects):
                    return [
                        Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s)).scaled(back)
                        for r, s in zip(rects, scores)
                    ]
        return []

    def window_boxes(self, window: np.ndarray) -> list[Box]:
        """Faces in a small window already scaled to the detector's face size (no upsampling)."""
        with _hog_detector() as detector:
            rects, scores, _ = detector.run(np.ascontiguousarray(window), 0, 0.0)
        return [
            Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s)) for r, s in zip(rects, scores)
        ]

    @staticmethod
    def box_from_landmarks(points: np.ndarray) -> Box:
        """The box the HOG detector would give the face whose landmarks are ``points`` (68, 2)."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        w, h = hi - lo
        cx = (lo[0] + hi[0]) / 2 + _DLIB_BOX_SHIFT_X * w
        cy = (lo[1] + hi[1]) / 2 + _DLIB_BOX_SHIFT_Y * h
        return Box.from_center(float(cx), float(cy), _DLIB_BOX_SIDE * w, _DLIB_BOX_SIDE * w)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        rect = dlib.rectangle(round(box.x0), round(box.y0), round(box.x1) - 1, round(box.y1) - 1)
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class _FanBackend:
    name = "fan"
    takes_grey = False  # S3FD and FAN take RGB
    thread_safe = False  # not established: one thread at a time

    def __init__(self, s3fd: Path, device: str, max_side: int) -> None:
        import face_alignment

        # both files are cached, so load_file_from_url reads them and never downloads
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            compile=False,
            face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(s3fd)},
        )
        self.max_side = max_side

    def boxes(self, image: np.ndarray) -> list[Box]:
        small, back = downscale(image, self.max_side)
        found = self._fa.face_detector.detect_from_image(np.ascontiguousarray(small))
        return [Box(*(float(v) for v in b[:4]), float(b[4])).scaled(back) for b in found]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        points = self._fa.get_landmarks_from_image(
            np.ascontiguousarray(image), detected_faces=[np.array([box.x0, box.y0, box.x1, box.y1])]
        )
        return np.asarray(points[0][:, :2], dtype=np.float64)

    def window_boxes(self, window: np.ndarray) -> list[Box]:
        found = self._fa.face_detector.detect_from_image(np.ascontiguousarray(window))
        return [Box(*(float(v) for v in b[:4]), float(b[4])) for b in found]

    box_from_landmarks = None  # S3FD's box convention was not measured: such faces are detected every frame


class LandmarkDetector:
    """Faces with 68 landmarks: ``"auto"``, ``"dlib"`` or ``"fan"`` (see the module docstring).

    ``.backend`` names the one in use (for logs, caches and fingerprints).
    """

    BACKENDS = ("auto", "dlib", "fan")

    def __init__(self, backend: str = "auto", *, device: str = "cpu", max_side: int = 640) -> None:
        if backend not in self.BACKENDS:
            raise ValueError(f"landmark backend must be one of {', '.join(self.BACKENDS)}; got {backend!r}")
        s3fd = s3fd_weights_path() if backend in ("auto", "fan") else None
        fan = fan_weights_path() if backend in ("auto", "fan") else None
        if backend == "fan" and (s3fd is None or fan is None):
            raise WeightsError(
                "face-alignment weights (S3FD and 2D-FAN) are not both cached",
                hint="place s3fd-619a316812.pth and 2DFAN4-11f355bf06.pth.tar in $TORCH_HOME/hub/checkpoints, "
                "or use the 'dlib' (or 'auto') landmark backend",
            )
        self._impl: _DlibBackend | _FanBackend
        if s3fd is not None and fan is not None:
            self._impl = _FanBackend(s3fd, device, max_side)
        else:
            self._impl = _DlibBackend(max_side)

    @property
    def backend(self) -> str:
        """Name of the backend in use: ``"dlib"`` or ``"fan"``."""
        return self._impl.name

    def boxes(self, image: np.ndarray) -> list[Box]:
        """Face boxes of a uint8 image, grey (H, W) or RGB (H, W, 3), without landmarks, in detector order."""
        return self._impl.boxes(self._image(image))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in a uint8 image, grey (H, W) or RGB (H, W, 3), with its landmarks, largest first."""
        image = self._image(image)
        boxes = sorted(self._impl.boxes(image), key=lambda b: b.area, reverse=True)
        return [Face(b, self._impl.landmarks(image, b)) for b in boxes]

    def largest(self, image: np.ndarray) -> Face | None:
        """The largest face, or None. Landmarks are fitted for that face only."""
        image = self._image(image)
        boxes = self._impl.boxes(image)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.area)
        return Face(box, self._impl.landmarks(image, box))

    def landmarks_in(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks (68, 2) of the face in ``box`` (e.g. a tracked box), without detecting."""
        return self._impl.landmarks(self._image(image), box)

    @property
    def takes_grey(self) -> bool:
        """True when the backend works on grey frames (dlib); the others get them as RGB."""
        return self._impl.takes_grey

    @property
    def thread_safe(self) -> bool:
        """True when several threads may use this detector at once (dlib)."""
        return self._impl.thread_safe

    def _image(self, image: np.ndarray) -> np.ndarray:
        return backend_image(image, takes_grey=self._impl.takes_grey)

    @property
    def can_follow(self) -> bool:
        """True when a face box can be derived from landmarks (:meth:`box_from_landmarks`), so a
        video's face can be followed from frame to frame without the full-frame detector."""
        return self._impl.box_from_landmarks is not None

    def box_from_landmarks(self, points: np.ndarray) -> Box:
        """The detector-convention box of the face whose 68 landmarks are ``points`` (68, 2)."""
        if self._impl.box_from_landmarks is None:
            raise ValueError(f"the '{self.backend}' backend has no box-from-landmarks mapping")
        return self._impl.box_from_landmarks(points)

    def redetect(self, image: np.ndarray, box: Box) -> Box | None:
        """The face detected near ``box`` (IoU > 0.3), or None: the detector runs only on a window of
        ``1 + 2 * REDETECT_MARGIN`` box sides around it, scaled so the box is ``REDETECT_FACE_PX`` wide."""
        import cv2

        image = self._image(image)
        h_img, w_img = image.shape[:2]
        side = max(box.width, box.height)
        if side < 4:
            return None
        reach = (0.5 + REDETECT_MARGIN) * side
        x0, y0 = max(0, int(box.cx - reach)), max(0, int(box.cy - reach))
        x1, y1 = min(w_img, int(np.ceil(box.cx + reach))), min(h_img, int(np.ceil(box.cy + reach)))
        if x1 - x0 < side / 2 or y1 - y0 < side / 2:
            return None
        scale = REDETECT_FACE_PX / side
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        window = cv2.resize(
            image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
        sx, sy = (x1 - x0) / size[0], (y1 - y0) / size[1]
        found = [
            Box(b.x0 * sx + x0, b.y0 * sy + y0, b.x1 * sx + x0, b.y1 * sy + y0, b.score)
            for b in self._impl.window_boxes(window)
        ]
        best = max(found, key=box.iou, default=None)
        return best if best is not None and box.iou(best) > 0.3 else None

    def find(self, image: np.ndarray, source: str | Path) -> Face:
        """The largest face of an image read from ``source``; :class:`MediaError` naming it when none."""
        face = self.largest(image)
        if face is None:
            raise MediaError(
                f"no face found in '{source}' (landmark detector: {self.backend})",
                hint="use an image with a clearly visible, roughly frontal face, or set `crop: none` "
                "if the image is already a face crop",
            )
        return face

    def __repr__(self) -> str:
        return f"LandmarkDetector(backend={self.backend!r})"
