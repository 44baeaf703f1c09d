"""Temporal shift (TSM), written as slices and a concat so it exports as it runs.

The research code writes shifted slices into a zero tensor in place; traced into
ONNX those writes become ScatterND, and with in-place variants the shifted values
can silently turn into constants. Slices + Concat have neither problem.
"""
from __future__ import annotations

import torch
from torch import nn


class TemporalShift(nn.Module):
    """Shift ``1/shift_div`` of the channels along time, zero padded at the ends.

    Bidirectional (TSM offline): channels ``[0, fold)`` take the next segment's
    values (t+1 -> t), channels ``[fold, 2*fold)`` the previous segment's (t-1 -> t),
    the rest stay. Online (past only): channels ``[0, fold)`` take the previous
    segment's values and nothing looks ahead, so it can run frame by frame.

    ``feeds_downsample``: whether a residual block's projection shortcut reads the
    shifted tensor (AdaFuse-TSM does) or the original one (TSM does).
    """

    def __init__(self, shift_div: int = 8, online: bool = False, feeds_downsample: bool = False) -> None:
        super().__init__()
        if shift_div < 2:
            raise ValueError(f"shift_div must be >= 2, got {shift_div}")
        self.shift_div = shift_div
        self.online = online
        self.feeds_downsample = feeds_downsample

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}, online={self.online}, feeds_downsample={self.feeds_downsample}"

    def fold(self, channels: int) -> int:
        return channels // self.shift_div

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        nt, _, h, w = x.shape
        c = int(x.shape[1])  # channels are static: keep fold a constant in traced graphs
        fold = self.fold(c)
        x5 = x.reshape(-1, t, c, h, w)  # (N, T, C, H, W)
        zero = torch.zeros_like(x5[:, :1, :fold])  # (N, 1, fold, H, W)
        if self.online:
            past = torch.cat([zero, x5[:, :-1, :fold]], dim=1)  # (N, T, fold, H, W)
            out = torch.cat([past, x5[:, :, fold:]], dim=2)  # (N, T, C, H, W)
        else:
            future = torch.cat([x5[:, 1:, :fold], zero], dim=1)  # (N, T, fold, H, W)
            past = torch.cat([zero, x5[:, :-1, fold : 2 * fold]], dim=1)  # (N, T, fold, H, W)
            out = torch.cat([future, past, x5[:, :, 2 * fold :]], dim=2)  # (N, T, C, H, W)
        return out.reshape(nt, c, h, w)  # (N*T, C, H, W)
