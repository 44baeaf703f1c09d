"""How far a candidate's logits are from a reference's: the one place these figures are defined.

Used by calibrate (FP32 vs the INT8 / FP16 graph), validate (FP32 vs an engine) and, through
them, the demo. NumPy only: logits are ``(N, K)`` arrays, labels ``(N,)`` integers.

* top-1 agreement: fraction of clips whose argmax is the same;
* cosine, max / mean absolute error, KL(reference || candidate): per clip, in float64;
* drop in points: top-1 accuracy lost with labels, disagreement without (the budget's rule);
* flip rate: fraction of AdaFuse channel decisions that differ between two one-hots.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.mean(reference.argmax(1) == candidate.argmax(1)))


def top5_overlap(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean fraction of the reference's top-5 classes that are also in the candidate's (top-k for K < 5)."""
    k = min(5, reference.shape[1])
    ta, tb = np.argsort(-reference, axis=1)[:, :k], np.argsort(-candidate, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb)]))


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of clips whose label is among the ``k`` highest logits (k capped at K)."""
    if k == 1:
        return float(np.mean(logits.argmax(1) == labels))
    top = np.argsort(-logits, 1)[:, :min(k, logits.shape[1])]
    return float(np.mean([lab in row for lab, row in zip(labels, top)]))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each clip's logits (N,)."""
    r, c = reference.astype(np.float64), candidate.astype(np.float64)
    return np.sum(r * c, axis=1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1), 1e-30)


def max_abs_error(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Largest absolute logit difference of each clip (N,)."""
    return np.abs(reference.astype(np.float64) - candidate.astype(np.float64)).max(axis=1)


def kl_divergence(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """KL(softmax(reference) || softmax(candidate)) of each clip (N,)."""
    p, q = softmax(reference.astype(np.float64)), softmax(candidate.astype(np.float64))
    return np.sum(p * (np.log(np.maximum(p, 1e-12)) - np.log(np.maximum(q, 1e-12))), axis=1)


def drop_points(top1_agreement: float, top1_reference: float | None = None,
                top1_candidate: float | None = None) -> float:
    """Top-1 points lost: the accuracy drop when both accuracies are known (labels), else the disagreement."""
    if top1_reference is not None and top1_candidate is not None:
        return 100.0 * (top1_reference - top1_candidate)
    return 100.0 * (1.0 - top1_agreement)


def flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of channel decisions that differ between two one-hots over (skip, reuse, keep): a changed
    decision changes two entries."""
    return float(np.sum(a != b) / 2 / (a.size / 3))


@dataclass(frozen=True)
class LogitDiff:
    """Every figure of one comparison, per clip where it is per clip (arrays of shape (N,))."""

    clips: int
    top1_agreement: float
    cosine: np.ndarray  # (N,)
    max_abs_error: np.ndarray  # (N,)
    mean_abs_error: float  # over every logit of every clip
    kl: np.ndarray  # (N,)
    reference_top1: np.ndarray  # (N,) argmax
    candidate_top1: np.ndarray  # (N,) argmax
    top1_reference: float | None = None  # with labels: accuracies
    top1_candidate: float | None = None

    @property
    def drop_points(self) -> float:
        return drop_points(self.top1_agreement, self.top1_reference, self.top1_candidate)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> LogitDiff:
    """The figures of ``candidate`` (N, K) against ``reference`` (N, K); accuracies too with ``labels`` (N,)."""
    r, c = reference.astype(np.float64), candidate.astype(np.float64)
    return LogitDiff(
        clips=len(r), top1_agreement=top1_agreement(r, c), cosine=cosine(r, c), max_abs_error=max_abs_error(r, c),
        mean_abs_error=float(np.abs(r - c).mean()), kl=kl_divergence(r, c), reference_top1=r.argmax(1),
        candidate_top1=c.argmax(1),
        top1_reference=topk_accuracy(r, labels) if labels is not None else None,
        top1_candidate=topk_accuracy(c, labels) if labels is not None else None,
    )
