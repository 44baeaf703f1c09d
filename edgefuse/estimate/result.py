"""What an estimate is: per-node costs (:class:`LayerCost`), per-kernel times (:class:`LayerEstimate`) and the
whole run (:class:`Estimate`), plain data for the CLI and the benchmarks to render."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

LABEL = "estimate (roofline)"

@dataclass(frozen=True)
class LayerCost:
    """One node: its MACs, the tensors it reads and writes (name -> bytes) and the precision it runs in.

    ``fused`` says why the node costs no kernel of its own: ``"constant"`` (all inputs constant: folded when the
    engine is built), ``"view"`` (a reshape: metadata only), ``"qdq"`` (a Q/DQ node absorbed by the INT8 kernels)
    or ``"epilogue"`` (absorbed by ``fused_into``, the Conv/Gemm/MatMul before it); ``None``: a kernel of its own.
    """

    name: str
    op: str
    precision: str  # int8 | fp16 | fp32
    macs: int
    inputs: dict[str, int]  # activations read: tensor -> bytes
    weights: dict[str, int]  # constant inputs read (weights, biases, scales)
    outputs: dict[str, int]  # tensors written
    fused: str | None = None
    fused_into: str | None = None
    activation_dtype: str | None = None  # int8 layers: the 8-bit type of the activation (int8 or uint8)

    @property
    def input_bytes(self) -> int:
        return sum(self.inputs.values())

    @property
    def weight_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def output_bytes(self) -> int:
        return sum(self.outputs.values())

    @property
    def bytes(self) -> int:
        return self.input_bytes + self.weight_bytes + self.output_bytes


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op: str
    precision: str
    macs: int  # of the kernel: its own plus its epilogue's (0)
    bytes: int  # moved by the kernel, epilogue included (tensors internal to the fused kernel not counted)
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    time_ms: float
    bound: str  # compute | memory | fused
    fused: str | None = None  # why it costs nothing (see LayerCost.fused)
    fused_into: str | None = None
    epilogue: tuple[str, ...] = ()  # nodes fused into this one


@dataclass(frozen=True)
class Estimate:
    device: str
    profile: str  # the profile file
    total_ms: float
    layers: tuple[LayerEstimate, ...]
    peaks: dict[str, Any]  # what was used: GFLOP/s or GOP/s per precision, GB/s, and where they came from
    overhead_us: float
    assumptions: tuple[str, ...]
    fuse: bool = True
    label: str = LABEL
    device_class: str | None = None  # whose fitted constants were used (None: CPU)
    target: str = "gpu"  # gpu | dla
    uncertainty_pct: float | None = None  # largest error on the class's held-out published points; None: unknown
    uncertainty: str = ""  # where the uncertainty comes from, in words
    harness_ms: float = 0.0  # a Python caller's fitted cost per call, not included in total_ms

    @property
    def kernels(self) -> tuple[LayerEstimate, ...]:
        """The layers that run as kernels (not fused away)."""
        return tuple(lay for lay in self.layers if lay.fused is None)

    @property
    def macs(self) -> int:
        return sum(lay.macs for lay in self.kernels)

    @property
    def bytes(self) -> int:
        return sum(lay.bytes for lay in self.kernels)

    def split(self) -> dict[str, float]:
        """Milliseconds spent in compute-bound layers, in memory-bound layers and in fixed overhead."""
        out = {"compute_bound_ms": 0.0, "memory_bound_ms": 0.0, "overhead_ms": 0.0}
        for lay in self.kernels:
            out[f"{lay.bound}_bound_ms"] += lay.time_ms - lay.overhead_ms
            out["overhead_ms"] += lay.overhead_ms
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(label=self.label, macs=self.macs, bytes=self.bytes, kernels=len(self.kernels), range_ms=self.range_ms,
                 **self.split())
        return d

    def slowest(self, top: int | None = None) -> tuple[LayerEstimate, ...]:
        """The kernels, slowest first (``top`` of them)."""
        return tuple(sorted(self.kernels, key=lambda lay: -lay.time_ms)[:top])

    @property
    def range_ms(self) -> tuple[float, float] | None:
        """(low, high) from the held-out error, or None where it is unknown."""
        if self.uncertainty_pct is None:
            return None
        u = self.uncertainty_pct / 100.0
        return self.total_ms / (1 + u), self.total_ms / max(1 - u, 0.05)

    def summary(self) -> str:
        s = self.split()
        where = f"{self.device}{' DLA' if self.target == 'dla' else ''}"
        unc = f" {self.uncertainty}" if self.uncertainty else ""
        return (f"{self.label} on {where}: {self.total_ms:.3f} ms{unc} ({len(self.kernels)} kernels, "
                f"{self.macs / 1e9:.3f} GMACs, {self.bytes / 1e6:.1f} MB moved; compute-bound {s['compute_bound_ms']:.3f}"
                f" ms, memory-bound {s['memory_bound_ms']:.3f} ms, overhead {s['overhead_ms']:.3f} ms)")



@dataclass(frozen=True)
class Comparison:
    """An estimate against a measured latency: ``ratio`` = estimate / measured (1 is exact, below 1 the estimate is
    optimistic) and ``error_pct`` = (estimate - measured) / measured x 100."""

    label: str
    device: str
    estimate_ms: float
    measured_ms: float
    ratio: float
    error_pct: float
    verdict: str  # optimistic | pessimistic

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})
