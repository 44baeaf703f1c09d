"""Stream variants of the stateful hook modules: they read last frame's state and write this frame's."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.export.stream.state import StreamContext
from edgefuse.models.layers import AdaFuse, TemporalShift


def _single_frame(t: int) -> None:
    if t != 1:
        raise RuntimeError(f"stream modules run one frame at a time (t = 1), got t = {t}")


class StreamShift(nn.Module):
    """Online temporal shift for one frame: state = the previous frame's first ``fold`` channels."""

    def __init__(self, shift: TemporalShift, context: StreamContext, index: int) -> None:
        super().__init__()
        self.inner = shift
        self.feeds_downsample = shift.feeds_downsample  # read by the block's _enter
        self.context = context
        self.index = index

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        _single_frame(t)
        fold = self.inner.fold(int(x.shape[1]))  # a constant in the graph: channels are static
        cur = x[:, :fold]  # (N, fold, H, W)
        past = self.context.read(self.index, cur)  # (N, fold, H, W)
        self.context.write(self.index, cur)
        return torch.cat([past, x[:, fold:]], dim=1)  # (N, C, H, W)


class StreamAdaFuse(nn.Module):
    """AdaFuse for one frame, with AdaFuse's own layers, decision and fusion.

    State ``index``: the previous frame's pooled block input (N, C_in); ``index + 1``:
    its conv1 output after bn1+ReLU, before fusion (N, width, H, W).
    """

    def __init__(self, fuse: AdaFuse, context: StreamContext, index: int) -> None:
        super().__init__()
        self.inner = fuse
        self.context = context
        self.index = index

    def policy_logits(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Pooled inputs (N, C_in) of the previous and current frame -> logits (N, width, 3)."""
        return self.inner.policy_from_pooled(prev, cur)  # (N, width, 3)

    def forward(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        _single_frame(t)
        cur = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, C_in)
        prev = self.context.read(self.index, cur)  # (N, C_in)
        prev_out = self.context.read(self.index + 1, out)  # (N, width, H, W)
        self.context.write(self.index, cur)
        self.context.write(self.index + 1, out)
        if self.inner.lean():
            return self.inner.fuse_argmax(out, prev_out, self.inner.flat_from_pooled(prev, cur))
        mask = self.inner.decide(self.policy_logits(prev, cur))  # (N, width, 3)
        if self.inner.record:
            self.inner.last_mask = mask.detach().unsqueeze(1)  # (N, 1, width, 3)
        return self.inner.fuse(out, prev_out, mask)

