"""The folding rule: policy statistics and a threshold ``tau`` -> one fixed action per channel (:class:`FoldPlan`)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold.stats import PolicyStats
from edgefuse.models.layers.adafuse import KEEP, REUSE, SKIP

log = logging.getLogger(__name__)

# Plan actions use AdaFuse's numbering: a skipped channel becomes a removed one.
REMOVED, REUSED, KEPT = SKIP, REUSE, KEEP
PLAN_ACTIONS = ("removed", "reused", "kept")
DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.1, ..., 1.0
_EDGE = 1e-12  # f_skip == tau must remove even when tau (e.g. 0.15) is not a binary fraction


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Fixed per-channel actions: ``actions[block]`` int (width,), 0 removed, 1 reused, 2 kept.

    ``channel_multiple``: the folded model pads every block's computed channels (kept + reused) with zero
    channels up to a multiple of it when there are more than ``channel_multiple`` of them (1: no padding;
    :func:`padded_channels`). The padding changes no output: it lets ONNX Runtime's blocked (NCHWc)
    convolution kernels take conv2 instead of a 2x slower fallback (docs/fold.md).
    """

    tau: float
    actions: Mapping[str, np.ndarray]
    channel_multiple: int = 1

    def channels(self, block: str) -> dict[str, int]:
        """Channel counts of one block: removed / reused / kept."""
        a = self.actions[block]
        return {name: int((a == i).sum()) for i, name in enumerate(PLAN_ACTIONS)}

    def padding(self, block: str) -> int:
        """Zero channels the folded block appends to its kept + reused ones (:func:`padded_channels`)."""
        computed = int((np.asarray(self.actions[block]) != REMOVED).sum())
        return padded_channels(computed, self.channel_multiple) - computed

    def key(self) -> tuple[Any, ...]:
        """Identifies the structure (two taus giving the same actions fold to the same model)."""
        return (self.channel_multiple,
                *((name, np.asarray(a, dtype=np.int8).tobytes()) for name, a in sorted(self.actions.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "actions": list(PLAN_ACTIONS), "channel_multiple": self.channel_multiple,
                "blocks": {name: [int(v) for v in a] for name, a in self.actions.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldPlan:
        try:
            tau = float(d["tau"])
            actions = {str(k): np.asarray(v, dtype=np.int64) for k, v in d["blocks"].items()}
            multiple = check_channel_multiple(int(d.get("channel_multiple", 1)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EdgefuseError(f"fold plan is malformed ({type(e).__name__}: {e}); "
                                "re-create it with edgefuse.export.fold.plan_folding") from None
        return cls(tau=tau, actions=actions, channel_multiple=multiple)


def padded_channels(computed: int, multiple: int) -> int:
    """``computed`` rounded up to a multiple of ``multiple``, unless it is at most ``multiple`` (then unchanged).

    ONNX Runtime's CPU convolutions run in a blocked layout (NCHWc, 8 channels a block with AVX2, 16 with
    AVX-512) when a convolution's input channels are a multiple of the block, or fewer than one block (read
    straight from NCHW); any other count falls back to im2col + GEMM in NCHW, which took 2.1x as long for
    conv2 of the zoo model's layer2.1 (31 input channels; docs/fold.md). Output channels are padded by ONNX
    Runtime itself, so zero channels cost conv1 nothing there.
    """
    if multiple <= 1 or computed <= multiple or computed % multiple == 0:
        return computed
    return -(-computed // multiple) * multiple


def check_channel_multiple(multiple: int) -> int:
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise EdgefuseError(f"fold channel multiple must be a positive integer, got {multiple!r}; use 8 (AVX2 "
                            "NCHWc block of ONNX Runtime; 16 for AVX-512) or 1 for no padding")
    return multiple


def check_tau(tau: float) -> float:
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


def plan_folding(stats: PolicyStats, tau: float, channel_multiple: int = 1) -> FoldPlan:
    """Apply the rule (module docstring) to every block of ``stats``; ``channel_multiple``: see :class:`FoldPlan`."""
    tau = check_tau(tau)
    channel_multiple = check_channel_multiple(channel_multiple)
    if stats.clips <= 0:
        raise EdgefuseError("policy statistics hold no clips; collect them on at least one batch of clips")
    return FoldPlan(tau=tau, actions={name: channel_actions(stats.fractions(name), tau, name) for name in stats.counts},
                    channel_multiple=channel_multiple)


def overridden(stats: PolicyStats, plan: FoldPlan) -> dict[str, float]:
    """Per block, the fraction of the observed (clip, segment, channel) decisions that the plan computes otherwise.

    A kept channel matches keep; a reused one matches reuse, and skip at the first segment (both give zeros
    there); a removed one matches skip, and reuse at the first segment. 0 for a block means its folded slice
    computes what the policy did on every observed clip (given the same block input)."""
    out = {}
    for name, counts in stats.counts.items():
        c = np.asarray(counts)  # (T, width, 3): clips per segment, channel, action
        a = np.asarray(plan.actions[name])  # (width,)
        match = c[:, np.arange(len(a)), a].sum()  # each channel's planned action, every segment
        first = c[0]  # (width, 3)
        match += first[a == REUSED, SKIP].sum() + first[a == REMOVED, REUSE].sum()  # zeros either way at t = 0
        total = c.sum()
        out[name] = float(1.0 - match / total) if total else 0.0
    return out
