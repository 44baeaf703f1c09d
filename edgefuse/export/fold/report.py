"""What folding reports: the chosen tau, its agreement with the dynamic policy, MACs, per-block channel counts and
the taus tried; plain data with a JSON round trip (``to_dict`` / ``from_dict``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FoldMacs:
    """Dense MACs per clip at the clips' (T, H, W): the dynamic model's, what its decisions would cost, the folded."""

    dense: float
    dynamic_expected: float
    folded: float


@dataclass(frozen=True)
class BlockFold:
    """One block: the fraction of (clip, segment, channel) cases skipped / reused / kept, and the channels the plan
    removes / reuses / keeps."""

    block: str
    skip: float
    reuse: float
    keep: float
    removed: int
    reused: int
    kept: int


@dataclass(frozen=True)
class TauTrial:
    tau: float
    agreement: float
    folded_gmacs: float


@dataclass(frozen=True)
class FoldReport:
    tau: float
    agreement: float  # top-1 agreement of the folded model with the dynamic one on the folding clips
    max_abs_logit_diff: float
    clips: int
    macs: FoldMacs
    blocks: tuple[BlockFold, ...]
    taus_tried: tuple[TauTrial, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldReport:
        return cls(tau=float(d["tau"]), agreement=float(d["agreement"]),
                   max_abs_logit_diff=float(d["max_abs_logit_diff"]), clips=int(d["clips"]),
                   macs=FoldMacs(**d["macs"]), blocks=tuple(BlockFold(**b) for b in d["blocks"]),
                   taus_tried=tuple(TauTrial(**t) for t in d["taus_tried"]))
