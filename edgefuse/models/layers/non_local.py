"""Non-local block (Wang et al., CVPR 2018) over space and time, on edgefuse's (N*T, C, H, W) frames.

Embedded-Gaussian form, as TSM's non-local release uses it: with ``x`` one clip's feature map
over all T frames,

    y_i = sum_j softmax_j(theta(x_i) . phi(x_j)) g(x_j),    z = W(y) + x,

where ``i`` runs over every (t, h, w) position of the clip and ``j`` over the positions of a
spatially 2x2 max-pooled map (the keys and values are sub-sampled in space, never in time).
``theta``, ``phi`` and ``g`` are 1x1 projections to ``inter = C // 2`` channels with a bias;
``W`` projects back to C channels and is followed by a BatchNorm whose scale starts at zero, so
an untrained block is the identity. There is no 1/N scaling of the affinities.

Layout: a 1x1x1 3D convolution is a per-position linear map, so the projections are 1x1 Conv2d
on the frames as they come (no transpose to (N, C, T, H, W)); only the two matrix products see
the clip as one sequence of T*H*W positions. Module names follow the official state dict
(``theta``, ``phi.0``, ``g.0``, ``W.0``, ``W.1``); its 3D kernels (C', C, 1, 1, 1) load with the
time axis dropped (:func:`edgefuse.models.tsm.checkpoint_filter_fn`).

The block looks at every frame of the clip, later ones included: a model with non-local blocks
cannot stream frame by frame.

Where the block runs: on a residual block's output. :meth:`NonLocal.attach` keeps the block what
it is (its weights keep their names), sets the module as the block's ``nl`` attribute and runs it
on the block's output through a forward hook.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTRIBUTE = "nl"  # the attribute a block holds its non-local module under (the official name)


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block: (N*T, C, H, W), t -> (N*T, C, H, W).

    ``inter``: channels of the embeddings (default C // 2, at least 1). ``subsample``: 2x2 max
    pooling of the keys and values in space.
    """

    def __init__(self, channels: int, inter: int | None = None, subsample: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.inter = inter if inter is not None else max(1, channels // 2)
        self.subsample = subsample
        self.theta = nn.Conv2d(channels, self.inter, kernel_size=1)
        # Sequentials give the official names (phi.0, g.0) and hold the pooling of keys and values
        self.phi = nn.Sequential(nn.Conv2d(channels, self.inter, kernel_size=1), *self._pool())
        self.g = nn.Sequential(nn.Conv2d(channels, self.inter, kernel_size=1), *self._pool())
        bn = nn.BatchNorm2d(channels)
        self.W = nn.Sequential(nn.Conv2d(self.inter, channels, kernel_size=1), bn)
        nn.init.zeros_(bn.weight)  # the block starts as the identity
        nn.init.zeros_(bn.bias)

    def _pool(self) -> list[nn.Module]:
        return [nn.MaxPool2d(kernel_size=2)] if self.subsample else []

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter={self.inter}, subsample={self.subsample}"

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        _, _, h, w = x.shape
        ci = self.inter
        query = self.theta(x).reshape(-1, t, ci, h * w)  # (N, T, inter, H*W)
        query = query.transpose(2, 3).reshape(-1, t * h * w, ci)  # (N, T*H*W, inter), positions in (t, h, w) order
        key = self.phi(x)  # (N*T, inter, h', w')
        hk, wk = key.shape[-2:]
        key = key.reshape(-1, t, ci, hk * wk).transpose(1, 2).reshape(-1, ci, t * hk * wk)  # (N, inter, T*h'*w')
        value = self.g(x).reshape(-1, t, ci, hk * wk)  # (N, T, inter, h'*w')
        value = value.transpose(2, 3).reshape(-1, t * hk * wk, ci)  # (N, T*h'*w', inter)
        affinity = F.softmax(torch.matmul(query, key), dim=-1)  # (N, T*H*W, T*h'*w')
        y = torch.matmul(affinity, value)  # (N, T*H*W, inter)
        y = y.reshape(-1, t, h * w, ci).transpose(2, 3).reshape(-1, ci, h, w)  # (N*T, inter, H, W)
        return self.W(y) + x  # (N*T, C, H, W)

    def matmul_macs(self, t: int, h: int, w: int) -> int:
        """MACs of the two matrix products for one clip of ``t`` frames of (h, w) maps: affinities
        theta^T phi and their product with g, each (T*H*W) x (T*h'*w') x inter. Convolution counters
        (thop, :mod:`edgefuse.models.cost`) do not see them."""
        hk, wk = (h // 2, w // 2) if self.subsample else (h, w)
        return 2 * (t * h * w) * (t * hk * wk) * self.inter

    def attach(self, block: nn.Module) -> NonLocal:
        """Run this block on every output of ``block`` (a residual block called as ``block(x, t)``).

        It becomes the block's ``nl`` attribute (state-dict keys ``<block>.nl.*`` beside the block's own,
        unchanged) and a forward hook applies it, so the backbone's code is not forked. Copies of the model
        (deep copies, the meta-device counting copy) keep the hook.
        """
        if getattr(block, ATTRIBUTE, None) is not None:
            raise ValueError(f"{type(block).__name__} already has a non-local block")
        setattr(block, ATTRIBUTE, self)
        block.register_forward_hook(_run_attached)
        return self


def _run_attached(block: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a block with a non-local block: its output through ``block.nl`` (``args`` = (x, t))."""
    if len(args) < 2:
        raise TypeError(f"a {type(block).__name__} with a non-local block is called as block(x, t), t positional")
    return getattr(block, ATTRIBUTE)(output, args[1])  # type: ignore[no-any-return]
