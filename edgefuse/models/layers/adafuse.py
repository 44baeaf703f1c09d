"""AdaFuse channel fusion, as published (Meng et al., ICLR 2021), export-friendly.

In a residual block, a policy net reads the spatially pooled block input of the
current segment and of the previous one (zeros for the first segment),
concatenated (2*C_in) -> Linear -> BatchNorm1d -> ReLU -> Linear(3*width), and
gives for every output channel of conv1 three logits: skip, reuse, keep (in that
order). With h the previous segment's conv1 output (after bn1 and ReLU, before
fusion; zeros for the first segment), the fused output is

    out * keep + h * reuse            (skip gives zeros)

Decisions:
- ``argmax`` (deployment default): deterministic; ties go to the first of
  skip/reuse/keep, as ``torch.argmax`` does. Written with comparisons so the ONNX
  graph has no ArgMax/OneHot/Scatter; in evaluation the decision and the fusion are
  one step (``fuse_argmax``: two masks, no one-hot).
- ``gumbel``: the official code samples hard Gumbel-softmax (tau 0.67) even in
  evaluation; seeded here through ``generator`` to reproduce published numbers.

Training (``module.train()``): whatever ``decision`` says, decisions are hard
Gumbel-softmax samples with the straight-through estimator, as the official training
does (``F.gumbel_softmax(log(softmax(x).clamp(1e-8)), tau, hard=True)``): one-hot in
value, gradients of the soft sample. ``tau`` is an attribute, so a trainer can anneal
it. With ``record`` set, ``last_mask`` keeps the graph in training mode (for an
efficiency loss) and is detached in evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SKIP, REUSE, KEEP = 0, 1, 2
ACTIONS = ("skip", "reuse", "keep")
DECISIONS = ("argmax", "gumbel")


def argmax_onehot(scores: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax over the last axis (size 3), first index on ties."""
    s, r, k = scores.unbind(-1)
    skip = (s >= r) & (s >= k)
    reuse = (r > s) & (r >= k)
    keep = (k > s) & (k > r)
    return torch.stack([skip, reuse, keep], dim=-1).to(scores.dtype)


def hidden_size(width: int, *, quota: int | None, fixed: int | None) -> int:
    """Policy hidden size: ``quota // width`` (official ``--hidden_quota``) or ``fixed``."""
    if quota:
        return quota // width
    if fixed:
        return fixed
    raise ValueError("AdaFuse needs a hidden quota or a fixed hidden size")


