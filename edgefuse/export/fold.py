"""Fold AdaFuse's learned policy into a static, smaller, dense model (the ``static`` policy of ``edgefuse export``).

AdaFuse decides per residual block, per output channel of conv1 and per frame:
skip (0), reuse (1: the previous segment's conv1 output) or keep (2). A dense
engine (TensorRT, ONNX Runtime) computes every channel whatever the policy says,
so the dynamic policy saves nothing there. Folding turns the policy observed on
clips into a fixed structure that dense engines run faster:

1. :func:`collect_policy_stats` runs the dynamic model and counts, per block,
   segment position and channel, how often each action was chosen.
2. :func:`plan_folding` turns the counts into one fixed action per channel.
3. :func:`fold_model` builds the folded copy: removed channels are dropped from
   conv1 (outputs), bn1 and conv2 (inputs); the remaining channels are ordered
   ``[kept..., reused...]`` and the ``adafuse`` slot holds a parameter-free
   :class:`FoldedFuse` that shifts the reused channels by one segment. The policy
   nets are gone.
4. :func:`fold` does all of it and, without an explicit ``tau``, picks the most
   aggressive ``tau`` whose folded model agrees with the dynamic one.

The rule. Per block and channel, with f_skip, f_reuse, f_keep the fractions of the
observed (clip, segment) cases in which the channel was skipped / reused / kept
(aggregated over segment positions) and ``tau`` in (0, 1]:

- ``f_skip >= tau``: the channel is **removed** (``f_skip == tau`` removes);
- otherwise it is **kept** if ``f_keep >= f_reuse`` (ties keep), else **reused**
  (a fixed shift by one segment: the previous segment's output, zeros for the first).

Lower ``tau`` = more aggressive; ``tau = 1`` removes only channels skipped in every
observed case. A block whose channels would all be removed keeps the one with the
lowest f_skip (first on ties; kept or reused by the same rule) so shapes stay
valid, and a warning is logged.

Exactness. Whenever the dynamic policy's decisions equal the plan, the folded model
computes exactly what the dynamic one does (up to float summation order): a
skipped channel is zero, so dropping it from conv2's input changes nothing; keep
is ``out * 1 + prev * 0``; reuse is ``out * 0 + prev * 1`` with zeros at the first
segment, which is what :class:`FoldedFuse` computes. A channel skipped at the
first segment and reused after it is therefore folded exactly as "reused".

MACs (dense, :func:`edgefuse.models.cost.model_cost` conventions): the folded
model costs the dense model minus the policy nets' linear layers (fc0 and fc1 of
every block, per frame) minus, per block, ``removed / width`` of conv1's and
conv2's MACs. Whole channels are removed, so :func:`predicted_folded_macs` is exact.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.cost import Cost, count_params, decision_savings, dense_macs, model_cost
from edgefuse.models.layers.adafuse import ACTIONS, KEEP, REUSE, SKIP, AdaFuse
from edgefuse.models.video import VideoClassifier
from edgefuse.progress import progress as progress_bar

__all__ = [
    "DEFAULT_TAUS", "FoldPlan", "FoldResult", "FoldedFuse", "PolicyStats", "channel_actions", "collect_policy_stats",
    "fold", "fold_model", "plan_folding", "policy_macs", "predicted_folded_macs",
]

log = logging.getLogger(__name__)

# Plan actions use AdaFuse's numbering: a skipped channel becomes a removed one.
REMOVED, REUSED, KEPT = SKIP, REUSE, KEEP
PLAN_ACTIONS = ("removed", "reused", "kept")
DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.1, ..., 1.0
_EDGE = 1e-12  # f_skip == tau must remove even when tau (e.g. 0.15) is not a binary fraction
_SHARED_POLICY = ("policy_fc0s", "policy_fc1s")


# ---------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True, eq=False)
class PolicyStats:
    """Decision counts of every AdaFuse block over ``clips`` clips of ``segments`` frames.

    ``counts[block]``: int64 (T, width, 3), how often each action (skip, reuse, keep)
    was chosen per segment position and channel; every (t, c) sums to ``clips``.
    """

    counts: Mapping[str, np.ndarray]
    clips: int
    segments: int

    def fractions(self, block: str) -> np.ndarray:
        """(width, 3) float: f_skip, f_reuse, f_keep per channel, over clips and segment positions."""
        c = self.counts[block].sum(axis=0)  # (width, 3)
        return c / max(self.clips * self.segments, 1)

    def block_fractions(self, block: str) -> dict[str, float]:
        """Fractions of each action over (clip, segment, channel)."""
        c = self.counts[block].sum(axis=(0, 1))  # (3,)
        total = max(int(c.sum()), 1)
        return {a: float(c[i]) / total for i, a in enumerate(ACTIONS)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"clips", "segments", "actions", "blocks": {name: nested (T, width, 3) lists}}``."""
        return {
            "clips": self.clips,
            "segments": self.segments,
            "actions": list(ACTIONS),
            "blocks": {name: c.tolist() for name, c in self.counts.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicyStats:
        fix = "re-collect them with edgefuse.export.fold.collect_policy_stats (or edgefuse export --policy static)"
        try:
            clips, segments = int(d["clips"]), int(d["segments"])
            counts = {str(k): np.asarray(v, dtype=np.int64) for k, v in d["blocks"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EdgefuseError(f"policy statistics are malformed ({type(e).__name__}: {e}); {fix}") from None
        if list(d.get("actions", ACTIONS)) != list(ACTIONS):
            raise EdgefuseError(f"policy statistics count actions {d.get('actions')}, expected {list(ACTIONS)}; {fix}")
        for name, c in counts.items():
            if c.ndim != 3 or c.shape[0] != segments or c.shape[2] != 3:
                raise EdgefuseError(f"policy statistics of block {name} have shape {c.shape}, "
                                    f"expected ({segments}, width, 3); {fix}")
            if (c.sum(axis=2) != clips).any():
                raise EdgefuseError(f"policy statistics of block {name} do not add up to {clips} clips; {fix}")
        return cls(counts=counts, clips=clips, segments=segments)


@dataclass(frozen=True, eq=False)
class _Observed:
    """One pass of the dynamic model: decision counts, logits per batch, expected MACs."""

    stats: PolicyStats
    logits: list[torch.Tensor]
    saved_macs: float  # per clip, averaged over the clips (0 unless asked for)
    shapes: dict[tuple[int, int, int], int]  # (T, H, W) -> number of clips
    costs: dict[tuple[int, int, int], Cost]  # dense cost of one clip per (T, H, W) (empty unless asked for)


def _check_clips(clips: Any, index: int) -> torch.Tensor:
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5 or clips.shape[2] != 3:
        shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise EdgefuseError(f"batch {index} of the folding clips is {shape}, expected a tensor (N, T, 3, H, W); "
                            "pass preprocessed clips as float32 (N, T, 3, H, W)")
    return clips


def _adafuse_blocks(model: nn.Module) -> dict[str, AdaFuse]:
    fuses = {name: f for name, f in model.adafuse_modules() if isinstance(f, AdaFuse)}  # type: ignore[attr-defined]
    if not fuses:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise EdgefuseError(f"{name} has no AdaFuse policy to fold; use --policy static with adafuse_* models only")
    return fuses


def _recorded(model: nn.Module, batches: Iterable[torch.Tensor], enabled: bool
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
    """Run the dynamic model (eval, no_grad); yields (clips, logits, {block: mask (N, T, width, 3)})."""
    fuses = _adafuse_blocks(model)
    was_training = model.training
    model.eval()
    for f in fuses.values():
        f.record = True
    try:
        with torch.no_grad():
            for i, clips in enumerate(progress_bar(batches, "folding: policy statistics", enabled=enabled)):
                logits = model(_check_clips(clips, i))
                yield clips, logits, {name: f.last_mask for name, f in fuses.items()}  # type: ignore[misc]
    finally:
        for f in fuses.values():
            f.record = False
            f.last_mask = None
        model.train(was_training)


def _shape_cost(model: nn.Module, t: int, h: int, w: int) -> Cost:
    """Dense cost of one clip (1, T, 3, H, W)."""
    total, layers = dense_macs(model, (1, t, 3, h, w))
    return Cost(count_params(model), t, total, layers)


def _batch_savings(cost: Cost, masks: Mapping[str, torch.Tensor]) -> float:
    """MACs per clip the recorded decisions save (paper accounting, ``cost.decision_savings``)."""
    t = cost.frames
    return sum(decision_savings(mask, cost.macs_of(f"backbone.{name}.conv1") // t,
                                cost.macs_of(f"backbone.{name}.conv2") // t) for name, mask in masks.items())


def _observe(model: nn.Module, batches: Iterable[torch.Tensor], enabled: bool, savings: bool) -> _Observed:
    counts: dict[str, np.ndarray] = {}
    logits: list[torch.Tensor] = []
    shapes: dict[tuple[int, int, int], int] = {}
    costs: dict[tuple[int, int, int], Cost] = {}
    saved = 0.0
    segments: int | None = None
    with contextlib.closing(_recorded(model, batches, enabled)) as recorded:
        for clips, out, masks in recorded:
            n, t, _, h, w = clips.shape
            if segments is None:
                segments = t
            elif t != segments:
                raise EdgefuseError(f"folding clips have {t} segments in batch {len(logits)} but {segments} before; "
                                    "pass batches with the same number of segments T (the model's num_segments)")
            logits.append(out)
            shapes[(t, h, w)] = shapes.get((t, h, w), 0) + n
            for name, mask in masks.items():
                c = mask.sum(dim=0).round().to(torch.int64).numpy()  # (T, width, 3)
                counts[name] = counts[name] + c if name in counts else c
            if savings:
                if (t, h, w) not in costs:
                    costs[(t, h, w)] = _shape_cost(model, t, h, w)
                saved += _batch_savings(costs[(t, h, w)], masks) * n  # summed over the batch's clips
    if segments is None:
        raise EdgefuseError("no clips to collect AdaFuse policy statistics from; pass at least one batch")
    clips_total = sum(shapes.values())
    stats = PolicyStats(counts=counts, clips=clips_total, segments=segments)
    return _Observed(stats, logits, saved / clips_total, shapes, costs)


def collect_policy_stats(model: nn.Module, batches: Iterable[torch.Tensor], progress: bool = True) -> PolicyStats:
    """Count every AdaFuse block's decisions of ``model`` (eval, no_grad) on clip batches (N, T, 3, H, W)."""
    return _observe(model, batches, progress, savings=False).stats


# ---------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Fixed per-channel actions: ``actions[block]`` int (width,), 0 removed, 1 reused, 2 kept."""

    tau: float
    actions: Mapping[str, np.ndarray]

    def channels(self, block: str) -> dict[str, int]:
        """Channel counts of one block: removed / reused / kept."""
        a = self.actions[block]
        return {name: int((a == i).sum()) for i, name in enumerate(PLAN_ACTIONS)}

    def key(self) -> tuple[tuple[str, bytes], ...]:
        """Identifies the structure (two taus giving the same actions fold to the same model)."""
        return tuple((name, np.asarray(a, dtype=np.int8).tobytes()) for name, a in sorted(self.actions.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "actions": list(PLAN_ACTIONS),
                "blocks": {name: [int(v) for v in a] for name, a in self.actions.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldPlan:
        try:
            tau = float(d["tau"])
            actions = {str(k): np.asarray(v, dtype=np.int64) for k, v in d["blocks"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EdgefuseError(f"fold plan is malformed ({type(e).__name__}: {e}); "
                                "re-create it with edgefuse.export.fold.plan_folding") from None
        return cls(tau=tau, actions=actions)


def _check_tau(tau: float) -> float:
    if not isinstance(tau, (int, float)) or not 0.0 < float(tau) <= 1.0:
        raise EdgefuseError(f"fold tau must be in (0, 1], got {tau!r}; e.g. --tau 0.5 "
                            "(lower removes more channels), or leave it out to search for one")
    return float(tau)


def channel_actions(fractions: np.ndarray, tau: float, block: str = "") -> np.ndarray:
    """The rule on one block: fractions (width, 3) of skip/reuse/keep -> int64 actions (width,)."""
    f_skip, f_reuse, f_keep = fractions[:, SKIP], fractions[:, REUSE], fractions[:, KEEP]
    actions = np.where(f_keep >= f_reuse, KEPT, REUSED).astype(np.int64)  # (width,)
    actions[f_skip >= tau - _EDGE] = REMOVED
    if (actions == REMOVED).all():
        c = int(np.argmin(f_skip))
        actions[c] = KEPT if f_keep[c] >= f_reuse[c] else REUSED
        log.warning("fold tau %.3g would remove every channel of block %s; keeping channel %d "
                    "(skipped in %.1f%% of the cases) so the block stays valid", tau, block, c, 100 * f_skip[c])
    return actions


def plan_folding(stats: PolicyStats, tau: float) -> FoldPlan:
    """Apply the rule (module docstring) to every block of ``stats``."""
    tau = _check_tau(tau)
    if stats.clips <= 0:
        raise EdgefuseError("policy statistics hold no clips; collect them on at least one batch of clips")
    return FoldPlan(tau=tau, actions={name: channel_actions(stats.fractions(name), tau, name) for name in stats.counts})


# ---------------------------------------------------------------------------------------------
# Folded model


class FoldedFuse(nn.Module):
    """Static AdaFuse: conv1's output is ``[kept..., reused...]``; the reused channels take the
    previous segment's values (zeros for the first segment). Parameter-free; slices and
    concatenations only, so it exports to ONNX as it runs, for any T."""

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
    """A new Conv2d with the selected output and/or input channels (in that order)."""
    if conv.groups != 1:
        raise ValueError("folding slices dense convolutions only (groups=1)")
    weight = conv.weight.detach()  # (C_out, C_in, kh, kw)
    bias = None if conv.bias is None else conv.bias.detach()  # (C_out,)
    if out_index is not None:
        weight = weight.index_select(0, out_index)  # (C_out', C_in, kh, kw)
        bias = None if bias is None else bias.index_select(0, out_index)  # (C_out',)
    if in_index is not None:
        weight = weight.index_select(1, in_index)  # (C_out', C_in', kh, kw)
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=bias is not None, padding_mode=conv.padding_mode,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)  # type: ignore[union-attr]
    return new.train(conv.training).requires_grad_(conv.weight.requires_grad)


def _sliced_bn(bn: nn.BatchNorm2d, index: torch.Tensor) -> nn.BatchNorm2d:
    """A new BatchNorm2d over the selected channels (weights, running stats, eps, momentum copied)."""
    ref = bn.weight if bn.weight is not None else bn.running_mean
    new = nn.BatchNorm2d(len(index), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats,
                         device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.index_select(0, index))  # (C',)
            new.bias.copy_(bn.bias.index_select(0, index))  # (C',)
        if bn.track_running_stats and bn.running_mean is not None:
            new.running_mean.copy_(bn.running_mean.index_select(0, index))  # type: ignore[union-attr]  # (C',)
            new.running_var.copy_(bn.running_var.index_select(0, index))  # type: ignore[union-attr]  # (C',)
            new.num_batches_tracked.copy_(bn.num_batches_tracked)  # type: ignore[union-attr]
    return new.train(bn.training)


def _fold_block(block: nn.Module, actions: np.ndarray) -> None:
    """Rebuild conv1 / bn1 / conv2 of one block in place for ``actions`` and fill its adafuse slot."""
    kept = np.flatnonzero(actions == KEPT)
    reused = np.flatnonzero(actions == REUSED)
    order = torch.as_tensor(np.concatenate([kept, reused]), dtype=torch.long)  # (kept+reused,)
    block.conv1 = _sliced_conv(block.conv1, out_index=order)
    block.bn1 = _sliced_bn(block.bn1, order)
    block.conv2 = _sliced_conv(block.conv2, in_index=order)
    block.adafuse = FoldedFuse(len(kept), len(reused))


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
    _check_plan(_adafuse_blocks(model), plan)
    folded = copy.deepcopy(model)
    for name, block in folded.blocks():
        if isinstance(getattr(block, "adafuse", None), AdaFuse):
            _fold_block(block, np.asarray(plan.actions[name]))
    for attr in _SHARED_POLICY:
        if hasattr(folded, attr):
            delattr(folded, attr)
    folded.config = folded.config.replace(extra={**folded.config.extra, "policy": "static", "fold_tau": plan.tau})
    return folded


def policy_macs(model: nn.Module, frames: int) -> int:
    """MACs per clip of the policy nets' linear layers (fc0, fc1 of every block, per frame)."""
    return sum(frames * (f.fc0.in_features * f.fc0.out_features + f.fc1.in_features * f.fc1.out_features)
               for f in _adafuse_blocks(model).values())


def predicted_folded_macs(model: nn.Module, plan: FoldPlan, frames: int = 8, size: int = 224) -> int:
    """Dense MACs per clip of ``fold_model(model, plan)``, from the dynamic model's dense cost."""
    fuses = _adafuse_blocks(model)
    _check_plan(fuses, plan)
    cost = model_cost(model, frames=frames, size=size)
    total = cost.macs_per_clip - policy_macs(model, frames)
    for name, fuse in fuses.items():
        removed = plan.channels(name)["removed"]
        convs = cost.macs_of(f"backbone.{name}.conv1") + cost.macs_of(f"backbone.{name}.conv2")
        total -= convs * removed // fuse.width  # whole channels: exact
    return total


# ---------------------------------------------------------------------------------------------
# Search and report


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold` made: the folded model, its plan and tau, the statistics, and a JSON-able report
    (tau, agreement, max_abs_logit_diff, clips, macs {dense, dynamic_expected, folded}, blocks, taus_tried)."""

    model: VideoClassifier  # folded, eval mode
    plan: FoldPlan
    tau: float
    stats: PolicyStats
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Trial:
    """How one candidate tau folds: its plan and the folded model's agreement and cost (not the model)."""

    tau: float
    plan: FoldPlan
    agreement: float
    max_abs_diff: float
    macs: float  # dense MACs per clip, averaged over the clips' shapes


def _compare(folded: nn.Module, batches: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]
             ) -> tuple[float, float]:
    """(top-1 agreement, max |logit difference|) of ``folded`` against the cached dynamic logits."""
    agree, total, diff = 0, 0, 0.0
    with torch.no_grad():
        for clips, ref in zip(batches, reference):
            out = folded(clips)  # (N, K)
            agree += int((out.argmax(dim=-1) == ref.argmax(dim=-1)).sum())
            total += ref.shape[0]
            diff = max(diff, float((out - ref).abs().max()))
    return agree / max(total, 1), diff


def _mean_macs(model: nn.Module, shapes: Mapping[tuple[int, int, int], int],
               known: Mapping[tuple[int, int, int], Cost] | None = None) -> float:
    """Dense MACs per clip averaged over the clips' (T, H, W); ``known`` costs of ``model`` are reused."""
    known = known or {}
    total = sum(n * (known[(t, h, w)].macs_per_clip if (t, h, w) in known else dense_macs(model, (1, t, 3, h, w))[0])
                for (t, h, w), n in shapes.items())
    clips = sum(shapes.values())
    return total // clips if total % clips == 0 else total / clips  # exact integer for one clip shape


def _evaluate(folded: nn.Module, tau: float, plan: FoldPlan, batches: Sequence[torch.Tensor],
              observed: _Observed) -> _Trial:
    agreement, diff = _compare(folded, batches, observed.logits)
    trial = _Trial(tau, plan, agreement, diff, _mean_macs(folded, observed.shapes))
    log.info("fold tau %.3g: top-1 agreement %.4f, %.4f GMACs per clip", tau, agreement, trial.macs / 1e9)
    return trial


def _search(model: VideoClassifier, stats: PolicyStats, batches: Sequence[torch.Tensor], observed: _Observed,
            taus: Sequence[float], min_agreement: float, enabled: bool) -> tuple[list[_Trial], VideoClassifier]:
    """Try taus in order until one agrees >= min_agreement (else the last, with a warning).

    Returns the trials and the folded model of the last one. Taus giving the same plan are
    evaluated once; only the latest folded model is held (one copy of the network at a time).
    """
    seen: dict[Any, _Trial] = {}
    latest: tuple[Any, VideoClassifier | None] = (None, None)
    tried: list[_Trial] = []
    for tau in progress_bar(taus, "folding: tau search", enabled=enabled):
        plan = plan_folding(stats, tau)
        key = plan.key()
        if key not in seen:
            latest = (key, fold_model(model, plan).eval())
            seen[key] = _evaluate(latest[1], tau, plan, batches, observed)
        tried.append(_Trial(tau, plan, seen[key].agreement, seen[key].max_abs_diff, seen[key].macs))
        if tried[-1].agreement >= min_agreement:
            break
    else:
        log.warning("no fold tau reached top-1 agreement %.4f with the dynamic model; using tau %.3g, "
                    "agreement %.4f", min_agreement, tried[-1].tau, tried[-1].agreement)
    folded = latest[1] if latest[0] == tried[-1].plan.key() else None
    return tried, folded if folded is not None else fold_model(model, tried[-1].plan).eval()


def _candidate_taus(taus: Iterable[float]) -> list[float]:
    out = sorted({_check_tau(t) for t in taus})
    return out if out and out[-1] == 1.0 else [*out, 1.0]  # tau 1 is the fallback


def _report(chosen: _Trial, tried: Sequence[_Trial], stats: PolicyStats, observed: _Observed,
            dense: float) -> dict[str, Any]:
    blocks = [{"block": name, **stats.block_fractions(name), **chosen.plan.channels(name)} for name in stats.counts]
    return {
        "tau": chosen.tau,
        "agreement": chosen.agreement,
        "max_abs_logit_diff": chosen.max_abs_diff,
        "clips": stats.clips,
        "macs": {"dense": dense, "dynamic_expected": dense - observed.saved_macs, "folded": chosen.macs},
        "blocks": blocks,
        "taus_tried": [{"tau": t.tau, "agreement": t.agreement, "folded_gmacs": t.macs / 1e9} for t in tried],
    }


def fold(
    model: VideoClassifier,
    batches: Iterable[torch.Tensor],
    tau: float | None = None,
    min_agreement: float = 0.99,
    taus: Sequence[float] = DEFAULT_TAUS,
    progress: bool = True,
) -> FoldResult:
    """Collect the policy statistics on ``batches`` (once), plan, fold and report.

    With ``tau`` None, candidate taus are tried from the smallest (most aggressive)
    up and the first whose folded model's top-1 agrees with the dynamic model on
    ``batches`` in at least ``min_agreement`` of the clips is taken; tau 1 is the
    fallback (returned with a warning if even it falls short). MACs in the report
    are per clip at the clips' (T, H, W).
    """
    if not 0.0 <= min_agreement <= 1.0:
        raise EdgefuseError(f"min_agreement must be in [0, 1], got {min_agreement}; e.g. --min-agreement 0.99")
    candidates = [_check_tau(tau)] if tau is not None else _candidate_taus(taus)
    batches = list(batches)
    observed = _observe(model, batches, progress, savings=True)
    stats = observed.stats
    tried, folded = _search(model, stats, batches, observed, candidates, min_agreement if tau is None else 0.0,
                            progress and tau is None)
    chosen = tried[-1]
    report = _report(chosen, tried, stats, observed, _mean_macs(model, observed.shapes, observed.costs))
    log.info("folded with tau %.3g: agreement %.4f, %.4f -> %.4f GMACs per clip", chosen.tau, chosen.agreement,
             report["macs"]["dense"] / 1e9, chosen.macs / 1e9)
    return FoldResult(model=folded, plan=chosen.plan, tau=chosen.tau, stats=stats, report=report)
