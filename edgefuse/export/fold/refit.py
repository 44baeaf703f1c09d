"""Refit: after folding, re-fit each folded block's conv2 by least squares to what the policy's conv2 computed.

Folding fixes one action per channel where the policy chose per clip and frame, so the folded conv2 sees an input
that differs from the dynamic model's: a channel the policy kept in some frames is gone, one it reused is now
always shifted. :func:`refit_folded` (on by default in :func:`edgefuse.export.fold.fold`) runs the folding clips through
both models and, block by block in network order, replaces the folded conv2's weights ``W`` with ``W + D`` where ``D``
minimises, over sampled output positions,

    || Y - X (W + D) - c ||^2 + lam || D ||^2

with ``X`` the folded conv2's input patches (im2col; the earlier blocks already refitted), ``Y`` the dynamic model's
conv2 output at the same clip, frame and position, ``c`` a per-channel constant (taken into bn2's running mean, so the
graph keeps its shape) and ``lam`` a ridge towards the folded weights. It is channel pruning's feature-map
reconstruction (He et al., ICCV 2017), aimed at the dynamic model.

The ridge is chosen per block by two-fold cross-validation over the folding clips (fit on one half, judge conv2's
error on the other, and the other way round) among :data:`RIDGES` (relative to the mean diagonal of ``X^T X``); a
block that no ridge improves on held-out clips is left as folded, so the refit only stays where it generalises
(deep blocks with few positions per weight, or folds already close to the policy, gain nothing there). The chosen
ridge is then fitted on all the clips.

Properties: the structure and MACs are unchanged (only weights and bn2's mean move); D = 0 is in the search, so on
the sampled positions of the folding clips the block's error never grows (:attr:`RefitBlock.after` <=
:attr:`RefitBlock.before`); where
the policy's decisions equal the plan, ``Y = X W`` exactly and nothing moves (up to float rounding). Zero padding
channels (``channel_multiple``) have no input and keep their zero weights.

In :func:`edgefuse.export.fold.fold` the refit covers only the blocks whose plan overrides at least one observed
decision (:func:`edgefuse.export.fold.plan.overridden`: the others compute what the policy did), and a candidate tau
keeps it only where, judged out of fold, it agrees with the policy better than the plain fold: a smaller conv2 error
is not always a better top-1 (on the zoo model, folded at tau 0.8, it lowered the KL to the policy threefold and lost
1.2 points of top-1 on held-out clips; at tau 0.45 it gained 11: benchmarks/results/fold_refit.md).
"""
from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold.model import FoldedFuse
from edgefuse.models.video import VideoClassifier

# candidate ridges, relative to the mean diagonal of X^T X; chosen per block by two-fold cross-validation over clips
RIDGES: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
DEFAULT_MAX_ROWS = 65536  # sampled output positions per block, over all folding clips


