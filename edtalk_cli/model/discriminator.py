"""The LIA / StyleGAN2 discriminator of EDTalk's training code (``dis`` in training checkpoints).

Same layers as the encoder's trunk (1x1 stem, one downsampling ResBlock per octave down to
4x4), then a minibatch standard-deviation feature, a 3x3 conv and two linear layers. At the
official configuration it has the 50 state-dict keys of spec Appendix D (24.0M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from edtalk_cli.model.config import ModelConfig
from edtalk_cli.model.layers import ConvLayer, EqualLinear, ResBlock


def minibatch_stddev(features: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel: the mean std over groups of ``group_size`` samples (StyleGAN2).

    features (B, C, H, W) -> (B, C + 1, H, W). Samples ``i`` and ``i + B/g`` share a group,
    as in the original ``view(group, -1, ...)``. When B is not divisible by ``group_size``
    (where the original raises an error), the largest divisor of B below it is used.
    """
    batch, channels, height, width = features.shape
    group = min(batch, group_size)
    while batch % group:
        group -= 1
    grouped = features.view(group, batch // group, channels, height, width)
    std = torch.sqrt(grouped.var(0, unbiased=False) + 1e-8)  # (B/g, C, H, W)
    std = std.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)  # (B/g, 1, 1, 1)
    std = std.repeat(group, 1, height, width)  # (B, 1, H, W)
    return torch.cat([features, std], dim=1)


class Discriminator(nn.Module):
    """Real/fake logit per image: (B, 3, S, S) in [-1, 1] -> (B, 1)."""

    def __init__(self, config: ModelConfig, stddev_group: int = 4) -> None:
        super().__init__()
        cfg = config
        self.stddev_group = stddev_group
        layers: list[nn.Module] = [ConvLayer(3, cfg.encoder_channels(cfg.size), 1)]
        in_ch = cfg.encoder_channels(cfg.size)
        for log_res in range(cfg.log_size, 2, -1):
            out_ch = cfg.encoder_channels(2 ** (log_res - 1))
            layers.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        self.final_conv = ConvLayer(in_ch + 1, in_ch, 3)
        self.final_linear = nn.Sequential(
            EqualLinear(in_ch * 4 * 4, in_ch, activate=True),
            EqualLinear(in_ch, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.convs(image)  # (B, C, 4, 4)
        features = self.final_conv(minibatch_stddev(features, self.stddev_group))
        return self.final_linear(features.flatten(1))
