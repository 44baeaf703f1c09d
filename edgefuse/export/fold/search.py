"""Search and report: fold with the most aggressive ``tau`` that keeps the dynamic model's top-1 decisions."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold.model import fold_model
from edgefuse.export.fold.plan import (
    DEFAULT_TAUS,
    FoldPlan,
    check_channel_multiple,
    check_tau,
    overridden,
    plan_folding,
)
from edgefuse.export.fold.refit import RefitBlock, clip_halves, half_sizes, refit_folded, take
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

    model: VideoClassifier  # folded (and refitted, unless refit was off), eval mode
    plan: FoldPlan
    tau: float
    stats: PolicyStats
    report: FoldReport


@dataclass(frozen=True)
class _Trial:
    """How one candidate tau folds: its plan, the folded model's agreement and cost (not the model), and the blocks
    to refit (empty: the plan's slice is kept, because the refit was off, had nothing to refit or did not judge
    better)."""

    tau: float
    plan: FoldPlan
    agreement: float
    max_abs_diff: float
    macs: float  # dense MACs per clip, averaged over the clips' shapes
    refit_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Judged:
    """Top-1 agreement with the dynamic model, and the max and mean |logit difference|."""

    agreement: float
    max_abs_diff: float
    mean_abs_diff: float

    def better_than(self, other: _Judged) -> bool:
        """More agreement; on a tie, closer logits."""
        return (self.agreement, -self.mean_abs_diff) > (other.agreement, -other.mean_abs_diff)


def _compare(folded: nn.Module, batches: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> _Judged:
    """``folded`` against the cached dynamic logits."""
    agree, total, diff, total_diff, entries = 0, 0, 0.0, 0.0, 0
    with torch.no_grad():
        for clips, ref in zip(batches, reference):
            out = folded(clips)  # (N, K)
            agree += int((out.argmax(dim=-1) == ref.argmax(dim=-1)).sum())
            total += ref.shape[0]
            diff = max(diff, float((out - ref).abs().max()))
            total_diff, entries = total_diff + float((out - ref).abs().sum()), entries + ref.numel()
    return _Judged(agree / max(total, 1), diff, total_diff / max(entries, 1))


def _mean_macs(model: nn.Module, shapes: Mapping[tuple[int, int, int], int],
               known: Mapping[tuple[int, int, int], Cost] | None = None) -> float:
    """Dense MACs per clip averaged over the clips' (T, H, W); ``known`` costs of ``model`` are reused."""
    known = known or {}
    total = sum(n * (known[(t, h, w)].macs_per_clip if (t, h, w) in known else dense_macs(model, (1, t, 3, h, w))[0])
                for (t, h, w), n in shapes.items())
    clips = sum(shapes.values())
    return total // clips if total % clips == 0 else total / clips  # exact integer for one clip shape


