"""What ``edgefuse validate`` returns and writes (``--report``): typed, with a JSON round trip (``to_dict``
gives the file's content, ``from_dict`` reads it back). Optional parts absent from a run are absent
from the JSON, as they always were."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from edgefuse import metrics


def _present(obj: Any) -> dict[str, Any]:
    """A flat dataclass's fields in order, those that are None left out (absent from the JSON)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


@dataclass(frozen=True)
class ClassShift:
    """One class's top-1 accuracy in the reference and the engine (with labels)."""

    name: str
    clips: int
    reference: float
    engine: float

    @property
    def delta(self) -> float:
        return self.engine - self.reference

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "clips": self.clips, "reference": self.reference, "engine": self.engine,
                "delta": self.delta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassShift:
        return cls(d["class"], d["clips"], d["reference"], d["engine"])


@dataclass(frozen=True)
class PerClip:
    """Every clip's figures, so each summary can be recomputed."""

    max_abs_error: list[float]
    kl: list[float]
    cosine: list[float]
    reference_top1: list[int]
    engine_top1: list[int]
    label: list[int] | None = None
    id: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerClip:
        return cls(**d)


@dataclass(frozen=True)
class EngineComparison:
    """The engine against the reference on the same clips (the report's ``result``)."""

    clips: int
    top1_agreement: float
    cosine_mean: float
    cosine_min: float
    max_abs_error: float
    mean_abs_error: float
    kl_mean: float
    kl_max: float
    per_clip: PerClip
    top1_reference: float | None = None  # with labels
    top1_engine: float | None = None
    top5_reference: float | None = None
    top5_engine: float | None = None
    per_class: list[ClassShift] | None = None  # with labels: the classes whose accuracy fell most first

    @property
    def drop_points(self) -> float:
        return metrics.drop_points(self.top1_agreement, self.top1_reference, self.top1_engine)

    def to_dict(self, per_clip: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"clips": self.clips, "top1_agreement": self.top1_agreement,
                             "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
                             "max_abs_error": self.max_abs_error, "mean_abs_error": self.mean_abs_error,
                             "kl_mean": self.kl_mean, "kl_max": self.kl_max}
        if per_clip:
            d["per_clip"] = self.per_clip.to_dict()
        if self.top1_reference is not None:
            d.update(top1_reference=self.top1_reference, top1_engine=self.top1_engine,
                     top5_reference=self.top5_reference, top5_engine=self.top5_engine)
        if self.per_class is not None:
            d["per_class"] = [c.to_dict() for c in self.per_class]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineComparison:
        scalars = {k: v for k, v in d.items() if k not in ("per_clip", "per_class")}
        classes = [ClassShift.from_dict(c) for c in d["per_class"]] if "per_class" in d else None
        return cls(**scalars, per_clip=PerClip.from_dict(d["per_clip"]), per_class=classes)


@dataclass(frozen=True)
class PolicyBlock:
    """One AdaFuse block: how often the engine's decisions differ from the reference's, and the
    engine's skip / reuse / keep fractions (absent when the block made no decision)."""

    block: str
    flip_rate: float
    engine_skip: float | None = None
    engine_reuse: float | None = None
    engine_keep: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyBlock:
        return cls(**d)


@dataclass(frozen=True)
class TensorError:
    tensor: str
    relative_error: float  # max|a - b| / max|a|


@dataclass(frozen=True)
class Departure:
    """``--per-layer``: the first tensor (in the reference's order) whose relative error exceeds the
    tolerance, the node making it and the layers that may be at fault; or, when none does, the worst."""

    tensors_checked: int
    tolerance: float
    tensor: str | None = None  # None: no tensor departed
    node: str | None = None
    op: str | None = None
    layer: str | None = None  # the most likely layer at fault: suspects[0]
    suspects: list[str] = field(default_factory=list)
    relative_error: float | None = None
    before: list[TensorError] = field(default_factory=list)  # the last tensors that still matched
    worst: TensorError | None = None  # when none departed

    def to_dict(self) -> dict[str, Any]:
        if self.tensor is None:
            return {"tensor": None, "tensors_checked": self.tensors_checked, "tolerance": self.tolerance,
                    "worst": [self.worst.tensor, self.worst.relative_error] if self.worst else None}
        return {"tensor": self.tensor, "node": self.node, "op": self.op, "layer": self.layer,
                "suspects": self.suspects, "relative_error": self.relative_error,
                "tensors_checked": self.tensors_checked, "tolerance": self.tolerance,
                "before": [{"tensor": b.tensor, "relative_error": b.relative_error} for b in self.before]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Departure:
        if d.get("tensor") is None:
            worst = TensorError(*d["worst"]) if d.get("worst") else None
            return cls(d["tensors_checked"], d["tolerance"], worst=worst)
        return cls(d["tensors_checked"], d["tolerance"], d["tensor"], d["node"], d["op"], d["layer"],
                   list(d["suspects"]), d["relative_error"], [TensorError(**b) for b in d["before"]])


@dataclass(frozen=True)
class EngineInfo:
    """What the engine's sidecar says it is (None for a plain .onnx)."""

    backend: Any = None
    backend_version: Any = None
    device: Any = None
    precision: Any = None


@dataclass(frozen=True)
class RealizedMacs:
    """AdaFuse: MACs per clip given each clip's decisions, in the engine and the reference, and dense."""

    engine: list[float]  # G per clip
    reference: list[float]
    dense: float


@dataclass(frozen=True)
class ValidateReport:
    engine: str
    reference: str
    clips: str
    engine_info: EngineInfo
    max_drop: float
    result: EngineComparison
    policy: list[PolicyBlock] | None = None  # AdaFuse graphs on ONNX Runtime
    realized: RealizedMacs | None = None  # AdaFuse with its MACs in the metadata
    per_layer: Departure | None = None

    @property
    def drop_points(self) -> float:
        return self.result.drop_points

    @property
    def verdict(self) -> str:
        return "pass" if self.drop_points <= self.max_drop else "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self, per_clip: bool = True) -> dict[str, Any]:
        """The report's JSON form; without the per-clip figures when ``per_clip`` is False."""
        d: dict[str, Any] = {"engine": self.engine, "reference": self.reference, "clips": self.clips,
                             "engine_info": vars(self.engine_info).copy(), "max_drop": self.max_drop,
                             "result": self.result.to_dict(per_clip)}
        if self.policy is not None:
            d["policy"] = [p.to_dict() for p in self.policy]
        if self.realized is not None:
            d.update(realized_gmacs_per_clip=self.realized.engine,
                     realized_gmacs_per_clip_reference=self.realized.reference,
                     dense_gmacs_per_clip=self.realized.dense)
        if self.per_layer is not None:
            d["per_layer"] = self.per_layer.to_dict()
        d.update(drop_points=self.drop_points, verdict=self.verdict)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidateReport:
        realized = None
        if "realized_gmacs_per_clip" in d:
            realized = RealizedMacs(d["realized_gmacs_per_clip"], d["realized_gmacs_per_clip_reference"],
                                    d["dense_gmacs_per_clip"])
        return cls(d["engine"], d["reference"], d["clips"], EngineInfo(**d["engine_info"]), d["max_drop"],
                   EngineComparison.from_dict(d["result"]),
                   [PolicyBlock.from_dict(p) for p in d["policy"]] if "policy" in d else None, realized,
                   Departure.from_dict(d["per_layer"]) if "per_layer" in d else None)
