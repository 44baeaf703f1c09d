"""Comparing a low-precision graph with its FP32 reference: top-1 agreement, logit error, accuracy
with labels, and the flip rate of every AdaFuse decision tensor (figures from :mod:`edgefuse.metrics`)."""
from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from edgefuse import metrics
from edgefuse.graph.runner import OrtRunner, Outputs

# AdaFuse's decisions in a block's scope: the float Casts of its boolean keep and reuse masks (the graphs export
# writes: AdaFuse.fuse_argmax), or the Cast of its stacked one-hot (graphs exported before)
DECISION_PATTERN = "*/adafuse/Cast*"


@dataclass(frozen=True)
class Decisions:
    """Where a dynamic-policy graph holds its AdaFuse decisions, per block: the keep and reuse masks (N*T, C, 1, 1)
    (``masks``: (keep, reuse) tensor names), or, in graphs exported before, one one-hot (N*T, C, 3) (``onehots``).
    :meth:`as_onehots` turns what a runner fetched into one-hots over (skip, reuse, keep), flattened per clip as
    :meth:`edgefuse.graph.runner.OrtRunner.run_logits_and` stacks them, keyed by a tensor of the block
    (:func:`block_of` reads the block from it)."""

    masks: tuple[tuple[str, str], ...] = ()
    onehots: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """The tensors to fetch."""
        return [n for pair in self.masks for n in pair] + list(self.onehots)

    def __len__(self) -> int:
        """Blocks with decisions."""
        return len(self.masks) + len(self.onehots)

    def restricted(self, available: Collection[str]) -> Decisions:
        """The blocks whose tensors are all in ``available`` (an engine may not expose every tensor)."""
        return Decisions(tuple(p for p in self.masks if p[0] in available and p[1] in available),
                         tuple(n for n in self.onehots if n in available))

    def as_onehots(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fetched decision tensors (N, ...) -> one-hots (N, T*C*3) over (skip, reuse, keep), keyed by the keep
        mask's (or the one-hot's) name; blocks missing from ``tensors`` are left out."""
        out = {n: tensors[n] for n in self.onehots if n in tensors}
        for keep_name, reuse_name in self.masks:
            if keep_name not in tensors or reuse_name not in tensors:
                continue
            keep, reuse = tensors[keep_name], tensors[reuse_name]  # (N, T*C) each: 0 / 1
            onehot = np.stack([(1 - keep) * (1 - reuse), reuse, keep], axis=-1)  # (N, T*C, 3)
            out[keep_name] = onehot.reshape(len(keep), -1)  # (N, T*C*3)
        return out

    def outputs(self, out: Outputs) -> Outputs:
        """``out`` with its decision tensors as one-hots (:meth:`as_onehots`)."""
        return Outputs(out.logits, self.as_onehots(out.tensors))

    def run(self, graph: onnx.ModelProto, clips: np.ndarray, progress: bool = False, desc: str = "") -> Outputs:
        """``graph``'s logits on ``clips`` (ONNX Runtime) with these decisions as one-hots."""
        return self.outputs(OrtRunner(graph, extra_outputs=self.names).run_logits_and(clips, self.names, progress,
                                                                                        desc))


def decisions_of(model: onnx.ModelProto) -> Decisions:
    """The AdaFuse decision tensors of a dynamic-policy graph. A mask pair is told by what it casts: the keep mask
    is the Cast of a Greater (k > max(s, r)), the reuse mask the Cast of an And ((r > s) & (m >= k))."""
    made_by = {o: n for n in model.graph.node for o in n.output}
    casts = [n for n in model.graph.node if n.op_type == "Cast" and fnmatch.fnmatchcase(n.name, DECISION_PATTERN)]
    keep: dict[str, str] = {}
    reuse: dict[str, str] = {}
    onehots = []
    for n in casts:
        src = made_by.get(n.input[0])
        kind = src.op_type if src is not None else ""
        scope = n.name.rsplit("/", 1)[0]
        if kind == "Greater":
            keep[scope] = n.output[0]
        elif kind == "And":
            reuse[scope] = n.output[0]
        elif kind == "Concat":  # the stacked one-hot
            onehots.append(n.output[0])
    masks = tuple((keep[s], reuse[s]) for s in keep if s in reuse)
    return Decisions(masks, tuple(onehots))


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
