"""Fold AdaFuse's learned policy into a static, smaller, dense model (the ``static`` policy of ``edgefuse export``).

AdaFuse decides per residual block, per output channel of conv1 and per frame:
skip (0), reuse (1: the previous segment's conv1 output) or keep (2). A dense
engine (TensorRT, ONNX Runtime) computes every channel whatever the policy says,
so the dynamic policy saves nothing there. Folding turns the policy observed on
clips into a fixed structure that dense engines run faster:

1. :func:`collect_policy_stats` (:mod:`.stats`) runs the dynamic model and counts, per block,
   segment position and channel, how often each action was chosen.
2. :func:`plan_folding` (:mod:`.plan`) turns the counts into one fixed action per channel.
3. :func:`fold_model` (:mod:`.model`) builds the folded copy: removed channels are dropped from
   conv1 (outputs), bn1 and conv2 (inputs); the remaining channels are ordered
   ``[kept..., reused...]`` and the ``adafuse`` slot holds a parameter-free
   :class:`FoldedFuse` that shifts the reused channels by one segment. The policy
   nets are gone.
   With ``channel_multiple`` > 1 (``edgefuse export`` uses 8), zero channels pad kept + reused up to a
   multiple of it (``[kept..., zeros..., reused...]``) so that ONNX Runtime's blocked convolutions take
   conv2 (an odd count fell back to a 2x slower kernel; docs/fold.md). Outputs are unchanged.
4. :func:`refit_folded` (:mod:`.refit`) re-fits each changed block's conv2 by least squares to the dynamic model's conv2
   output on the folding clips (same structure and MACs; it recovers most of what fixing the actions per channel
   loses; docs/fold.md).
5. :func:`fold` (:mod:`.search`) does all of it and, without an explicit ``tau``, picks the most
   aggressive ``tau`` whose folded (and refitted) model agrees with the dynamic one.

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

Exactness (of the plan's slice: before the refit, or ``fold(..., with_refit=False)``). Whenever the dynamic
policy's decisions equal the plan, the folded model computes exactly what the dynamic one does (up to float
summation order): a skipped channel is zero, so dropping it from conv2's input changes nothing; keep
is ``out * 1 + prev * 0``; reuse is ``out * 0 + prev * 1`` with zeros at the first
segment, which is what :class:`FoldedFuse` computes. A channel skipped at the
first segment and reused after it is therefore folded exactly as "reused".

MACs (dense, :func:`edgefuse.models.cost.model_cost` conventions): the folded
model costs the dense model minus the policy nets' linear layers (fc0 and fc1 of
every block, per frame) minus, per block, ``(removed - padding) / width`` of conv1's and
conv2's MACs (the zero channels are computed, so they count). Whole channels are removed,
so :func:`predicted_folded_macs` is exact.
"""
from __future__ import annotations

from edgefuse.export.fold.model import FoldedFuse, fold_model, policy_macs, predicted_folded_macs
from edgefuse.export.fold.plan import DEFAULT_TAUS, FoldPlan, channel_actions, padded_channels, plan_folding
from edgefuse.export.fold.refit import RefitBlock, refit_folded
from edgefuse.export.fold.report import BlockFold, FoldMacs, FoldReport, TauTrial
from edgefuse.export.fold.search import ENGINE_CHANNEL_MULTIPLE, FoldResult, fold
from edgefuse.export.fold.stats import PolicyStats, collect_policy_stats

__all__ = [
    "DEFAULT_TAUS", "ENGINE_CHANNEL_MULTIPLE", "BlockFold", "FoldMacs", "FoldPlan", "FoldReport", "FoldResult", "FoldedFuse", "PolicyStats",
    "RefitBlock", "TauTrial", "channel_actions", "collect_policy_stats", "fold", "fold_model", "padded_channels", "plan_folding",
    "policy_macs", "predicted_folded_macs", "refit_folded",
]
