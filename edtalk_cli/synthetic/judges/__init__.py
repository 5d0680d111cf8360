"""Judges: two small CNNs trained on renders of the synthetic world.

* :class:`FactorJudge` regresses the 68 landmarks, the head pose, the mouth (jaw, lip) and
  the expression factors from a frame;
* :class:`EmotionJudge` classifies the frame's emotion (8 classes, :data:`EMOTIONS`).

Both read square RGB frames of any size (resized to :data:`JUDGE_SIZE` with antialiasing).
Their weights ship next to this file as safetensors (float16); ``judges.json`` records the
training command and the accuracy measured on held-out identities. Retrain with
``python -m edtalk_cli.synthetic.judges.train`` (see that module).
"""

from __future__ import annotations

import json
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
    """8-way emotion classifier."""

    def __init__(self, path: Path | str = EMOTION_WEIGHTS) -> None:
        self.net = _load(JudgeNet(len(EMOTIONS)), Path(path))

    @torch.no_grad()
    def predict_proba(self, frames: np.ndarray, batch: int = 256) -> np.ndarray:
        """(N, 8) class probabilities, columns in EMOTIONS order."""
        frames = np.asarray(frames)
        outs = [
            torch.softmax(self.net(preprocess(frames[i : i + batch])), 1).numpy()
            for i in range(0, len(frames), batch)
        ]
        return np.concatenate(outs)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """(N,) predicted emotion indices."""
        return self.predict_proba(frames).argmax(1)


def report() -> dict:
    """The shipped judges' training command and held-out accuracy (``judges.json``)."""
    return json.loads(REPORT.read_text())
