"""The folded model: AdaFuse blocks rebuilt dense for a plan (removed channels dropped, reused ones shifted)."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold.plan import KEPT, REMOVED, REUSED, FoldPlan, padded_channels
from edgefuse.export.fold.stats import adafuse_blocks
from edgefuse.models.cost import model_cost
from edgefuse.models.layers.adafuse import AdaFuse
from edgefuse.models.video import VideoClassifier

_SHARED_POLICY = ("policy_fc0s", "policy_fc1s")


class FoldedFuse(nn.Module):
    """Static AdaFuse: conv1's output is ``[kept..., zero padding..., reused...]``; the reused channels take the
    previous segment's values (zeros for the first segment), the others pass unchanged. Parameter-free;
    slices and concatenations only, so it exports to ONNX as it runs, for any T. ``kept`` counts the
    unshifted channels, the padding included."""

    def __init__(self, kept: int, reused: int) -> None:
        super().__init__()
        if kept < 0 or reused < 0 or kept + reused < 1:
            raise ValueError(f"FoldedFuse needs at least one channel, got kept={kept}, reused={reused}")
        self.kept = int(kept)
        self.reused = int(reused)

    def extra_repr(self) -> str:
        return f"kept={self.kept}, reused={self.reused}"

    def forward(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """out: conv1 output after bn1+ReLU (N*T, kept+reused, H, W); x (block input) is not used."""
        if self.reused == 0:
            return out
        _, _, h, w = out.shape
        moving = out[:, self.kept :].reshape(-1, t, self.reused, h, w)  # (N, T, reused, H, W)
        prev = torch.cat([torch.zeros_like(moving[:, :1]), moving[:, :-1]], dim=1)  # (N, T, reused, H, W)
        prev = prev.reshape(-1, self.reused, h, w)  # (N*T, reused, H, W)
        return torch.cat([out[:, : self.kept], prev], dim=1)  # (N*T, kept+reused, H, W)


def _sliced_conv(conv: nn.Conv2d, out_index: torch.Tensor | None = None,
                 in_index: torch.Tensor | None = None) -> nn.Conv2d:
    """A new Conv2d with the selected output and/or input channels (in that order); index -1 selects a zero
    channel (a zero filter, zero bias, or zero input weights)."""
    if conv.groups != 1:
        raise ValueError("folding slices dense convolutions only (groups=1)")
    weight = conv.weight.detach()  # (C_out, C_in, kh, kw)
    bias = None if conv.bias is None else conv.bias.detach()  # (C_out,)
    if out_index is not None:
        weight = _select(weight, 0, out_index)  # (C_out', C_in, kh, kw)
        bias = None if bias is None else _select(bias, 0, out_index)  # (C_out',)
    if in_index is not None:
        weight = _select(weight, 1, in_index)  # (C_out', C_in', kh, kw)
    geometry: dict[str, Any] = {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
                                "dilation": conv.dilation, "padding_mode": conv.padding_mode}
    new = nn.Conv2d(weight.shape[1], weight.shape[0], **geometry, bias=bias is not None, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None and new.bias is not None:
            new.bias.copy_(bias)
    return new.train(conv.training).requires_grad_(conv.weight.requires_grad)


def _select(t: torch.Tensor, dim: int, index: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``t.index_select(dim, index)`` where index -1 gives a slice filled with ``fill``."""
    picked = t.index_select(dim, index.clamp(min=0))  # t's shape, index's length on dim
    pad = (index < 0).reshape([-1 if d == dim else 1 for d in range(t.dim())])  # broadcastable to picked
    return torch.where(pad, torch.full_like(picked, fill), picked)  # picked's shape


