"""Judges: two small CNNs trained on renders of the synthetic world.

* :class:`FactorJudge` (global, whole frame) regresses the 68 landmarks and the head pose
  (and coarse mouth/expression factors) from a frame;
* :class:`EmotionJudge` looks at two landmark-aligned crops (eyes and brows; mouth) and
  classifies the emotion (8 classes, :data:`EMOTIONS`) and regresses the expression and
  mouth factors, which need more resolution than the global judge sees.

Both read square RGB frames of any size (resized to :data:`JUDGE_SIZE` with antialiasing);
:func:`judge_frames` runs both. Their weights ship next to this file as float16
safetensors; ``judges.json`` records the training commands and the metrics measured on
held-out identities. Retrain with ``python -m edtalk_cli.synthetic.judges.train``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edtalk_cli.synthetic.factors import EMOTIONS

JUDGE_SIZE = 96
JUDGE_DIR = Path(__file__).resolve().parent
FACTOR_WEIGHTS = JUDGE_DIR / "factor_judge.safetensors"
EMOTION_WEIGHTS = JUDGE_DIR / "emotion_judge.safetensors"
REPORT = JUDGE_DIR / "judges.json"

# Output layout of the factor judge and the normalisation of each target.
N_LANDMARKS = 68
POSE_SCALE = np.array([30.0, 15.0, 10.0, 0.08, 0.08, 0.06], dtype=np.float32)  # yaw..ty, scale-1
N_FACTOR_OUT = 2 * N_LANDMARKS + 6 + 2 + 7
# Landmarks refined by the emotion judge: brows and eyes in the upper crop, lips in the lower.
UPPER_POINTS = np.r_[17:27, 36:48]
MOUTH_POINTS = np.arange(48, 68)
N_EMOTION_OUT = len(EMOTIONS) + 7 + 2 + 2 * (len(UPPER_POINTS) + len(MOUTH_POINTS))
CROP = 64  # the two crops are stacked into one CROP x CROP image


class JudgeNet(nn.Module):
    """A small strided CNN: (N, 3, 96, 96) in [-1, 1] -> (N, n_out)."""

    def __init__(self, n_out: int, width: int = 24) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 6 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(5):  # 96 -> 48 -> 24 -> 12 -> 6 -> 3
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chans[-1] * 9, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(256, n_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CropNet(nn.Module):
    """CNN over the stacked eye/brow and mouth crops: (N, 3, 64, 64) -> (N, n_out)."""

    def __init__(self, n_out: int, width: int = 24) -> None:
        super().__init__()
        chans = [3, width, 32, 64, 96, 128]
        layers: list[nn.Module] = []
        for i in range(5):  # 64 -> 64 -> 32 -> 16 -> 8 -> 4
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chans[-1] * 16, 192),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(192, n_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def crop_frames(lms: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The two crop frames (centre, x axis, y axis, half width, half height) of each face.

    ``lms`` (N, 68, 2) pixel landmarks. Crop coordinates (u, v) in [-1, 1] map to the pixel
    ``centre + u * hw * ux + v * hh * uy``; the eye line sets the rotation and the eye
    distance the scale. Upper crop: eyes and brows; lower crop: the mouth.
    """
    e1 = lms[:, 36:42].mean(1)
    e2 = lms[:, 42:48].mean(1)
    d = e2 - e1
    ed = d.norm(dim=1).clamp(min=1.0)  # eye distance (pixels)
    ux = d / ed[:, None]  # along the eye line
    uy = torch.stack([-ux[:, 1], ux[:, 0]], 1)  # perpendicular, pointing down the face
    mouth = lms[:, 48:68].mean(1)
    return [
        (0.5 * (e1 + e2) - 0.3 * ed[:, None] * uy, ux, uy, 1.15 * ed, 0.55 * ed),
        (mouth, ux, uy, 1.0 * ed, 0.5 * ed),
    ]


