"""Equalized-learning-rate layers of the LIA/StyleGAN2 family, as used by EDTalk.

Module and parameter names follow the official checkpoints exactly (``weight``, ``bias``,
``kernel``, ``modulation``, ``activate``, ...), so ``load_state_dict(strict=True)`` works
on the official files. Nothing here fixes a device or a dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_TAPS = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)


def make_kernel(taps: Sequence[int] = BLUR_TAPS) -> torch.Tensor:
    """Separable FIR kernel: outer product of ``taps`` with itself, normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample, per channel.

    x: (B, C, H, W); kernel: (kh, kw). ``pad`` = (before, after), the same on both axes.
    The kernel is flipped before the correlation (true convolution).
    """
    batch, channels, height, width = x.shape
    symmetric = up == 1 and pad[0] == pad[1] and pad[0] >= 0
    if up > 1:
        # (B, C, H, 1, W, 1) -> pad the singleton axes -> (B, C, H*up, W*up)
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    pad0, pad1 = pad
    if not symmetric:
        x = F.pad(x, (max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)))
    if pad0 < 0 or pad1 < 0:
        h, w = x.shape[-2:]
        x = x[..., max(-pad0, 0) : h - max(-pad1, 0), max(-pad0, 0) : w - max(-pad1, 0)]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)
    # int(): the channel count is fixed by the weights; a traced size would leave the exported
    # depthwise kernel's shape unknown to the ONNX exporter
    weight = weight[None, None].expand(int(channels), 1, *kernel.shape)
    # equal padding on every side: the convolution pads itself (no padded copy of x)
    out = F.conv2d(x, weight, padding=pad0 if symmetric else 0, groups=channels)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out


class Blur(nn.Module):
    """FIR low-pass filter with padding; the kernel is scaled by ``factor**2`` after upsampling."""

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        kernel = make_kernel()
        if upsample_factor > 1:
            kernel = kernel * upsample_factor**2
        self.register_buffer("kernel", kernel)
        self.pad = pad
        self.upsample_factor = upsample_factor

    def extra_repr(self) -> str:
        factor = f", upsample_factor={self.upsample_factor}" if self.upsample_factor > 1 else ""
        return f"pad={tuple(self.pad)}{factor}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling with the [1,3,3,1] kernel (used on the ToRGB / ToFlow skips)."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel() * factor**2)
        p = len(BLUR_TAPS) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Affine layer with runtime weight scaling ``1/sqrt(in)``.

    ``activate`` adds the fused leaky-ReLU (``leaky_relu(x W + b, 0.2) * sqrt(2)``); only the
    discriminator's first linear layer uses it, the generator's layers are plain affine.
    """

    def __init__(
        self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1.0 / math.sqrt(in_dim)
        self.activate = activate

    def extra_repr(self) -> str:
        out_dim, in_dim = self.weight.shape
        bias = "" if self.bias is not None else ", bias=False"
        activate = ", activate=True" if self.activate else ""
        return f"{in_dim}, {out_dim}{bias}{activate}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias)
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activate else out


class EqualConv2d(nn.Module):
    """Conv2d with runtime weight scaling ``1/sqrt(in*k*k)``."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def extra_repr(self) -> str:
        out_ch, in_ch, kernel_size, _ = self.weight.shape
        bias = "" if self.bias is not None else ", bias=False"
        return f"{in_ch}, {out_ch}, {kernel_size}, stride={self.stride}, padding={self.padding}{bias}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """``leaky_relu(x + b, 0.2) * sqrt(2)`` with a (1, C, 1, 1) bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def extra_repr(self) -> str:
        return f"{self.bias.shape[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return F.leaky_relu(x + self.bias, 0.2) * SQRT2
        # inference: the same arithmetic on one buffer instead of three
        return F.leaky_relu_(x + self.bias, 0.2).mul_(SQRT2)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU], keyed ``0``, ``1``, ``2`` like the original."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (kernel_size - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            if not bias:
                raise ValueError("an activated ConvLayer without bias is not used by EDTalk")
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Downsampling residual block: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def extra_repr(self) -> str:
        return f"{self.conv1[0].weight.shape[1]}, {self.skip[1].weight.shape[0]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (optionally demodulated, optionally 2x upsampling).

    weight: (1, out, in, k, k). The style ``s = modulation(w)`` scales the input channels.
    Computed as a grouped convolution with one group per sample, like the original.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        if upsample:
            factor = 2
            p = (len(BLUR_TAPS) - factor) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def extra_repr(self) -> str:
        style_dim = self.modulation.weight.shape[1]
        return (
            f"{self.in_ch}, {self.out_ch}, {self.kernel_size}, style_dim={style_dim}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_ch, height, width = x.shape
        if batch > 1:
            return self._forward_batched(x, style)
        s = self.modulation(style).view(batch, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * s  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8)
            weight = weight * demod.view(batch, self.out_ch, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, batch * in_ch, height, width)
        if self.upsample:
            # transposed conv wants (in, out/groups, k, k) per group
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=batch)
            out = out.view(batch, self.out_ch, out.shape[-2], out.shape[-1])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_ch, in_ch, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_ch, height, width)

    def _forward_batched(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Same result for B > 1 with one ordinary convolution shared by the batch.

        ``conv(x, W * s) * d == conv(x * s, W) * d`` per sample, and the demodulation
        ``d[b, o] = rsqrt(sum_{i,k} (W[o,i,k] s[b,i])^2 + 1e-8)`` = ``rsqrt(s^2 @ sum_k W^2)``.
        """
        batch, in_ch = x.shape[:2]
        s = self.modulation(style)  # (B, in)
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        x = x * s.view(batch, in_ch, 1, 1).to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            with torch.autocast(device_type=x.device.type, enabled=False):  # keep the matmul exact
                s2 = s.to(weight.dtype).square()  # s is bf16/fp16 under autocast
                demod = torch.rsqrt(s2 @ weight.square().sum(dim=(2, 3)).T + 1e-8)  # (B, out)
            out = out * demod.view(batch, self.out_ch, 1, 1).to(out.dtype)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    """Kept for the checkpoint key ``noise.weight``; EDTalk never injects noise."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StyledConv(nn.Module):
    """ModulatedConv2d (demodulated) -> (no noise) -> FusedLeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))


class ConstantInput(nn.Module):
    """Learned constant (1, C, 4, 4), repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def extra_repr(self) -> str:
        _, channels, size, _ = self.input.shape
        return f"{channels}, size={size}"

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
