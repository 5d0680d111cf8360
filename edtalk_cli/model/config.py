"""Model configuration shared by every EDTalk network.

The defaults are the official configuration (size 256, style 512, banks 20/6/10,
channel multiplier 1). Smaller configurations keep the same module tree and the same
state_dict key names, only with smaller shapes, so a model trained on a CPU saves and
loads exactly like the official checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the EDTalk generators and Audio2Lip."""

    size: int = 256  # image side in pixels, a power of two in [64, 512]
    style_dim: int = 512  # latent width (w, motion directions, modulation styles)
    lip_dim: int = 20  # mouth bank size
    pose_dim: int = 6  # pose bank size
    exp_dim: int = 10  # expression bank size (full model only)
    channel_multiplier: int = 1  # decoder width multiplier at 64 px and above (official: 1)
    channel_base: int = 16384  # channels at resolution r are min(channel_max, channel_base // r)
    channel_max: int = 512
    eem_hidden: int = 128  # hidden width of the EEM AdaIN MLPs
    audio_widths: tuple[int, ...] = (32, 64, 128, 256, 512)  # Audio2Lip stage widths
    orthogonal_bases: bool = True  # False: the paper's ablation, unconstrained unit directions (no QR)

    def __post_init__(self) -> None:
        if self.size < 64 or self.size > 512 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two in [64, 512], got {self.size}")
        for name in ("style_dim", "lip_dim", "pose_dim", "exp_dim", "channel_max", "eem_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if len(self.audio_widths) != 5:
            raise ValueError("audio_widths needs 5 stage widths")
        if self.channel_multiplier != 1:
            raise ValueError(
                "channel_multiplier must be 1: the decoder adds warped encoder features to its own "
                "state, so both need the same widths (use channel_base/channel_max to resize)"
            )
        if self.lip_dim + self.pose_dim + self.exp_dim > self.style_dim:
            raise ValueError("the banks need at most style_dim columns in total for the QR")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_levels(self) -> int:
        """Decoder levels: resolutions 8, 16, ..., size."""
        return self.log_size - 2

    def encoder_channels(self, resolution: int) -> int:
        return min(self.channel_max, self.channel_base // resolution)

    def decoder_channels(self, resolution: int) -> int:
        width = self.channel_base // resolution
        if resolution >= 64:
            width *= self.channel_multiplier
        return min(self.channel_max, width)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["audio_widths"] = list(self.audio_widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        data = dict(data)
        if "audio_widths" in data:
            data["audio_widths"] = tuple(data["audio_widths"])
        return cls(**data)


OFFICIAL_CONFIG = ModelConfig()
