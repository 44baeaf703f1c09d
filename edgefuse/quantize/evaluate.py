"""Comparing a low-precision graph with its FP32 reference: top-1 agreement, logit error, accuracy
with labels, and the flip rate of every AdaFuse decision tensor."""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from edgefuse.graph.runner import Outputs

# AdaFuse's decision one-hots are the float Cast of its boolean argmax in each block's scope
DECISION_PATTERN = "*/adafuse/Cast"


def decision_tensors(model: onnx.ModelProto) -> list[str]:
    """The AdaFuse decision tensors (one-hot skip / reuse / keep per channel) of a dynamic-policy graph."""
    return [n.output[0] for n in model.graph.node if n.op_type == "Cast" and fnmatch.fnmatchcase(n.name, DECISION_PATTERN)]


def flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of channel decisions that differ between two one-hots over (skip, reuse, keep): a changed
    decision changes two entries."""
    return float(np.sum(a != b) / 2 / (a.size / 3))


def block_of(tensor: str) -> str:
    """'/backbone/layer1.0/adafuse/Cast_output_0' -> 'layer1.0' (the block a decision tensor belongs to)."""
    parts = tensor.strip("/").split("/")
    if "adafuse" in parts:
        parts = parts[:parts.index("adafuse")]
    if parts and parts[0] == "backbone":
        parts = parts[1:]
    return "/".join(parts) or tensor


@dataclass
class Comparison:
    clips: int
    top1_agreement: float
    top5_overlap: float
    max_abs_logit_error: float
    mean_abs_logit_error: float
    cosine: float
    top1_reference: float | None = None
    top1_candidate: float | None = None
    flip_rate: dict[str, float] = field(default_factory=dict)  # decision tensor -> fraction of channel decisions changed

    @property
    def mean_flip_rate(self) -> float | None:
        return float(np.mean(list(self.flip_rate.values()))) if self.flip_rate else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_flip_rate": self.mean_flip_rate}


def _top5(a: np.ndarray, b: np.ndarray) -> float:
    k = min(5, a.shape[1])
    ta, tb = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb)]))


def compare(reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> Comparison:
    ref, cand = reference.logits.astype(np.float64), candidate.logits.astype(np.float64)
    err = np.abs(ref - cand)
    cos = np.sum(ref * cand, axis=1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-30)
    result = Comparison(
        clips=len(ref), top1_agreement=float(np.mean(ref.argmax(1) == cand.argmax(1))), top5_overlap=_top5(ref, cand),
        max_abs_logit_error=float(err.max()), mean_abs_logit_error=float(err.mean()), cosine=float(cos.mean()),
    )
    if labels is not None:
        result.top1_reference = float(np.mean(ref.argmax(1) == labels))
        result.top1_candidate = float(np.mean(cand.argmax(1) == labels))
    for name, value in reference.tensors.items():
        other = candidate.tensors.get(name)
        if other is not None and other.shape == value.shape:
            result.flip_rate[block_of(name)] = flip_rate(value, other)
    return result