@dataclass(frozen=True)
class RefitBlock:
    """One block the refit looked at: conv2's output error against the dynamic model's, relative to the output's
    energy (``||Y - X W||^2 / ||Y||^2`` over the sampled positions of all folding clips), before and after; the same
    on held-out clips (two-fold cross-validation, each half judged by the fit on the other); the ridge chosen (None:
    no ridge lowered the held-out error, the block is left as folded) and the positions it used."""

    block: str
    before: float
    after: float
    held_out_before: float
    held_out_after: float
    ridge: float | None
    rows: int


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def _capture(model: nn.Module, module: nn.Module, clips: torch.Tensor, output: bool) -> torch.Tensor:
    """``module``'s input (``output`` False) or output when ``model`` runs ``clips``; the forward stops there."""
    got: list[torch.Tensor] = []

    def pre(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        got.append(args[0].detach())
        raise _Stop

    def post(_: nn.Module, __: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        got.append(out.detach())
        raise _Stop

    handle = module.register_forward_hook(post) if output else module.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            model(clips)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not got:
        raise EdgefuseError(f"refit: {type(module).__name__} did not run on the folding clips; fold a ResNet-block "
                            "AdaFuse model")
    return got[0]


@dataclass
class _Sums:
    """Float64 sums over sampled positions: X^T X, X^T R, R^2 and Y^2 per output channel, with X's ones column last
    and R = Y - X W the folded conv2's residual (small where the plan matches the policy: no cancellation)."""

    xtx: torch.Tensor  # (F + 1, F + 1)
    xtr: torch.Tensor  # (F + 1, C_out)
    rtr: torch.Tensor  # (C_out,)
    yty: torch.Tensor  # (C_out,)
    rows: int = 0

    @classmethod
    def zeros(cls, features: int, out_channels: int) -> _Sums:
        f64 = torch.float64
        return cls(torch.zeros(features + 1, features + 1, dtype=f64),
                   torch.zeros(features + 1, out_channels, dtype=f64),
                   torch.zeros(out_channels, dtype=f64), torch.zeros(out_channels, dtype=f64))

    def __add__(self, other: _Sums) -> _Sums:
        return _Sums(self.xtx + other.xtx, self.xtr + other.xtr, self.rtr + other.rtr, self.yty + other.yty,
                     self.rows + other.rows)

    def squared(self, delta: torch.Tensor) -> float:
        """||R - X delta||^2 (delta: (F + 1, C_out)): conv2's squared error after the change."""
        sq = self.rtr.sum() - 2.0 * (delta * self.xtr).sum() + (delta * (self.xtx @ delta)).sum()
        return float(sq.clamp(min=0.0))

    def error(self, delta: torch.Tensor) -> float:
        """||R - X delta||^2 / ||Y||^2: conv2's error after the change, relative to its output's energy."""
        return self.squared(delta) / max(float(self.yty.sum()), 1e-30)


def _sums(folded: nn.Module, dynamic: nn.Module, conv: nn.Conv2d, target: nn.Conv2d, clips: torch.Tensor,
          rows: int, generator: torch.Generator) -> _Sums:
    """The sums of one batch of clips, over ``rows`` sampled output positions."""
    kh, kw = conv.kernel_size
    padding = conv.padding
    if isinstance(padding, str):
        raise EdgefuseError(f"refit: conv2 with padding={padding!r} is not supported; pass --no-refit")
    features = conv.in_channels * kh * kw
    weight = conv.weight.detach().reshape(conv.out_channels, features).T.float()  # (C_in'*kh*kw, C_out)
    y = _capture(dynamic, target, clips, output=True)  # (N*T, C_out, H', W')
    x = _capture(folded, conv, clips, output=False)  # (N*T, C_in', H, W)
    cols = F.unfold(x, (kh, kw), dilation=conv.dilation, padding=padding, stride=conv.stride)  # (N*T, C_in'*kh*kw, L)
    cols = cols.transpose(1, 2).reshape(-1, features)  # (N*T*L, C_in'*kh*kw)
    y = y.flatten(2).transpose(1, 2).reshape(-1, conv.out_channels)  # (N*T*L, C_out)
    if cols.shape[0] != y.shape[0]:
        raise EdgefuseError(f"refit: conv2 of the folded and dynamic models cover {cols.shape[0]} and {y.shape[0]} "
                            "positions; fold a model with its own policy (same geometry)")
    pick = torch.randperm(cols.shape[0], generator=generator)[:rows]  # (M,)
    cols, y = cols[pick].float(), y[pick].float()  # (M, C_in'*kh*kw), (M, C_out)
    r = y - cols @ weight  # (M, C_out): the residual itself, not a difference of large sums
    cols = torch.cat([cols, torch.ones(cols.shape[0], 1, dtype=cols.dtype)], dim=1)  # (M, C_in'*kh*kw + 1)
    # float32 products (the cost), summed over batches in float64
    return _Sums((cols.T @ cols).double(), (cols.T @ r).double(), (r * r).sum(dim=0).double(),
                 (y * y).sum(dim=0).double(), int(cols.shape[0]))


class _RidgePath:
    """Ridge solutions on the live features of one fit, for any ridge, from one eigendecomposition of X^T X."""

    def __init__(self, fit: _Sums, live: torch.Tensor) -> None:
        a = fit.xtx[live][:, live]  # (F', F')
        self.live = live
        self.scale = float(a.diagonal()[:-1].mean()) if a.shape[0] > 1 else 1.0  # the ones column excluded
        self.values, self.vectors = torch.linalg.eigh(a)  # (F',), (F', F')
        self.projected = self.vectors.T @ fit.xtr[live]  # (F', C_out)

    def delta(self, ridge: float) -> torch.Tensor:
        """(F + 1, C_out): argmin ||R - X D||^2 + ridge * scale * ||D||^2, zero on the dead features."""
        out = torch.zeros(self.live.shape[0], self.projected.shape[1], dtype=torch.float64)
        out[self.live] = self.vectors @ (self.projected / (self.values.clamp(min=0.0) + ridge * self.scale)[:, None])
        return out


def clip_halves(batches: Sequence[torch.Tensor]) -> tuple[list[tuple[int, slice]], list[tuple[int, slice]]]:
    """Two halves of the folding clips, by clip: (batch index, clips of that batch) pairs. Alternate batches; a single
    batch is split in two."""
    if len(batches) == 1:
        half = int(batches[0].shape[0]) // 2
        return [(0, slice(0, half))], [(0, slice(half, None))]
    every = slice(None)
    return [(i, every) for i in range(0, len(batches), 2)], [(i, every) for i in range(1, len(batches), 2)]


def take(batches: Sequence[torch.Tensor], half: Sequence[tuple[int, slice]]) -> list[torch.Tensor]:
    """The clips of one half (:func:`clip_halves`), as batches."""
    return [batches[i][part] for i, part in half]


def _solve(halves: Sequence[_Sums], every: _Sums, ridges: Sequence[float]
           ) -> tuple[torch.Tensor, float | None, float, float]:
    """(delta (F + 1, C_out), the ridge chosen or None, held-out error before, after) for one block from the sums of
    the two halves of the clips (``every``: their total): each ridge is judged by both halves' errors under the fit
    on the other half; the best, if it beats no change, is fitted on all the clips."""
    features = every.xtx.shape[0] - 1
    # zero (padding) channels have no input: their weights stay zero
    live = torch.cat([every.xtx.diagonal()[:features] > 0, torch.ones(1, dtype=torch.bool)])  # (F + 1,)
    paths = [_RidgePath(halves[1 - k], live) for k in range(2)]  # fit on one half, judge on the other
    zero = torch.zeros_like(every.xtr)  # (F + 1, C_out)
    energy = max(float(every.yty.sum()), 1e-30)

    def held_out(deltas: Sequence[torch.Tensor]) -> float:
        return sum(halves[k].squared(deltas[k]) for k in range(2)) / energy

    before = held_out([zero, zero])
    held = {r: held_out([paths[0].delta(r), paths[1].delta(r)]) for r in ridges}
    best = min(ridges, key=lambda r: held[r])
    if held[best] >= before:
        return zero, None, before, before
    return _RidgePath(every, live).delta(best), best, before, held[best]


def half_sizes(batches: Sequence[torch.Tensor]) -> tuple[int, int]:
    """How many clips each half (:func:`clip_halves`) holds."""
    first, second = clip_halves(batches)
    return (sum(int(b.shape[0]) for b in take(batches, first)), sum(int(b.shape[0]) for b in take(batches, second)))


def refit_folded(folded: VideoClassifier, dynamic: VideoClassifier, batches: Sequence[torch.Tensor],
                 blocks: Collection[str] | None = None, ridges: Sequence[float] = RIDGES,
                 max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0) -> tuple[VideoClassifier, tuple[RefitBlock, ...]]:
    """A copy of ``folded`` with the conv2 (and bn2's running mean) of its folded ``blocks`` (None: all of them, in
    network order) refitted to ``dynamic``'s conv2 outputs on ``batches`` (the folding clips), and what the refit
    did per block. Per block the ridge is the one of ``ridges`` with the lowest error on held-out clips (two-fold
    cross-validation by clip); a block no ridge improves there is left as folded. Deterministic for a ``seed``."""
    if not ridges or min(ridges) <= 0.0:
        raise EdgefuseError(f"refit: ridges must be > 0, got {tuple(ridges)}")
    clips = sum(int(b.shape[0]) for b in batches)
    if clips < 2:
        raise EdgefuseError(f"refit needs at least 2 folding clips (it holds half of them out), got {clips}")
    halves = [take(batches, h) for h in clip_halves(batches)]
    out = copy.deepcopy(folded).eval()
    dynamic_blocks = dict(dynamic.blocks())
    generator = torch.Generator().manual_seed(seed)
    done: list[RefitBlock] = []
    for name, block in out.blocks():
        fuse = getattr(block, "adafuse", None)
        wanted = blocks is None or name in blocks
        if not isinstance(fuse, FoldedFuse) or name not in dynamic_blocks or not wanted:
            continue
        conv, bn, target = block.conv2, block.bn2, dynamic_blocks[name].conv2
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(target, nn.Conv2d)):
            raise EdgefuseError(f"refit: block {name} needs conv2 / bn2 as Conv2d / BatchNorm2d")
        if conv.groups != 1 or conv.bias is not None or bn.running_mean is None:
            raise EdgefuseError(f"refit: block {name}'s conv2 must be dense without bias, followed by a BatchNorm "
                                "with running statistics")
        per_batch = max(1, max_rows // len(batches))
        features = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        sums = [_Sums.zeros(features, conv.out_channels), _Sums.zeros(features, conv.out_channels)]
        for k, half in enumerate(halves):
            for b in half:
                sums[k] = sums[k] + _sums(out, dynamic, conv, target, b, per_batch, generator)
        every = sums[0] + sums[1]
        delta, chosen, held_before, held_after = _solve(sums, every, ridges)
        zero = torch.zeros_like(delta)
        if chosen is not None:
            with torch.no_grad():
                conv.weight.add_(delta[:features].T.reshape(conv.weight.shape).to(conv.weight.dtype))
                bn.running_mean.sub_(delta[features].to(bn.running_mean.dtype))  # bn2(y + c) == bn2 with mean - c
        done.append(RefitBlock(block=name, before=every.error(zero), after=every.error(delta),
                               held_out_before=held_before, held_out_after=held_after, ridge=chosen,
                               rows=every.rows))
    return out, tuple(done)
