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

Two forms of the same function. Training runs the formulation above on (N, C, T, H, W). Evaluation
(and so every exported graph) runs frame-major on the backbone's own (N*T, C, H, W) layout, with no
clip-major transposes, and with the 3x3x3 gate convolution factored into a 1x1 convolution giving one
map per kernel tap (27 per group), a fixed one-hot 3x3 convolution summing the 9 spatial taps of each
time offset, and a sum over the 3 time offsets of small 2-channel maps. Convolutions with 2 output
channels run on ONNX Runtime's CPU at a few GFLOP/s (a 5-D im2col), the 1x1 one as a GEMM: on a ResNet-50
8x224 the gate convolution went from about a quarter of the GSF model's time to a few percent
(docs/cpu_engines.md). Both forms agree to float rounding (tests/test_models.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gsf_channels(channels: int, ratio: float) -> int:
    """Channels GSF works on: ``ratio`` percent, rounded up to even (official rule)."""
    f = int(channels * ratio / 100)
    return f + 1 if f % 2 else f


def _shift_back(x: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Along the time axis ``dim`` ((N, C, T, H, W): 2; (N, T, ...): 1): t+1 -> t, zero at the last step."""
    return torch.cat([x.narrow(dim, 1, x.shape[dim] - 1), torch.zeros_like(x.narrow(dim, 0, 1))], dim=dim)


def _shift_forward(x: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Along the time axis ``dim``: t-1 -> t, zero at the first step."""
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)


def _pool_hw(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=-1).mean(dim=-1)  # (N, C, T)


class GSF(nn.Module):
    frame_major = True  # evaluate in the frame-major, factored form; False: the reference form (MAC counts)
    tap_sum: torch.Tensor

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
        # (6, 9, 3, 3): output (group, dt) sums input (group, dt, dh, dw) shifted by (dh, dw); not a weight
        self.register_buffer("tap_sum", torch.eye(9).reshape(1, 9, 3, 3).repeat(6, 1, 1, 1), persistent=False)

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
        if self.frame_major and not self.training and not self.bn.training:
            return self._forward_frames(x_full, t)
        nt, _, h, w = x_full.shape  # (N*T, C, H, W)
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

    # ------------------------------------------------------------------ evaluation: frame-major, factored gate

    def _gate_frames(self, a: torch.Tensor, n: int, t: int) -> torch.Tensor:
        """The 3x3x3 gate convolution + tanh on (N*T, f, H, W) input; returns (N*T, 2, H, W)."""
        nt, _, h, w = a.shape
        taps = self.conv3d.weight.permute(0, 2, 3, 4, 1).reshape(54, self.fplane // 2, 1, 1)  # (group*27 taps, f/2, 1, 1)
        z = F.conv2d(a, taps, groups=2)  # (N*T, 54, H, W): one map per (group, dt, dh, dw)
        z = F.conv2d(z, self.tap_sum, padding=1, groups=6)  # (N*T, 6, H, W): per (group, dt), spatial taps summed
        z = z.reshape(n, t, 2, 3, h, w)  # (N, T, group, dt, H, W)
        pre = (_shift_forward(z[:, :, :, 0], dim=1)  # dt=-1 reads frame t-1: moved forward in time
               + z[:, :, :, 1]
               + _shift_back(z[:, :, :, 2], dim=1))  # dt=+1 reads frame t+1: moved backward; (N, T, 2, H, W)
        bias = self.conv3d.bias if self.conv3d.bias is not None else torch.zeros(2, dtype=a.dtype)
        return torch.tanh(pre + bias.reshape(1, 1, 2, 1, 1)).reshape(nt, 2, h, w)  # (N*T, 2, H, W)

    @staticmethod
    def _fuse_frames(y: torch.Tensor, r: torch.Tensor, conv: nn.Conv2d, n: int, t: int) -> torch.Tensor:
        nt, c, _, _ = y.shape
        pooled_y = F.adaptive_avg_pool2d(y, 1).reshape(n, t, c)  # (N, T, C): GlobalAveragePool, on a grid in INT8
        pooled_r = F.adaptive_avg_pool2d(r, 1).reshape(n, t, c)  # (N, T, C)
        planes = torch.stack([pooled_y, pooled_r], dim=1).transpose(2, 3)  # (N, 2, C, T)
        wgt = torch.sigmoid(conv(planes))  # (N, 1, C, T)
        wgt = wgt.permute(0, 3, 2, 1).reshape(nt, c, 1, 1)  # (N*T, C, 1, 1)
        return y * wgt + r * (1 - wgt)  # (N*T, C, H, W)

    def _forward_frames(self, x_full: torch.Tensor, t: int) -> torch.Tensor:
        nt, c, h, w = x_full.shape
        n, f = nt // t, self.fplane
        x = x_full[:, :f] if f < c else x_full  # (N*T, f, H, W)
        bn = self.bn
        a = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
        gate = self._gate_frames(a, n, t)  # (N*T, 2, H, W)
        x1, x2 = x[:, : f // 2], x[:, f // 2:]  # (N*T, f/2, H, W) each
        g1, g2 = gate[:, 0:1], gate[:, 1:2]  # (N*T, 1, H, W) each
        y1, y2 = g1 * x1, g2 * x2
        r1, r2 = x1 * (1 - g1), x2 * (1 - g2)  # x - g*x as one product: a gated product like y (integer grids)
        y1 = y1.reshape(n, t, f // 2, h, w)  # (N, T, f/2, H, W)
        y2 = y2.reshape(n, t, f // 2, h, w)  # (N, T, f/2, H, W)
        y1 = _shift_back(y1, dim=1).reshape(nt, f // 2, h, w)  # (N*T, f/2, H, W): t+1 -> t
        y2 = _shift_forward(y2, dim=1).reshape(nt, f // 2, h, w)  # (N*T, f/2, H, W): t-1 -> t
        out1 = self._fuse_frames(y1, r1, self.channel_conv1, n, t)  # (N*T, f/2, H, W)
        out2 = self._fuse_frames(y2, r2, self.channel_conv2, n, t)  # (N*T, f/2, H, W)
        both = torch.stack([out1.reshape(nt, 2, f // 4, h, w), out2.reshape(nt, 2, f // 4, h, w)], dim=1)  # (N*T, 2, 2, f/4, H, W)
        y = both.transpose(2, 3).reshape(nt, f, h, w)  # (N*T, f, H, W): each group's halves interleaved
        if f == c:
            return y
        return torch.cat([y, x_full[:, f:]], dim=1)  # (N*T, C, H, W)
