"""Causal 1-d convolution blocks shared by the codec and the vocoder.

Padding is all on the left, so an output sample never depends on future input within a layer;
transposed convolutions drop their look-ahead tail. (The iSTFT decoder's overlap-add is not causal.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm


class CausalConv1d(torch.nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = weight_norm(torch.nn.Conv1d(in_ch, out_ch, kernel, stride=stride, dilation=dilation))
        # Left padding so that length L (a multiple of stride) maps to L / stride.
        self.left_pad = dilation * (kernel - 1) + 1 - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left_pad, 0)))


class CausalConvTranspose1d(torch.nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = weight_norm(torch.nn.ConvTranspose1d(in_ch, out_ch, 2 * stride, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (batch, out_ch, (frames + 1) * stride)
        return y[..., : -self.stride]  # (batch, out_ch, frames * stride)


class ResidualUnit(torch.nn.Module):
    def __init__(self, channels: int, dilation: int, kernel: int = 7) -> None:
        super().__init__()
        self.block = torch.nn.Sequential(
            torch.nn.ELU(), CausalConv1d(channels, channels, kernel, dilation=dilation),
            torch.nn.ELU(), CausalConv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)
