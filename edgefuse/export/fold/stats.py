"""Policy statistics: how often every AdaFuse block chose skip / reuse / keep per segment and channel."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.cost import Cost, FusePricing, count_params, decision_savings, dense_macs
from edgefuse.models.layers.adafuse import ACTIONS, AdaFuse
from edgefuse.models.video import VideoClassifier
from edgefuse.progress import progress as progress_bar

log = logging.getLogger(__name__)


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
class Observed:
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


def adafuse_blocks(model: nn.Module) -> dict[str, AdaFuse]:
    found = model.adafuse_modules() if isinstance(model, VideoClassifier) else ()
    fuses = {name: f for name, f in found if isinstance(f, AdaFuse)}
    if not fuses:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise EdgefuseError(f"{name} has no AdaFuse policy to fold; use --policy static with adafuse_* models only")
    assert isinstance(model, VideoClassifier)  # fuses come from adafuse_modules() only
    if not all(hasattr(block, "conv1") for name, block in model.blocks() if name in fuses):  # rebuilds conv1/bn1/conv2
        cfg = model.config
        raise EdgefuseError(f"{cfg.name}: --policy static folds AdaFuse into ResNet blocks only, not {cfg.backbone}'s; "
                            "export it with --policy dynamic (decisions in the graph) or --policy stream")
    return fuses


def _mask(fuse: AdaFuse) -> torch.Tensor:
    """The decisions a recording AdaFuse block made in the last forward, (N, T, width, 3)."""
    if fuse.last_mask is None:
        raise RuntimeError("an AdaFuse block did not record its decisions: it was skipped in the forward")
    return fuse.last_mask


def _recorded(model: nn.Module, batches: Iterable[torch.Tensor], enabled: bool
              ) -> Generator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], None, None]:
    """Run the dynamic model (eval, no_grad); yields (clips, logits, {block: mask (N, T, width, 3)})."""
    fuses = adafuse_blocks(model)
    was_training = model.training
    model.eval()
    for f in fuses.values():
        f.record = True
    try:
        with torch.no_grad():
            for i, clips in enumerate(progress_bar(batches, "folding: policy statistics", enabled=enabled)):
                logits = model(_check_clips(clips, i))
                yield clips, logits, {name: _mask(f) for name, f in fuses.items()}
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
    return sum(decision_savings(mask, FusePricing.uniform(mask.shape[2], cost.macs_of(f"backbone.{name}.conv1") // t,
                                                          cost.macs_of(f"backbone.{name}.conv2") // t))
               for name, mask in masks.items())


def observe(model: nn.Module, batches: Iterable[torch.Tensor], enabled: bool, savings: bool) -> Observed:
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
    return Observed(stats, logits, saved / clips_total, shapes, costs)


def collect_policy_stats(model: nn.Module, batches: Iterable[torch.Tensor], progress: bool = True) -> PolicyStats:
    """Count every AdaFuse block's decisions of ``model`` (eval, no_grad) on clip batches (N, T, 3, H, W)."""
    return observe(model, batches, progress, savings=False).stats
