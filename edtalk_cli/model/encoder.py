"""The appearance/motion encoder E (``enc.net_app``)."""

from __future__ import annotations

import torch
from torch import nn

from edtalk_cli.model.config import ModelConfig
from edtalk_cli.model.layers import ConvLayer, EqualConv2d, ResBlock


class EncoderApp(nn.Module):
    """1x1 stem, one downsampling ResBlock per octave down to 4x4, then a 4x4 conv to the latent."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        cfg = config
        self.convs = nn.ModuleList([ConvLayer(3, cfg.encoder_channels(cfg.size), 1)])
        in_ch = cfg.encoder_channels(cfg.size)
        for log_res in range(cfg.log_size, 2, -1):
            out_ch = cfg.encoder_channels(2 ** (log_res - 1))
            self.convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs.append(EqualConv2d(in_ch, cfg.style_dim, 4, padding=0, bias=False))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """image (B, 3, S, S) in [-1, 1] -> latent w (B, style), features coarse-to-fine.

        The features are the outputs at 8, 16, ..., S pixels: one per decoder level.
        """
        outputs = []
        h = image
        for layer in self.convs:
            h = layer(h)
            outputs.append(h)
        latent = outputs[-1].flatten(1)
        feats = outputs[::-1][2:]
        return latent, feats


class Encoder(nn.Module):
    """Wrapper holding ``net_app`` (kept for the checkpoint key prefix ``enc.net_app``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.net_app = EncoderApp(config)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net_app(image)
