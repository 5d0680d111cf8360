"""Audio2Lip: Wav2Lip-style mel-window CNN -> mouth coefficients (``Audio2Lip.pt['audio2lip']``)."""

from __future__ import annotations

import torch
from torch import nn

from edtalk_cli.model.config import ModelConfig


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d -> (+x) -> ReLU, keyed ``conv_block.0`` / ``conv_block.1``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding), nn.BatchNorm2d(out_ch)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Audio2Lip(nn.Module):
    """(N, 1, 80, 16) mel windows -> (N, lip_dim); also accepts (B, T, 1, 80, 16) -> (B, T, lip_dim)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = config or ModelConfig()
        w1, w2, w3, w4, w5 = cfg.audio_widths
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, w1, 3, 1, 1),
            ConvBlock(w1, w1, 3, 1, 1, residual=True),
            ConvBlock(w1, w1, 3, 1, 1, residual=True),
            ConvBlock(w1, w2, 3, (3, 1), 1),
            ConvBlock(w2, w2, 3, 1, 1, residual=True),
            ConvBlock(w2, w2, 3, 1, 1, residual=True),
            ConvBlock(w2, w3, 3, 3, 1),
            ConvBlock(w3, w3, 3, 1, 1, residual=True),
            ConvBlock(w3, w3, 3, 1, 1, residual=True),
            ConvBlock(w3, w4, 3, (3, 2), 1),
            ConvBlock(w4, w4, 3, 1, 1, residual=True),
            ConvBlock(w4, w5, 3, 1, 0),
            ConvBlock(w5, w5, 1, 1, 0),
        )
        self.mapping = nn.Linear(w5, cfg.lip_dim)
        nn.init.zeros_(self.mapping.bias)

    def forward(self, mel_windows: torch.Tensor) -> torch.Tensor:
        lead_shape = mel_windows.shape[:-3]
        x = mel_windows.reshape(-1, *mel_windows.shape[-3:])  # (N, 1, 80, 16)
        features = self.audio_encoder(x).flatten(1)  # (N, w5)
        return self.mapping(features).reshape(*lead_shape, -1)
