"""EDTalk generators: the full model (mouth, pose, expression) and the lip+pose model.

The motion of a frame is a coefficient vector ``[mouth | pose | expression]`` over an
orthonormal basis Q (reduced Householder QR of the learned bank weights). The decoder
renders ``w_src + Q @ coeffs`` from the source's encoder features; in the full model the
expression latent ``Q_exp @ a_exp`` also modulates those features through EEM blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edtalk_cli.model.config import ModelConfig
from edtalk_cli.model.decoder import Synthesis
from edtalk_cli.model.encoder import Encoder
from edtalk_cli.model.layers import EqualLinear


class Direction(nn.Module):
    """A bank of learned motion directions, ``weight`` (style_dim, n_directions)."""

    def __init__(self, style_dim: int, num_directions: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(style_dim, num_directions))

    def extra_repr(self) -> str:
        style_dim, num_directions = self.weight.shape
        return f"{style_dim}, {num_directions}"


def affine_mlp(style_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """``depth`` EqualLinear layers with no activation (EDTalk's motion heads are affine)."""
    layers = [EqualLinear(style_dim, style_dim) for _ in range(depth - 1)]
    layers.append(EqualLinear(style_dim, out_dim))
    return nn.Sequential(*layers)


def orthonormal_bases(bank_weights: torch.Tensor) -> torch.Tensor:
    """Reduced QR of ``bank_weights + 1e-8`` (style_dim, K) -> Q (style_dim, K).

    Always computed with LAPACK on the CPU, whose Householder sign convention the learned
    coefficients assume; the result goes back to the weights' device. Differentiable.
    """
    device, dtype = bank_weights.device, bank_weights.dtype
    with torch.autocast(device_type=device.type, enabled=False):
        # float64 QR of the float32 weights: same column signs, fewer rounding errors
        q, _ = torch.linalg.qr(bank_weights.to("cpu", torch.float64) + 1e-8, mode="reduced")
    return q.to(device=device, dtype=dtype if dtype == torch.float64 else torch.float32)


@dataclass
class SourceEncoding:
    """Everything the decoder needs from a source image; constant over a video.

    latent: (1, style); feats: per level (1, C_l, r_l, r_l), coarse-to-fine;
    eem_normalized: per level ``instance_norm(conv2(feat))`` of each EEM block, or None
    for the lip+pose model. EEM only adds an expression-dependent affine on top of it,
    so caching it is exact.
    """

    latent: torch.Tensor
    feats: list[torch.Tensor]
    eem_normalized: list[torch.Tensor] | None = None


class _EDTalkBase(nn.Module):
    """Shared parts of both generators. Subclasses set ``has_expression``."""

    has_expression: bool = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.enc = Encoder(cfg)
        self.dec = Synthesis(cfg, with_eem=self.has_expression)
        self.direction_lipnonlip = Direction(cfg.style_dim, cfg.lip_dim + cfg.pose_dim)
        if self.has_expression:
            self.direction_exp = Direction(cfg.style_dim, cfg.exp_dim)
        self.fc = affine_mlp(cfg.style_dim, cfg.style_dim, 4)
        self.lip_fc = affine_mlp(cfg.style_dim, cfg.lip_dim, 3)
        self.pose_fc = affine_mlp(cfg.style_dim, cfg.pose_dim, 3)
        if self.has_expression:
            self.exp_fc = affine_mlp(cfg.style_dim, cfg.exp_dim, 3)

    # ----- coefficient layout -------------------------------------------------------------
    @property
    def num_coeffs(self) -> int:
        cfg = self.config
        return cfg.lip_dim + cfg.pose_dim + (cfg.exp_dim if self.has_expression else 0)

    @property
    def mouth_slice(self) -> slice:
        return slice(0, self.config.lip_dim)

    @property
    def pose_slice(self) -> slice:
        return slice(self.config.lip_dim, self.config.lip_dim + self.config.pose_dim)

    @property
    def expression_slice(self) -> slice:
        start = self.config.lip_dim + self.config.pose_dim
        return slice(start, start + self.config.exp_dim)

    # ----- bases --------------------------------------------------------------------------
    def motion_bases(self) -> torch.Tensor:
        """Q (style, K) over [mouth | pose | expression]; constant at inference.

        With ``config.orthogonal_bases = False`` (the paper's ablation of the shared QR) the
        directions are only scaled to unit length, so the banks are free to overlap.
        """
        weights = self.direction_lipnonlip.weight
        if self.has_expression:
            weights = torch.cat([weights, self.direction_exp.weight], dim=1)
        if not self.config.orthogonal_bases:
            return weights / weights.norm(dim=0, keepdim=True).clamp_min(1e-8)
        return orthonormal_bases(weights)

    # ----- encoder side -------------------------------------------------------------------
    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """image (B, 3, S, S) in [-1, 1] -> (latent (B, style), features coarse-to-fine)."""
        return self.enc(image)

    def encode_latent(self, image: torch.Tensor) -> torch.Tensor:
        """Latent only (drivers' features are never used)."""
        return self.enc(image)[0]

    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """Encode a source image (1, 3, S, S) once for a whole video."""
        latent, feats = self.enc(image)
        eem = None
        if self.has_expression:
            eem = [block.normalized(feat) for block, feat in zip(self.dec.fineadainresblock, feats)]
        return SourceEncoding(latent, feats, eem)

    def mouth_coeffs(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, style) -> (B, lip_dim)."""
        return self.lip_fc(self.fc(latent))

    def pose_coeffs(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, style) -> (B, pose_dim)."""
        return self.pose_fc(self.fc(latent))

    def expression_coeffs(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, style) -> (B, exp_dim). Full model only."""
        if not self.has_expression:
            raise RuntimeError("the lip+pose model has no expression head")
        return self.exp_fc(self.fc(latent))

    def motion_coeffs(self, latent: torch.Tensor) -> torch.Tensor:
        """All coefficients of one driver image (B, style) -> (B, K)."""
        shared = self.fc(latent)
        parts = [self.lip_fc(shared), self.pose_fc(shared)]
        if self.has_expression:
            parts.append(self.exp_fc(shared))
        return torch.cat(parts, dim=1)

    # ----- decoder side -------------------------------------------------------------------
    def motion_latents(
        self, coeffs: torch.Tensor, bases: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """coeffs (B, K) -> (direction Q@coeffs (B, style), expression latent Q_exp@a_exp or None)."""
        bases = bases.to(coeffs.dtype)
        direction = coeffs @ bases.T
        exp_latent = None
        if self.has_expression:
            sl = self.expression_slice
            exp_latent = coeffs[:, sl] @ bases[:, sl].T
        return direction, exp_latent

    def expression_features(
        self, source: SourceEncoding, exp_latent: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Source features after the EEM blocks for expression latent(s) (B or 1, style)."""
        if not self.has_expression:
            return source.feats
        return [
            block.modulate(feat, norm, exp_latent)
            for block, feat, norm in zip(self.dec.fineadainresblock, source.feats, source.eem_normalized)
        ]

    def synthesize(
        self,
        source: SourceEncoding,
        coeffs: torch.Tensor,
        bases: torch.Tensor | None = None,
        feats: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render B frames of one (or B) source(s): coeffs (B, K) -> images (B, 3, S, S).

        ``feats``: precomputed ``expression_features`` (batch 1 or B) for a known constant
        expression; computed from ``coeffs`` when None.
        """
        if bases is None:
            bases = self.motion_bases()
        direction, exp_latent = self.motion_latents(coeffs, bases)
        if feats is None:
            feats = self.expression_features(source, exp_latent)
        return self.dec.render(source.latent + direction, feats)

    def reconstruct(self, source_image: torch.Tensor, driver_image: torch.Tensor) -> torch.Tensor:
        """Self/cross-reconstruction: all motion from ``driver_image`` (training path)."""
        latent, feats = self.enc(source_image)
        coeffs = self.motion_coeffs(self.encode_latent(driver_image))
        direction, exp_latent = self.motion_latents(coeffs, self.motion_bases())
        return self.dec(latent + direction, feats, exp_latent)


class EDTalkGenerator(_EDTalkBase):
    """Full EDTalk (``EDTalk.pt['gen']``): mouth, pose and expression banks with EEM."""

    has_expression = True


class LipPoseGenerator(_EDTalkBase):
    """Lip+pose EDTalk (``EDTalk_lip_pose.pt['gen']``): no expression bank, no EEM."""

    has_expression = False

    def forward(self, source_image: torch.Tensor, driver_image: torch.Tensor) -> torch.Tensor:
        """The official ``forward``: mouth and pose both from ``driver_image``."""
        return self.reconstruct(source_image, driver_image)
