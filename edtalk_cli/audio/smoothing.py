"""Temporal smoothing of Audio2Lip mouth coefficients (spec §1.9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["MOUTH_SMOOTHING_KERNEL", "gaussian_kernel_1d", "smooth_mouth_coeffs"]


def gaussian_kernel_1d(size: int = 3, sigma: float = 1.0) -> np.ndarray:
    """Normalised Gaussian taps ``exp(-x^2 / (2 sigma^2))``, x = -(size//2)..size//2; float64 (size,)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = np.arange(size, dtype=np.float64) - size // 2
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


MOUTH_SMOOTHING_KERNEL: np.ndarray = gaussian_kernel_1d(3, 1.0)  # [0.27406862, 0.45186276, 0.27406862]
MOUTH_SMOOTHING_KERNEL.setflags(write=False)


def smooth_mouth_coeffs(coeffs: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """Smooth (T, C) or (B, T, C) mouth coefficients along time with the 3-tap Gaussian.

    Depthwise conv1d per channel with zero padding 1, as in the official demos: edge frames are
    not renormalised (frame 0 -> 0.4519 a0 + 0.2741 a1). Keeps the input's device and dtype;
    returns ``coeffs`` itself when ``enabled`` is False.
    """
    import torch
    import torch.nn.functional as F

    if not enabled:
        return coeffs
    if coeffs.ndim not in (2, 3):
        raise ValueError(
            f"expected mouth coefficients of shape (T, C) or (B, T, C), got {tuple(coeffs.shape)}"
        )
    if not coeffs.is_floating_point():
        raise TypeError(f"mouth coefficients must be a floating-point tensor, got {coeffs.dtype}")
    x = coeffs if coeffs.ndim == 3 else coeffs.unsqueeze(0)  # (B, T, C)
    if x.shape[1] == 0 or x.shape[2] == 0:
        return coeffs.clone()
    channels = x.shape[2]
    kernel = torch.from_numpy(MOUTH_SMOOTHING_KERNEL.copy()).to(device=x.device, dtype=x.dtype)
    weight = kernel.view(1, 1, -1).expand(channels, 1, -1).contiguous()  # (C, 1, 3)
    y = F.conv1d(x.transpose(1, 2), weight, padding=MOUTH_SMOOTHING_KERNEL.size // 2, groups=channels)
    y = y.transpose(1, 2)  # (B, C, T) -> (B, T, C)
    return y if coeffs.ndim == 3 else y.squeeze(0)
