"""Running a graph in ONNX Runtime over clips (with chosen intermediate tensors exposed) and
comparing a low-precision graph with its FP32 reference: top-1 agreement, logit error, accuracy
with labels, and the flip rate of every AdaFuse decision tensor."""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from edgefuse.progress import Progress

# AdaFuse's decision one-hots are the float Cast of its boolean argmax in each block's scope
DECISION_PATTERN = "*/adafuse/Cast"


def decision_tensors(model: onnx.ModelProto) -> list[str]:
    """The AdaFuse decision tensors (one-hot skip / reuse / keep per channel) of a dynamic-policy graph."""
    return [n.output[0] for n in model.graph.node if n.op_type == "Cast" and fnmatch.fnmatchcase(n.name, DECISION_PATTERN)]


@dataclass
class Outputs:
    logits: np.ndarray  # (N, classes)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, ...) stacked per clip


class GraphRunner:
    """An ONNX Runtime CPU session over ``model`` with ``extra_outputs`` exposed. A static batch
    dimension is honoured by running clips in chunks of that size (the last one padded)."""

    def __init__(self, model: onnx.ModelProto, extra_outputs: Sequence[str] = (), threads: int = 0) -> None:
        from edgefuse.export.parity import ort_session

        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        present = {o.name for o in probe.graph.output}
        for name in extra_outputs:
            if name not in present:
                probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                present.add(name)
        self.output = model.graph.output[0].name
        consts = {i.name for i in model.graph.initializer}
        vi = next(i for i in model.graph.input if i.name not in consts)
        self.input = vi.name
        dim0 = vi.type.tensor_type.shape.dim[0] if vi.type.tensor_type.shape.dim else None
        self.batch = int(dim0.dim_value) if dim0 is not None and dim0.dim_value > 0 else None
        self.session = ort_session(probe, threads=threads)
        self.names = [o.name for o in self.session.get_outputs()]

    def _chunks(self, clips: np.ndarray) -> list[tuple[np.ndarray, int]]:
        step = self.batch or 1
        out = []
        for i in range(0, len(clips), step):
            chunk = clips[i:i + step]
            n = len(chunk)
            if self.batch and n < self.batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])  # (batch, T, 3, H, W)
            out.append((np.ascontiguousarray(chunk, dtype=np.float32), n))
        return out

    def run_all(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for one chunk of clips (statistics collection)."""
        (chunk, _), = self._chunks(clips)[:1]
        return dict(zip(self.names, self.session.run(None, {self.input: chunk})))

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs:
        logits, kept = [], {name: [] for name in tensors}  # type: dict[str, list[np.ndarray]]
        bar = Progress(len(clips), desc or "running", enabled=progress)
        for chunk, n in self._chunks(clips):
            outs = dict(zip(self.names, self.session.run(None, {self.input: chunk})))
            logits.append(outs[self.output][:n])
            for name in tensors:
                value = outs[name]
                per_clip = value.reshape(len(chunk), -1) if value.shape[0] % len(chunk) == 0 else value[None]
                kept[name].append(per_clip[:n])
            bar.update(n)
        bar.close()
        return Outputs(np.concatenate(logits), {k: np.concatenate(v) for k, v in kept.items()})

    def logits(self, clips: np.ndarray) -> np.ndarray:
        return self.run_logits_and(clips).logits


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
            # a one-hot over (skip, reuse, keep): a changed decision changes two entries
            result.flip_rate[name] = float(np.sum(value != other) / 2 / (value.size / 3))
    return result
