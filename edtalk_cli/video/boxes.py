"""Face boxes and the helpers both face backends share (box geometry, downscaling, the image a
backend is given, S3FD weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["S3FD_FILENAME", "S3FD_URL", "Box", "backend_image", "downscale", "s3fd_weights_path"]

S3FD_FILENAME = "s3fd-619a316812.pth"
S3FD_URL = f"https://www.adrianbulat.com/downloads/python-fan/{S3FD_FILENAME}"


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates (x right, y down), with a detection score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @classmethod
    def from_center(cls, cx: float, cy: float, w: float, h: float, score: float = 1.0) -> Box:
        """Box with centre (cx, cy) and size w x h."""
        return cls(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score)

    def scaled(self, factor: float) -> Box:
        """All coordinates multiplied by ``factor`` (to map between image scales)."""
        return Box(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor, self.score)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when disjoint)."""
        iw = min(self.x1, other.x1) - max(self.x0, other.x0)
        ih = min(self.y1, other.y1) - max(self.y0, other.y0)
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        return inter / (self.area + other.area - inter)

    def as_array(self) -> np.ndarray:
        """[x0, y0, x1, y1] as float64."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)


def s3fd_weights_path() -> Path | None:
    """The cached S3FD weights in ``torch.hub.get_dir()/checkpoints`` (honours $TORCH_HOME), or None."""
    import torch.hub

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    exact = folder / S3FD_FILENAME
    if exact.is_file():
        return exact
    others = sorted(folder.glob("s3fd*.pth")) if folder.is_dir() else []
    return others[0] if others else None


def backend_image(image: np.ndarray, *, takes_grey: bool) -> np.ndarray:
    """A uint8 frame, grey (H, W) or RGB(A) (H, W, 3|4), as a detector backend is given it.

    Backends that work on grey (``takes_grey``: dlib's HOG detector and shape predictor, the LBP
    cascade) get a grey frame as it is and an RGB one unchanged (they convert it themselves); the
    others (S3FD, FAN) get a grey frame repeated to 3 channels. Alpha is dropped.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        return arr if takes_grey else np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {arr.shape}")
    return arr[..., :3]


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Image resized (INTER_AREA) so its longest side is <= max_side; returns (image, original/new)."""
    import cv2

    h, w = image.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return image, 1.0
    factor = max_side / longest
    small = cv2.resize(
        image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    return small, longest / max_side
