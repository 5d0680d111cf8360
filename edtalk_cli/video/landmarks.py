"""68-point face landmarks (iBUG 300-W order, as dlib and the official crop use), offline.

Two backends:

* ``dlib``: dlib's HOG frontal-face detector and its 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat``). Both ship inside wheels from the package index
  (``dlib-bin`` and ``face-recognition-models``), so nothing is downloaded. Detection runs on a
  copy downscaled to a longest side of ``max_side`` px (upsampled once more when nothing is found);
  the landmarks are fitted on the full-resolution image.
* ``fan``: face-alignment's S3FD detector and 2D-FAN landmark network, used only when *both*
  weight files are already cached in ``$TORCH_HOME/hub/checkpoints/`` (it never downloads).

``backend="auto"`` picks ``fan`` when its weights are cached, else ``dlib``.

Licence note: the 68-point model was trained by Davis King on the iBUG 300-W data set, whose
licence excludes commercial use; dlib's author advises checking with Imperial College London
before using the model file in a commercial product (see docs/manifest.md, "Faces").
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edtalk_cli.errors import MediaError, WeightsError
from edtalk_cli.video.boxes import Box, downscale, s3fd_weights_path

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
def _dlib_models() -> tuple[object, object]:
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
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


class _DlibBackend:
    name = "dlib"

    def __init__(self, max_side: int) -> None:
        self._detector, self._predictor = _dlib_models()
        self.max_side = max_side

    def boxes(self, image: np.ndarray) -> list[Box]:
        small, back = downscale(image, self.max_side)
        small = np.ascontiguousarray(small)
        for upsample in (0, 1):
            rects, scores, _ = self._detector.run(small, upsample, 0.0)
            if len(rects):
                return [
                    Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s)).scaled(back)
                    for r, s in zip(rects, scores)
                ]
        return []

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        rect = dlib.rectangle(round(box.x0), round(box.y0), round(box.x1) - 1, round(box.y1) - 1)
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class _FanBackend:
    name = "fan"

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
        """Face boxes of an RGB uint8 image (H, W, 3), without landmarks, in detector order."""
        return self._impl.boxes(_rgb(image))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 image (H, W, 3) with its landmarks, largest first."""
        image = _rgb(image)
        boxes = sorted(self._impl.boxes(image), key=lambda b: b.area, reverse=True)
        return [Face(b, self._impl.landmarks(image, b)) for b in boxes]

    def largest(self, image: np.ndarray) -> Face | None:
        """The largest face, or None. Landmarks are fitted for that face only."""
        image = _rgb(image)
        boxes = self._impl.boxes(image)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.area)
        return Face(box, self._impl.landmarks(image, box))

    def landmarks_in(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks (68, 2) of the face in ``box`` (e.g. a tracked box), without detecting."""
        return self._impl.landmarks(_rgb(image), box)

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


def _rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr[..., :3]
