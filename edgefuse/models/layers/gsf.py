"""Gate-Shift-Fuse (GSF), export-friendly.

On the first ``fplane`` channels (``ratio`` percent of them, rounded up to even):
BatchNorm3d -> ReLU -> Conv3d(fplane -> 2, 3x3x3, groups 2) -> tanh gives one
spatio-temporal gate per channel group; the gate multiplies the un-normalised
input (y = g*x, residual r = x - y). Group 1's gated part moves backward in time
(t+1 -> t), group 2's forward (t-1 -> t), zeros at the ends. Per group, the
spatially pooled shifted y and r, stacked as two planes over (channel, time), go
through Conv2d(2 -> 1, 3x3) and a sigmoid: the fusion weight w, and
out = w*y_shift + (1-w)*r. Each group is channel-shuffled (interleaving its two
halves) and the untouched channels are concatenated back.
"""
from __future__ import annotations

import torch
from torch import nn


def gsf_channels(channels: int, ratio: float) -> int:
    """Channels GSF works on: ``ratio`` percent, rounded up to even (official rule)."""
    f = int(channels * ratio / 100)
    return f + 1 if f % 2 else f


def _shift_back(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W): t+1 -> t, zero at the last step."""
    return torch.cat([x[:, :, 1:], torch.zeros_like(x[:, :, :1])], dim=2)


def _shift_forward(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W): t-1 -> t, zero at the first step."""
    return torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)


def _pool_hw(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=-1).mean(dim=-1)  # (N, C, T)


class GSF(nn.Module):
    def __init__(self, channels: int, ratio: float = 100.0) -> None:
        super().__init__()
        self.channels = channels
        self.ratio = ratio
        self.fplane = gsf_channels(channels, ratio)
        if self.fplane < 4 or self.fplane % 4 or self.fplane > channels:
            raise ValueError(
                f"GSF on {channels} channels at ratio {ratio}% gives {self.fplane} gated channels; "
                "it must be a multiple of 4 between 4 and the channel count (choose another ratio)"
            )
        self.bn = nn.BatchNorm3d(self.fplane)
        self.relu = nn.ReLU()
        self.conv3d = nn.Conv3d(self.fplane, 2, kernel_size=3, padding=1, groups=2)
        self.channel_conv1 = nn.Conv2d(2, 1, kernel_size=3, padding=1)
        self.channel_conv2 = nn.Conv2d(2, 1, kernel_size=3, padding=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, fplane={self.fplane}"

    def _fuse(self, y: torch.Tensor, r: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        planes = torch.stack([_pool_hw(y), _pool_hw(r)], dim=1)  # (N, 2, C/2, T)
        w = torch.sigmoid(conv(planes))  # (N, 1, C/2, T)
        w = w.squeeze(1).unsqueeze(-1).unsqueeze(-1)  # (N, C/2, T, 1, 1)
        return y * w + r * (1 - w)

    @staticmethod
    def _shuffle(x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        x = x.reshape(n, 2, c // 2, t, h, w)  # (N, 2, C/2, T, H, W)
        return x.transpose(1, 2).reshape(n, c, t, h, w)  # (N, C, T, H, W), halves interleaved

    def forward(self, x_full: torch.Tensor, t: int) -> torch.Tensor:
        nt, c, h, w = x_full.shape
        f = self.fplane
        x = x_full[:, :f].reshape(-1, t, f, h, w).permute(0, 2, 1, 3, 4)  # (N, f, T, H, W)
        gate = torch.tanh(self.conv3d(self.relu(self.bn(x))))  # (N, 2, T, H, W)
        x1, x2 = x[:, : f // 2], x[:, f // 2 :]  # (N, f/2, T, H, W) each
        y1 = gate[:, 0:1] * x1
        y2 = gate[:, 1:2] * x2
        r1, r2 = x1 - y1, x2 - y2
        out1 = self._shuffle(self._fuse(_shift_back(y1), r1, self.channel_conv1))  # (N, f/2, T, H, W)
        out2 = self._shuffle(self._fuse(_shift_forward(y2), r2, self.channel_conv2))  # (N, f/2, T, H, W)
        y = torch.cat([out1, out2], dim=1).permute(0, 2, 1, 3, 4).reshape(nt, f, h, w)  # (N*T, f, H, W)
        if f == self.channels:
            return y
        return torch.cat([y, x_full[:, f:]], dim=1)  # (N*T, C, H, W)
