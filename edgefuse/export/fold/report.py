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
    """One block: the fraction of (clip, segment, channel) cases skipped / reused / kept, the channels the plan
    removes / reuses / keeps, the fraction of the observed decisions the plan overrides
    (:func:`edgefuse.export.fold.plan.overridden`) and, for a refitted block, conv2's relative error against the
    dynamic model's output on the folding clips before and after the refit and the ridge cross-validation chose for it
    (None where the block was not refitted; ``refit_ridge`` None with errors: no ridge helped on held-out clips)."""

    block: str
    skip: float
    reuse: float
    keep: float
    removed: int
    reused: int
    kept: int
    overridden: float | None = None
    error_before: float | None = None
    error_after: float | None = None
    refit_ridge: float | None = None


@dataclass(frozen=True)
class TauTrial:
    tau: float
    agreement: float  # of the refitted fold judged out of fold where the refit was chosen (``refit``)
    folded_gmacs: float
    refit: bool = False


@dataclass(frozen=True)
class FoldReport:
    tau: float
    agreement: float  # top-1 agreement of the folded model with the dynamic one on the folding clips (refit: out of fold)
    max_abs_logit_diff: float
    clips: int
    macs: FoldMacs
    blocks: tuple[BlockFold, ...]
    taus_tried: tuple[TauTrial, ...]
    refit: bool = False  # some block's conv2 refitted to the dynamic model (edgefuse.export.fold.refit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldReport:
        return cls(tau=float(d["tau"]), agreement=float(d["agreement"]),
                   max_abs_logit_diff=float(d["max_abs_logit_diff"]), clips=int(d["clips"]),
                   macs=FoldMacs(**d["macs"]), blocks=tuple(BlockFold(**b) for b in d["blocks"]),
                   taus_tried=tuple(TauTrial(**t) for t in d["taus_tried"]), refit=bool(d.get("refit", False)))