def to_crop(p: torch.Tensor, frame: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Pixel points (N, K, 2) -> crop coordinates (N, K, 2) of one crop frame."""
    c, ux, uy, hw, hh = frame
    q = p - c[:, None]
    u = (q * ux[:, None]).sum(-1) / hw[:, None]
    v = (q * uy[:, None]).sum(-1) / hh[:, None]
    return torch.stack([u, v], -1)


def from_crop(uv: torch.Tensor, frame: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Inverse of :func:`to_crop`."""
    c, ux, uy, hw, hh = frame
    u = uv[..., 0:1] * hw[:, None, None]
    v = uv[..., 1:2] * hh[:, None, None]
    return c[:, None] + u * ux[:, None] + v * uy[:, None]


def crop_regions(x: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
    """Landmark-aligned crops of preprocessed frames.

    ``x`` (N, 3, S, S) in [-1, 1], ``lms`` (N, 68, 2) pixel landmarks in the same frames.
    Returns (N, 3, 64, 64): the top half is the eyes and brows, the bottom half the mouth,
    both rotated upright and scaled by the eye distance (see :func:`crop_frames`).
    """
    n, _, h, w = x.shape
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype)
    out = []
    for centre, ux, uy, hw, hh in crop_frames(lms.to(x.dtype)):
        a = torch.stack([ux * hw[:, None] * scale, uy * hh[:, None] * scale], 2)  # (N, 2, 2)
        t = (centre + 0.5) * scale - 1.0
        theta = torch.cat([a, t[:, :, None]], 2)
        grid = F.affine_grid(theta, [n, 3, CROP // 2, CROP], align_corners=False)
        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.cat(out, 2)


def preprocess(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) frames -> float32 (N, 3, 96, 96) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(frames))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected square RGB frames (N, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != JUDGE_SIZE:
        x = F.interpolate(
            x, size=(JUDGE_SIZE, JUDGE_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
    return x.contiguous()


def encode_factors(
    landmarks: np.ndarray, pose: np.ndarray, mouth: np.ndarray, expr: np.ndarray, size: int
) -> np.ndarray:
    """Normalised regression targets (N, 151) from ground truth at frame size ``size``."""
    lm = (landmarks + 0.5) / size * 2.0 - 1.0  # pixel centres -> [-1, 1]
    p = pose.copy()
    p[:, 5] -= 1.0
    p = p / POSE_SCALE
    m = np.stack([mouth[:, 0] * 2 - 1, mouth[:, 1]], 1)
    e = expr.copy()
    e[:, 5:7] = e[:, 5:7] * 2 - 1  # wrinkle, blink in [0, 1]
    return np.concatenate([lm.reshape(len(lm), -1), p, m, e], axis=1).astype(np.float32)


def decode_factors(out: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_factors` for network outputs."""
    n = len(out)
    lm = out[:, : 2 * N_LANDMARKS].reshape(n, N_LANDMARKS, 2)
    lm = (lm + 1.0) / 2.0 * size - 0.5
    o = 2 * N_LANDMARKS
    pose = out[:, o : o + 6] * POSE_SCALE
    pose[:, 5] += 1.0
    jaw = (out[:, o + 6] + 1) / 2
    lip = out[:, o + 7]
    e = out[:, o + 8 : o + 15].copy()
    e[:, 5:7] = (e[:, 5:7] + 1) / 2
    return {
        "landmarks": lm.astype(np.float32),
        "pose": pose.astype(np.float32),
        "mouth": np.stack([jaw, lip], 1).astype(np.float32),
        "expression": e.astype(np.float32),
    }


def _load(net: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    from edtalk_cli.errors import WeightsError

    if not path.is_file():
        raise WeightsError(
            f"judge weights '{path}' not found",
            hint="train them with `python -m edtalk_cli.synthetic.judges.train`",
        )
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    net.load_state_dict(state)
    return net.eval()


class FactorJudge:
    """Landmark / pose / mouth / expression regressor."""

    def __init__(self, path: Path | str = FACTOR_WEIGHTS) -> None:
        self.net = _load(JudgeNet(N_FACTOR_OUT), Path(path))

    @torch.no_grad()
    def predict(self, frames: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Factors of uint8 frames (N, S, S, 3); landmarks in the frames' own pixels."""
        frames = np.asarray(frames)
        size = frames.shape[-2]
        outs = [self.net(preprocess(frames[i : i + batch])).numpy() for i in range(0, len(frames), batch)]
        return decode_factors(np.concatenate(outs), size)


class EmotionJudge:
    """Emotion classifier and expression/mouth regressor on landmark-aligned crops."""

    def __init__(self, path: Path | str = EMOTION_WEIGHTS) -> None:
        self.net = _load(CropNet(N_EMOTION_OUT), Path(path))

    @torch.no_grad()
    def predict_all(self, frames: np.ndarray, landmarks: np.ndarray | None = None, batch: int = 256) -> dict:
        """``emotion_proba`` (N, 8), ``emotion`` (N,), ``expression`` (N, 7), ``mouth`` (N, 2)
        and refined ``landmarks`` (N, 68, 2; brows, eyes and lips from the crops).

        ``landmarks`` (N, 68, 2) in the frames' pixels place the crops; predicted with
        :class:`FactorJudge` when omitted.
        """
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if landmarks is None:
            landmarks = _factor_judge().predict(frames)["landmarks"]
        scale = JUDGE_SIZE / frames.shape[-2]
        outs, lms = [], []
        for i in range(0, len(frames), batch):
            x = preprocess(frames[i : i + batch])
            lm = torch.as_tensor(np.asarray(landmarks[i : i + batch]), dtype=torch.float32)
            lm = (lm + 0.5) * scale - 0.5
            out = self.net(crop_regions(x, lm))
            outs.append(out.numpy())
            lms.append(refine_landmarks(lm, out).numpy())
        res = decode_emotion(np.concatenate(outs))
        res["landmarks"] = ((np.concatenate(lms) + 0.5) / scale - 0.5).astype(np.float32)
        return res

    def predict(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N,) predicted emotion indices."""
        return self.predict_all(frames, landmarks)["emotion"]


_K = len(EMOTIONS)
_LM0 = _K + 9  # first landmark output of the emotion judge


def refine_landmarks(lms: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Replace brow, eye and lip points of ``lms`` (N, 68, 2) by the crop judge's (``out``)."""
    frames = crop_frames(lms)
    nu = len(UPPER_POINTS)
    uv = out[:, _LM0:].reshape(len(out), -1, 2)
    res = lms.clone()
    res[:, UPPER_POINTS] = from_crop(uv[:, :nu], frames[0])
    res[:, MOUTH_POINTS] = from_crop(uv[:, nu:], frames[1])
    return res


def landmark_targets(lms: torch.Tensor, crop_lms: torch.Tensor) -> torch.Tensor:
    """Crop-coordinate targets (N, 84) of the true landmarks ``lms`` for crops placed by
    ``crop_lms`` (the landmarks the crops were cut with)."""
    frames = crop_frames(crop_lms)
    up = to_crop(lms[:, UPPER_POINTS], frames[0])
    mo = to_crop(lms[:, MOUTH_POINTS], frames[1])
    return torch.cat([up, mo], 1).reshape(len(lms), -1)


def encode_emotion_targets(mouth: np.ndarray, expr: np.ndarray) -> np.ndarray:
    """Regression targets (N, 9) of the emotion judge: expression (7) then mouth (2)."""
    e = expr.copy()
    e[:, 5:7] = e[:, 5:7] * 2 - 1
    m = np.stack([mouth[:, 0] * 2 - 1, mouth[:, 1]], 1)
    return np.concatenate([e, m], 1).astype(np.float32)


def decode_emotion(out: np.ndarray) -> dict[str, np.ndarray]:
    k = len(EMOTIONS)
    logits = out[:, :k]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e = out[:, k : k + 7].copy()
    e[:, 5:7] = (e[:, 5:7] + 1) / 2
    m = out[:, k + 7 : k + 9].copy()
    m[:, 0] = (m[:, 0] + 1) / 2
    return {"emotion_proba": p, "emotion": p.argmax(1), "expression": e, "mouth": m}


@lru_cache(maxsize=1)
def _factor_judge() -> FactorJudge:
    return FactorJudge()


@lru_cache(maxsize=1)
def _emotion_judge() -> EmotionJudge:
    return EmotionJudge()


def judge_frames(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Everything the judges see in uint8 frames (N, S, S, 3), with the shipped weights.

    ``pose`` and the outline/nose ``landmarks`` come from the factor judge; brow, eye and lip
    landmarks, ``mouth``, ``expression``, ``emotion`` and ``emotion_proba`` from the emotion
    judge's crops.
    """
    f = _factor_judge().predict(frames)
    e = _emotion_judge().predict_all(frames, f["landmarks"])
    return {"pose": f["pose"], **e}


def report() -> dict:
    """The shipped judges' training command and held-out accuracy (``judges.json``)."""
    return json.loads(REPORT.read_text())
