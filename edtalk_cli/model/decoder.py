"""The flow-warping decoder G (LIA ``Synthesis``) with EDTalk's expression injection (EEM).

Per level the decoder upsamples its hidden state, predicts a flow field and a mask
(``ToFlow``), warps the source encoder features with it and accumulates RGB from the
warped features (``ToRGB``). EEM blocks modulate the source features with the
expression latent before they are warped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk_cli.model.config import ModelConfig
from edtalk_cli.model.layers import (
    ConstantInput,
    ConvLayer,
    ModulatedConv2d,
    StyledConv,
    Upsample,
)


def base_grid(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, size, size, 2) sampling grid, [..., 0] = x, [..., 1] = y, values linspace(-1, 1).

    Built in float64 and cast to the working dtype (float32 in the official float32 run;
    the float64 parity fixtures keep it in float64). The grid follows the align-corners
    convention but is used with ``grid_sample(align_corners=False)``, as the original does.
    """
    lin = np.linspace(-1.0, 1.0, size)
    grid = np.stack(np.meshgrid(lin, lin), axis=-1)  # (H, W, 2), 'xy' indexing
    return torch.from_numpy(grid).to(device=device, dtype=dtype).unsqueeze(0)


class ToRGB(nn.Module):
    """1x1 conv to RGB with the LIA quirk: leaky-ReLU x sqrt(2) before the bias; skip-upsampled."""

    def __init__(self, in_ch: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ConvLayer(in_ch, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Predicts (dx, dy, mask-logit) from the hidden state; logits accumulate across levels."""

    def __init__(self, in_ch: int, style_dim: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self._grid_cache: dict[tuple, torch.Tensor] = {}

    def grid(self, size: int, like: torch.Tensor) -> torch.Tensor:
        key = (size, like.dtype, like.device)
        grid = self._grid_cache.get(key)
        if grid is None:
            grid = self._grid_cache[key] = base_grid(size, like.dtype, like.device)
        return grid

    def sampling(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (sampling grid (B, H, W, 2), mask (B, 1, H, W)) that ``logits`` (B, 3, H, W) warp with."""
        offset = torch.tanh(logits[:, 0:2]).permute(0, 2, 3, 1)
        return self.grid(logits.shape[-1], offset) + offset, torch.sigmoid(logits[:, 2:3])

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (warped features, next hidden state, flow logits for the next level)."""
        logits = self.conv(x, style) + self.bias  # (B, 3, H, W)
        if skip is not None:
            logits = logits + self.upsample(skip)
        grid, mask = self.sampling(logits)  # (B, H, W, 2), (B, 1, H, W)
        warped = F.grid_sample(feat.to(grid.dtype), grid, align_corners=False) * mask
        return warped, warped + x * (1 - mask), logits


class AdaIN(nn.Module):
    """``IN(x) * (1 + gamma(z)) + beta(z)`` with plain nn.Linear MLPs (EEM's ``norm1``/``norm2``)."""

    def __init__(self, channels: int, style_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def affine(self, normalized: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Apply the style affine to an already instance-normalised map (broadcasts over batch)."""
        hidden = self.mlp_shared(z)
        gamma = self.mlp_gamma(hidden)[:, :, None, None]
        beta = self.mlp_beta(hidden)[:, :, None, None]
        return normalized * (1 + gamma) + beta

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.affine(F.instance_norm(x, eps=1e-5), z)


class EEM(nn.Module):
    """Emotion Enhancement Module: ``AdaIN2(conv2(x), e) + x``.

    ``conv1``/``norm1`` exist in the checkpoints but their output is discarded by the
    official code, so they are kept only as parameters and never evaluated.
    """

    def __init__(self, channels: int, style_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = AdaIN(channels, style_dim, hidden)
        self.norm2 = AdaIN(channels, style_dim, hidden)

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """``instance_norm(conv2(x))``: the expression-independent part, cacheable per source."""
        return F.instance_norm(self.conv2(x), eps=1e-5)

    def modulate(self, x: torch.Tensor, normalized: torch.Tensor, exp_latent: torch.Tensor | None):
        """EEM output from a cached ``normalized(x)``; x (1 or B, C, H, W), exp_latent (B, style)."""
        if exp_latent is None:
            return x
        return self.norm2.affine(normalized, exp_latent) + x

    def forward(self, x: torch.Tensor, exp_latent: torch.Tensor | None) -> torch.Tensor:
        if exp_latent is None:
            return x
        return self.modulate(x, self.normalized(x), exp_latent)


class Synthesis(nn.Module):
    """Decoder G. ``with_eem=False`` gives the lip+pose decoder (``Synthesis_lip_pose``)."""

    def __init__(self, config: ModelConfig, with_eem: bool = True) -> None:
        super().__init__()
        cfg = config
        style = cfg.style_dim
        resolutions = [2**i for i in range(3, cfg.log_size + 1)]  # 8 .. size
        self.with_eem = with_eem
        self.input = ConstantInput(cfg.decoder_channels(4))
        self.conv1 = StyledConv(cfg.decoder_channels(4), cfg.decoder_channels(4), 3, style)
        self.to_rgb1 = ToRGB(cfg.decoder_channels(4), upsample=False)  # unused, kept for the keys
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty in the checkpoints
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        if with_eem:
            self.fineadainresblock = nn.ModuleList()
        prev = cfg.decoder_channels(4)
        for res in resolutions:
            ch = cfg.decoder_channels(res)
            self.convs.append(StyledConv(prev, ch, 3, style, upsample=True))
            self.convs.append(StyledConv(ch, ch, 3, style))
            self.to_rgbs.append(ToRGB(ch))
            self.to_flows.append(ToFlow(ch, style))
            if with_eem:
                self.fineadainresblock.append(EEM(cfg.encoder_channels(res), style, cfg.eem_hidden))
            prev = ch

    def forward(
        self,
        latent: torch.Tensor,
        feats: list[torch.Tensor],
        exp_latent: torch.Tensor | None = None,
        flows: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """latent: (B, style) = w_src + motion; feats: source features coarse-to-fine (B, C_l, r_l, r_l).

        Returns the image (B, 3, size, size), unclamped.
        """
        if self.with_eem:
            feats = [block(feat, exp_latent) for block, feat in zip(self.fineadainresblock, feats)]
        return self.render(latent, feats, flows)

    def render(
        self,
        latent: torch.Tensor,
        feats: list[torch.Tensor],
        flows: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Decode from features that already went through EEM (or need none).

        feats may have batch 1 while latent has batch B: they broadcast. A ``flows`` list
        receives each level's (sampling grid, mask) of :meth:`ToFlow.sampling`, coarse to fine
        (training supervises them on synthetic data).
        """
        x = self.conv1(self.input(latent.shape[0]), latent)
        rgb = flow = None
        for level, feat in enumerate(feats):
            x = self.convs[2 * level](x, latent)
            x = self.convs[2 * level + 1](x, latent)
            if feat.shape[0] != x.shape[0]:
                feat = feat.expand(x.shape[0], -1, -1, -1)
            warped, x, flow = self.to_flows[level](x, latent, feat, flow)
            if flows is not None:
                flows.append(self.to_flows[level].sampling(flow))
            rgb = self.to_rgbs[level](warped, rgb)
        return rgb
