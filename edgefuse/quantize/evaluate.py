"""Comparing a low-precision graph with its FP32 reference: top-1 agreement, logit error, accuracy
with labels, and the flip rate of every AdaFuse decision tensor (figures from :mod:`edgefuse.metrics`)."""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from edgefuse import metrics
from edgefuse.graph.runner import Outputs

# AdaFuse's decision one-hots are the float Cast of its boolean argmax in each block's scope
DECISION_PATTERN = "*/adafuse/Cast"


def decision_tensors(model: onnx.ModelProto) -> list[str]:
    """The AdaFuse decision tensors (one-hot skip / reuse / keep per channel) of a dynamic-policy graph."""
    return [n.output[0] for n in model.graph.node
            if n.op_type == "Cast" and fnmatch.fnmatchcase(n.name, DECISION_PATTERN)]


def block_of(tensor: str) -> str:
    """'/backbone/layer1.0/adafuse/Cast_output_0' -> 'layer1.0' (the block a decision tensor belongs to)."""
    parts = tensor.strip("/").split("/")
    if "adafuse" in parts:
        parts = parts[:parts.index("adafuse")]
    if parts and parts[0] == "backbone":
        parts = parts[1:]
    return "/".join(parts) or tensor


@dataclass(frozen=True)
class Comparison:
    """A candidate graph against FP32 on the held-out clips (the ``result`` of calibrate's report)."""

    clips: int
    top1_agreement: float
    top5_overlap: float
    max_abs_logit_error: float
    mean_abs_logit_error: float
    cosine: float
    top1_reference: float | None = None
    top1_candidate: float | None = None
    flip_rate: dict[str, float] = field(default_factory=dict)  # decision block -> fraction of channel decisions changed

    @property
    def mean_flip_rate(self) -> float | None:
        return float(np.mean(list(self.flip_rate.values()))) if self.flip_rate else None

    @property
    def drop_points(self) -> float:
        """Top-1 points lost: accuracy drop with labels, disagreement without."""
        return metrics.drop_points(self.top1_agreement, self.top1_reference, self.top1_candidate)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_flip_rate": self.mean_flip_rate}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def compare(reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> Comparison:
    ref, cand = reference.logits.astype(np.float64), candidate.logits.astype(np.float64)
    diff = metrics.compare_logits(ref, cand, labels)
    flips = {}
    for name, value in reference.tensors.items():
        other = candidate.tensors.get(name)
        if other is not None and other.shape == value.shape:
            flips[block_of(name)] = metrics.flip_rate(value, other)
    return Comparison(
        clips=diff.clips, top1_agreement=diff.top1_agreement, top5_overlap=metrics.top5_overlap(ref, cand),
        max_abs_logit_error=float(diff.max_abs_error.max()), mean_abs_logit_error=diff.mean_abs_error,
        cosine=float(diff.cosine.mean()), top1_reference=diff.top1_reference, top1_candidate=diff.top1_candidate,
        flip_rate=flips,
    )