def _out_of_fold(model: VideoClassifier, folded: VideoClassifier, blocks: Sequence[str],
                 batches: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> _Judged:
    """The refit judged on clips it was not fitted on: each half of the clips runs through ``folded`` refitted on
    the other half."""
    halves, sizes = clip_halves(batches), half_sizes(batches)
    parts = []
    for k in range(2):
        judge = refit_folded(folded, model, take(batches, halves[1 - k]), blocks=blocks)[0]
        parts.append((_compare(judge, take(batches, halves[k]), take(reference, halves[k])), sizes[k]))
    total = sum(sizes)
    return _Judged(sum(j.agreement * n for j, n in parts) / max(total, 1), max(j.max_abs_diff for j, _ in parts),
                   sum(j.mean_abs_diff * n for j, n in parts) / max(total, 1))


def _build(model: VideoClassifier, plan: FoldPlan, stats: PolicyStats, batches: Sequence[torch.Tensor],
           observed: Observed, with_refit: bool) -> tuple[VideoClassifier, _Trial]:
    """The folded model of ``plan`` (the plan's slice) and its trial. With ``with_refit``, the refit of the blocks
    that override any observed decision (the others compute what the policy did) is judged out of fold
    (:func:`_out_of_fold`: a refit judged on its own clips would flatter it) and chosen when it judges better than
    the slice, which needs no fitting and is judged on all the clips; the caller refits the chosen trial."""
    folded = fold_model(model, plan).eval()
    judged = _compare(folded, batches, observed.logits)
    blocks = tuple(n for n, f in overridden(stats, plan).items() if f > 0) if with_refit else ()
    refit_judged = _out_of_fold(model, folded, blocks, batches, observed.logits) if blocks else None
    if refit_judged is not None and refit_judged.better_than(judged):
        chosen, refit_blocks = refit_judged, blocks
    else:
        chosen, refit_blocks = judged, ()
    trial = _Trial(plan.tau, plan, chosen.agreement, chosen.max_abs_diff, _mean_macs(folded, observed.shapes),
                   refit_blocks)
    log.debug("fold tau %.3g: top-1 agreement %.4f (refitted, out of fold: %s), %.4f GMACs per clip%s", plan.tau,
              judged.agreement, "-" if refit_judged is None else f"{refit_judged.agreement:.4f}", trial.macs / 1e9,
              "; refit kept" if refit_blocks else "")
    return folded, trial


def _search(model: VideoClassifier, stats: PolicyStats, batches: Sequence[torch.Tensor], observed: Observed,
            taus: Sequence[float], min_agreement: float, enabled: bool, channel_multiple: int = 1,
            with_refit: bool = True) -> tuple[list[_Trial], VideoClassifier, tuple[RefitBlock, ...]]:
    """Try taus in order until one agrees >= min_agreement; when none does, refuse (:class:`EdgefuseError` naming
    the best agreement reached and what to do).

    Returns the trials, the folded model of the last one (refitted where its trial chose the refit) and what the
    refit did. Taus giving the same plan are evaluated once; only the latest folded model is held (one copy of the
    network at a time).
    """
    seen: dict[Any, _Trial] = {}
    latest: tuple[Any, VideoClassifier | None] = (None, None)
    tried: list[_Trial] = []
    for tau in progress_bar(taus, "folding: tau search", enabled=enabled):
        plan = plan_folding(stats, tau, channel_multiple)
        key = plan.key()
        if key not in seen:
            built, seen[key] = _build(model, plan, stats, batches, observed, with_refit)
            latest = (key, built)
        tried.append(dataclasses.replace(seen[key], tau=tau))
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
    if folded is None:
        folded = fold_model(model, tried[-1].plan).eval()
    if not tried[-1].refit_blocks:
        return tried, folded, ()
    refitted, blocks = refit_folded(folded, model, batches, blocks=tried[-1].refit_blocks)
    return tried, refitted, blocks


def _candidate_taus(taus: Iterable[float]) -> list[float]:
    out = sorted({check_tau(t) for t in taus})
    return out if out and out[-1] == 1.0 else [*out, 1.0]  # tau 1 is the fallback


def _report(chosen: _Trial, tried: Sequence[_Trial], stats: PolicyStats, observed: Observed,
            dense: float, refit: tuple[RefitBlock, ...]) -> FoldReport:
    blocks = []
    refitted = {r.block: r for r in refit}
    overrides = overridden(stats, chosen.plan)
    for name in stats.counts:
        f, c, r = stats.block_fractions(name), chosen.plan.channels(name), refitted.get(name)
        blocks.append(BlockFold(block=name, skip=f["skip"], reuse=f["reuse"], keep=f["keep"], removed=c["removed"],
                                reused=c["reused"], kept=c["kept"], overridden=overrides[name],
                                error_before=None if r is None else r.before,
                                error_after=None if r is None else r.after, refit_ridge=None if r is None else r.ridge))
    return FoldReport(
        tau=chosen.tau, agreement=chosen.agreement, max_abs_logit_diff=chosen.max_abs_diff, clips=stats.clips,
        macs=FoldMacs(dense=dense, dynamic_expected=dense - observed.saved_macs, folded=chosen.macs), blocks=tuple(blocks),
        refit=any(r.ridge is not None for r in refit),
        taus_tried=tuple(TauTrial(tau=t.tau, agreement=t.agreement, folded_gmacs=t.macs / 1e9,
                                  refit=bool(t.refit_blocks)) for t in tried))


def fold(
    model: VideoClassifier,
    batches: Iterable[torch.Tensor],
    tau: float | None = None,
    min_agreement: float = 0.99,
    taus: Sequence[float] = DEFAULT_TAUS,
    progress: bool = True,
    channel_multiple: int = 1,
    with_refit: bool = True,
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
    :data:`ENGINE_CHANNEL_MULTIPLE`. ``with_refit`` (the default) also judges, for every candidate, the refit of its
    blocks that override observed decisions (:func:`edgefuse.export.fold.refit.refit_folded`) out of fold (each half
    of the clips through the fold refitted on the other half; it needs 2 clips in each half, else it is left off
    with a warning), and keeps the refit where that judges better than the plan's slice (more agreement; on a tie,
    closer logits); the chosen candidate is then refitted on all the clips. Off, or where the slice judges better,
    the folded model is the plan's slice of the dynamic one, exact where the policy's decisions equal the plan.
    """
    if not 0.0 <= min_agreement <= 1.0:
        raise EdgefuseError(f"min_agreement must be in [0, 1], got {min_agreement}; e.g. --min-agreement 0.99")
    candidates = [check_tau(tau)] if tau is not None else _candidate_taus(taus)
    batches = list(batches)
    if with_refit and min(half_sizes(batches)) < 2:
        log.warning("the refit needs at least 2 policy clips in each half of them (it fits on one half and judges on "
                    "the other): folding without it; pass more policy clips to refit")
        with_refit = False
    observed = observe(model, batches, progress, savings=True)
    stats = observed.stats
    channel_multiple = check_channel_multiple(channel_multiple)
    tried, folded, refit = _search(model, stats, batches, observed, candidates, min_agreement if tau is None else 0.0,
                                   progress and tau is None, channel_multiple, with_refit)
    chosen = tried[-1]
    if tau is not None and chosen.agreement < min_agreement:
        log.warning("folding with the given tau %.3g: top-1 agreement %.4f with the dynamic policy is below %.4f",
                    chosen.tau, chosen.agreement, min_agreement)
    report = _report(chosen, tried, stats, observed, _mean_macs(model, observed.shapes, observed.costs), refit)
    log.info("folded with tau %.3g: agreement %.4f, %.4f -> %.4f GMACs per clip", chosen.tau, chosen.agreement,
             report.macs.dense / 1e9, chosen.macs / 1e9)
    return FoldResult(model=folded, plan=chosen.plan, tau=chosen.tau, stats=stats, report=report)