class AdaFuse(nn.Module):
    """Fusion for one block. ``fc0``/``fc1`` may be shared with other blocks."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        fc0: nn.Linear,
        fc1: nn.Linear,
        decision: str = "argmax",
        tau: float = 0.67,
    ) -> None:
        super().__init__()
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        if fc0.in_features != 2 * in_channels or fc1.out_features != 3 * width:
            raise ValueError("policy layers do not match the block's channels")
        self.in_channels = in_channels
        self.width = width
        self.fc0 = fc0
        self.bn = nn.BatchNorm1d(fc0.out_features)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = fc1
        self.decision = decision
        self.tau = tau
        self.generator: torch.Generator | None = None
        self.record = False
        self.last_mask: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, width={self.width}, hidden={self.fc0.out_features}, decision={self.decision}"

    def policy_logits(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """x: block input (N*T, C_in, H, W) -> logits (N*T, width, 3)."""
        return self.policy_flat(x, t).reshape(-1, self.width, 3)  # (N*T, width, 3)

    def policy_flat(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """x: block input (N*T, C_in, H, W) -> logits (N*T, 3*width) as fc1 writes them (channel c's at 3c..3c+2)."""
        c = x.shape[1]
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N*T, C_in)
        cur = pooled.reshape(-1, t, c)  # (N, T, C_in)
        prev = torch.cat([torch.zeros_like(cur[:, :1]), cur[:, :-1]], dim=1)  # (N, T, C_in)
        return self.flat_from_pooled(prev.reshape(-1, c), cur.reshape(-1, c))  # (N*T, 3*width)

    def policy_from_pooled(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Pooled block inputs (M, C_in) of the previous and the current segment -> logits (M, width, 3)."""
        return self.flat_from_pooled(prev, cur).reshape(-1, self.width, 3)  # (M, width, 3)

    def flat_from_pooled(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Pooled block inputs (M, C_in) of the previous and the current segment -> logits (M, 3*width)."""
        z = torch.cat([prev, cur], dim=-1)  # (M, 2*C_in)
        z = self.relu(self.bn(self.fc0(z)))  # (M, hidden)
        return self.fc1(z)  # (M, 3*width)

    def lean(self) -> bool:
        """Whether forward decides and fuses in one step (:meth:`fuse_argmax`, what export traces): argmax
        decisions in evaluation, with no mask recorded."""
        return not self.training and self.decision == "argmax" and not self.record

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., 3) -> one-hot float mask (..., 3) over skip/reuse/keep.

        In training mode: straight-through hard Gumbel-softmax (differentiable). The argmax decision reads the
        logits themselves (softmax keeps their order, so the graph runs no Softmax)."""
        if not self.training and self.decision == "argmax":
            return argmax_onehot(logits)
        probs = torch.softmax(logits, dim=-1)
        if self.training:
            soft = self.gumbel_soft(probs)  # (..., 3)
            return argmax_onehot(soft.detach()) - soft.detach() + soft  # one-hot value, soft gradient
        return argmax_onehot(self.gumbel_soft(probs))

    def gumbel_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """softmax((log p + Gumbel noise) / tau) over the last axis, noise from ``generator``."""
        logp = torch.log(probs.clamp(min=1e-8))
        u = torch.rand(logp.shape, generator=self.generator, dtype=logp.dtype, device=logp.device)
        gumbel = -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))  # -log(Exp(1)): Gumbel(0, 1)
        return torch.softmax((logp + gumbel) / self.tau, dim=-1)

    def fuse(self, out: torch.Tensor, prev_out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, :, KEEP].unsqueeze(-1).unsqueeze(-1)  # (N*T, width, 1, 1)
        reuse = mask[:, :, REUSE].unsqueeze(-1).unsqueeze(-1)  # (N*T, width, 1, 1)
        return out * keep + prev_out * reuse

    def fuse_argmax(self, out: torch.Tensor, prev_out: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """The argmax decision and the fusion in one step, as the exported graph runs them: equal to
        ``fuse(out, prev_out, decide(flat.reshape(-1, width, 3)))`` (the sign of a zero aside) in 12 ONNX ops per
        block where the one-hot takes 26. With s, r, k the skip, reuse and keep logits and m = max(s, r):

        - keep wins (ties go to the earlier skip or reuse) iff k > m;
        - reuse wins iff r > s and m >= k (then r = m >= k);

        the two masks are the graph's decision tensors (:func:`edgefuse.quantize.evaluate.decisions_of`).
        ``flat``: logits (M, 3*width) as fc1 writes them; ``out``, ``prev_out``: (M, width, H, W)."""
        s, r, k = flat.reshape(-1, self.width, 3, 1).split(1, dim=2)  # each (M, width, 1, 1)
        m = torch.maximum(s, r)  # (M, width, 1, 1)
        keep = (k > m).to(out.dtype)  # (M, width, 1, 1)
        reuse = ((r > s) & (m >= k)).to(out.dtype)  # (M, width, 1, 1)
        return out * keep + prev_out * reuse  # (M, width, H, W)

    def forward(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """out: conv1 output after bn1+ReLU (N*T, width, H, W); x: block input."""
        nt, w, h, wd = out.shape
        o5 = out.reshape(-1, t, w, h, wd)  # (N, T, width, H, W)
        prev = torch.cat([torch.zeros_like(o5[:, :1]), o5[:, :-1]], dim=1).reshape(nt, w, h, wd)  # (N*T, width, H, W)
        if self.lean():
            return self.fuse_argmax(out, prev, self.policy_flat(x, t))
        mask = self.decide(self.policy_logits(x, t))  # (N*T, width, 3)
        if self.record:
            kept = mask if self.training else mask.detach()  # training: keep the graph for an efficiency loss
            self.last_mask = kept.reshape(-1, t, self.width, 3)  # (N, T, width, 3)
        return self.fuse(out, prev, mask)
