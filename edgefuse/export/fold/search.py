"""Search and report: fold with the most aggressive ``tau`` that keeps the dynamic model's top-1 decisions."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold.model import fold_model
from edgefuse.export.fold.plan import DEFAULT_TAUS, FoldPlan, check_channel_multiple, check_tau, plan_folding
from edgefuse.export.fold.report import BlockFold, FoldMacs, FoldReport, TauTrial
from edgefuse.export.fold.stats import Observed, PolicyStats, observe
from edgefuse.models.cost import Cost, dense_macs
from edgefuse.models.video import VideoClassifier
from edgefuse.progress import progress as progress_bar

log = logging.getLogger(__name__)

# What ``edgefuse export --policy static`` pads folded blocks to: ONNX Runtime's NCHWc block with AVX2 (8; AVX-512
# machines use 16, of which 8-aligned counts are half) and what TensorRT's FP16 tensor-core kernels like.
ENGINE_CHANNEL_MULTIPLE = 8


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold` made: the folded model, its plan and tau, the statistics, and the report."""

    model: VideoClassifier  # folded, eval mode
    plan: FoldPlan
    tau: float
    stats: PolicyStats
    report: FoldReport


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
              observed: Observed) -> _Trial:
    agreement, diff = _compare(folded, batches, observed.logits)
    trial = _Trial(tau, plan, agreement, diff, _mean_macs(folded, observed.shapes))
    log.debug("fold tau %.3g: top-1 agreement %.4f, %.4f GMACs per clip", tau, agreement, trial.macs / 1e9)
    return trial


def _search(model: VideoClassifier, stats: PolicyStats, batches: Sequence[torch.Tensor], observed: Observed,
            taus: Sequence[float], min_agreement: float, enabled: bool, channel_multiple: int = 1
            ) -> tuple[list[_Trial], VideoClassifier]:
    """Try taus in order until one agrees >= min_agreement; when none does, refuse (:class:`EdgefuseError` naming
    the best agreement reached and what to do).

    Returns the trials and the folded model of the last one. Taus giving the same plan are
    evaluated once; only the latest folded model is held (one copy of the network at a time).
    """
    seen: dict[Any, _Trial] = {}
    latest: tuple[Any, VideoClassifier | None] = (None, None)
    tried: list[_Trial] = []
    for tau in progress_bar(taus, "folding: tau search", enabled=enabled):
        plan = plan_folding(stats, tau, channel_multiple)
        key = plan.key()
        if key not in seen:
            latest = (key, fold_model(model, plan).eval())
            seen[key] = _evaluate(latest[1], tau, plan, batches, observed)
        tried.append(_Trial(tau, plan, seen[key].agreement, seen[key].max_abs_diff, seen[key].macs))
        if tried[-1].agreement >= min_agreement:
            break
    else:
        best = max(tried, key=lambda t: (t.agreement, t.tau))
        clips = sum(int(b.shape[0]) for b in batches)
        raise EdgefuseError(
            f"folding: no tau reaches top-1 agreement {min_agreement:.4f} with the dynamic policy on the {clips} "
            f"policy clips (best {best.agreement:.4f}, at tau {best.tau:.3g}); nothing written. Give --tau "
            f"{best.tau:.3g} to fold anyway, lower --min-agreement, or keep the policy (--policy dynamic)")
    folded = latest[1] if latest[0] == tried[-1].plan.key() else None
    return tried, folded if folded is not None else fold_model(model, tried[-1].plan).eval()


def _candidate_taus(taus: Iterable[float]) -> list[float]:
    out = sorted({check_tau(t) for t in taus})
    return out if out and out[-1] == 1.0 else [*out, 1.0]  # tau 1 is the fallback


def _report(chosen: _Trial, tried: Sequence[_Trial], stats: PolicyStats, observed: Observed,
            dense: float) -> FoldReport:
    blocks = []
    for name in stats.counts:
        f, c = stats.block_fractions(name), chosen.plan.channels(name)
        blocks.append(BlockFold(block=name, skip=f["skip"], reuse=f["reuse"], keep=f["keep"], removed=c["removed"],
                                reused=c["reused"], kept=c["kept"]))
    return FoldReport(
        tau=chosen.tau, agreement=chosen.agreement, max_abs_logit_diff=chosen.max_abs_diff, clips=stats.clips,
        macs=FoldMacs(dense=dense, dynamic_expected=dense - observed.saved_macs, folded=chosen.macs), blocks=tuple(blocks),
        taus_tried=tuple(TauTrial(tau=t.tau, agreement=t.agreement, folded_gmacs=t.macs / 1e9) for t in tried))


def fold(
    model: VideoClassifier,
    batches: Iterable[torch.Tensor],
    tau: float | None = None,
    min_agreement: float = 0.99,
    taus: Sequence[float] = DEFAULT_TAUS,
    progress: bool = True,
    channel_multiple: int = 1,
) -> FoldResult:
    """Collect the policy statistics on ``batches`` (once), plan, fold and report.

    With ``tau`` None, candidate taus are tried from the smallest (most aggressive)
    up and the first whose folded model's top-1 agrees with the dynamic model on
    ``batches`` in at least ``min_agreement`` of the clips is taken (tau 1 is always
    tried last); when none does, :class:`EdgefuseError` says so and nothing is folded.
    An explicit ``tau`` is folded whatever its agreement (a warning below
    ``min_agreement``). MACs in the report are per clip at the clips' (T, H, W).
    ``channel_multiple`` > 1 pads every folded block with zero channels to a multiple of it
    (:class:`FoldPlan`; outputs unchanged, MACs of the padding counted); ``edgefuse export`` uses
    :data:`ENGINE_CHANNEL_MULTIPLE`.
    """
    if not 0.0 <= min_agreement <= 1.0:
        raise EdgefuseError(f"min_agreement must be in [0, 1], got {min_agreement}; e.g. --min-agreement 0.99")
    candidates = [check_tau(tau)] if tau is not None else _candidate_taus(taus)
    batches = list(batches)
    observed = observe(model, batches, progress, savings=True)
    stats = observed.stats
    channel_multiple = check_channel_multiple(channel_multiple)
    tried, folded = _search(model, stats, batches, observed, candidates, min_agreement if tau is None else 0.0,
                            progress and tau is None, channel_multiple)
    chosen = tried[-1]
    if tau is not None and chosen.agreement < min_agreement:
        log.warning("folding with the given tau %.3g: top-1 agreement %.4f with the dynamic policy is below %.4f",
                    chosen.tau, chosen.agreement, min_agreement)
    report = _report(chosen, tried, stats, observed, _mean_macs(model, observed.shapes, observed.costs))
    log.info("folded with tau %.3g: agreement %.4f, %.4f -> %.4f GMACs per clip", chosen.tau, chosen.agreement,
             report.macs.dense / 1e9, chosen.macs / 1e9)
    return FoldResult(model=folded, plan=chosen.plan, tau=chosen.tau, stats=stats, report=report)