def _sliced_bn(bn: nn.BatchNorm2d, index: torch.Tensor) -> nn.BatchNorm2d:
    """A new BatchNorm2d over the selected channels (weights, running stats, eps, momentum copied); index -1
    gives an identity channel (weight 1, bias 0, mean 0, var 1: zero in, zero out up to eps)."""
    ref = bn.weight if bn.weight is not None else bn.running_mean
    new = nn.BatchNorm2d(len(index), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats,
                         device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(_select(bn.weight, 0, index, 1.0))  # (C',)
            new.bias.copy_(_select(bn.bias, 0, index))  # (C',)
        stats = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
        into = (new.running_mean, new.running_var, new.num_batches_tracked)
        if bn.track_running_stats and all(t is not None for t in stats + into):
            mean, var, count = stats
            new_mean, new_var, new_count = into
            assert mean is not None and var is not None and count is not None  # for mypy: checked above
            assert new_mean is not None and new_var is not None and new_count is not None
            new_mean.copy_(_select(mean, 0, index))  # (C',)
            new_var.copy_(_select(var, 0, index, 1.0))  # (C',)
            new_count.copy_(count)
    return new.train(bn.training)


def _fold_block(block: nn.Module, actions: np.ndarray, channel_multiple: int = 1) -> None:
    """Rebuild conv1 / bn1 / conv2 of one block in place for ``actions`` and fill its adafuse slot.

    Channel order ``[kept..., padding..., reused...]``: the zero channels that round kept + reused up to
    ``channel_multiple`` (:func:`padded_channels`) sit between, so that they are not shifted."""
    kept = np.flatnonzero(actions == KEPT)
    reused = np.flatnonzero(actions == REUSED)
    padding = padded_channels(len(kept) + len(reused), channel_multiple) - len(kept) - len(reused)
    order = torch.as_tensor(np.concatenate([kept, np.full(padding, -1), reused]), dtype=torch.long)  # (computed,)
    conv1, bn1, conv2 = block.conv1, block.bn1, block.conv2
    if not (isinstance(conv1, nn.Conv2d) and isinstance(bn1, nn.BatchNorm2d) and isinstance(conv2, nn.Conv2d)):
        raise EdgefuseError(f"{type(block).__name__}: folding needs conv1 / bn1 / conv2 as Conv2d / BatchNorm2d / "
                            "Conv2d; fold a ResNet-block AdaFuse model")
    block.conv1 = _sliced_conv(conv1, out_index=order)
    block.bn1 = _sliced_bn(bn1, order)
    block.conv2 = _sliced_conv(conv2, in_index=order)
    block.adafuse = FoldedFuse(len(kept) + padding, len(reused))


def _check_plan(fuses: Mapping[str, AdaFuse], plan: FoldPlan) -> None:
    fix = "make the plan with plan_folding on statistics collected from this model"
    if set(plan.actions) != set(fuses):
        missing, extra = sorted(set(fuses) - set(plan.actions)), sorted(set(plan.actions) - set(fuses))
        raise EdgefuseError(f"fold plan does not match the model's AdaFuse blocks (missing {missing}, "
                            f"unknown {extra}); {fix}")
    for name, fuse in fuses.items():
        a = np.asarray(plan.actions[name])
        if a.shape != (fuse.width,) or not np.isin(a, (REMOVED, REUSED, KEPT)).all():
            raise EdgefuseError(f"fold plan of block {name} has shape {a.shape} or actions outside 0/1/2, expected "
                                f"({fuse.width},) of 0 removed / 1 reused / 2 kept; {fix}")
        if (a == REMOVED).all():
            raise EdgefuseError(f"fold plan removes every channel of block {name}; keep at least one ({fix}: "
                                "it keeps the least skipped channel)")


def fold_model(model: VideoClassifier, plan: FoldPlan) -> VideoClassifier:
    """A deep copy of ``model`` with every AdaFuse block folded to ``plan`` (dense, policy-free)."""
    _check_plan(adafuse_blocks(model), plan)
    folded = copy.deepcopy(model)
    for name, block in folded.blocks():
        if isinstance(getattr(block, "adafuse", None), AdaFuse):
            _fold_block(block, np.asarray(plan.actions[name]), plan.channel_multiple)
    for attr in _SHARED_POLICY:
        if hasattr(folded, attr):
            delattr(folded, attr)
    extra = {**folded.config.extra, "policy": "static", "fold_tau": plan.tau}
    if plan.channel_multiple > 1:
        extra["fold_channel_multiple"] = plan.channel_multiple
    folded.config = folded.config.replace(extra=extra)
    return folded


def policy_macs(model: nn.Module, frames: int) -> int:
    """MACs per clip of the policy nets' linear layers (fc0, fc1 of every block, per frame)."""
    return sum(frames * (f.fc0.in_features * f.fc0.out_features + f.fc1.in_features * f.fc1.out_features)
               for f in adafuse_blocks(model).values())


def predicted_folded_macs(model: nn.Module, plan: FoldPlan, frames: int = 8, size: int = 224) -> int:
    """Dense MACs per clip of ``fold_model(model, plan)``, from the dynamic model's dense cost."""
    fuses = adafuse_blocks(model)
    _check_plan(fuses, plan)
    cost = model_cost(model, frames=frames, size=size)
    total = cost.macs_per_clip - policy_macs(model, frames)
    for name, fuse in fuses.items():
        removed = plan.channels(name)["removed"] - plan.padding(name)  # zero channels cost their MACs
        convs = cost.macs_of(f"backbone.{name}.conv1") + cost.macs_of(f"backbone.{name}.conv2")
        total -= convs * removed // fuse.width  # whole channels: exact
    return total
