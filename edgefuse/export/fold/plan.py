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


def plan_folding(stats: PolicyStats, tau: float) -> FoldPlan:
    """Apply the rule (module docstring) to every block of ``stats``."""
    tau = check_tau(tau)
    if stats.clips <= 0:
        raise EdgefuseError("policy statistics hold no clips; collect them on at least one batch of clips")
    return FoldPlan(tau=tau, actions={name: channel_actions(stats.fractions(name), tau, name) for name in stats.counts})
