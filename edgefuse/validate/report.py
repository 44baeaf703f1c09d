"""What ``edgefuse validate`` returns and writes (``--report``): typed, with a JSON round trip (``to_dict``
gives the file's content, ``from_dict`` reads it back). Optional parts absent from a run are absent
from the JSON, as they always were."""
from __future__ import annotations

import math
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
    nonfinite_engine: list[str] | None = None  # ids of the clips whose engine logits hold NaN or inf (None: none)
    nonfinite_reference: list[str] | None = None  # ids of the clips whose reference logits do

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
        if self.nonfinite_engine:
            d["nonfinite_engine"] = list(self.nonfinite_engine)
        if self.nonfinite_reference:
            d["nonfinite_reference"] = list(self.nonfinite_reference)
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


# --min-agreement when not given: top-1 agreement with the FP32 reference an engine must reach, by its precision.
# INT8 moves near-tie clips (the zoo's INT8 graphs agree on 98.8-99.6 % of the val clips, docs/benchmarks); an
# FP32 or FP16 engine computes the same function up to rounding.
DEFAULT_MIN_AGREEMENT = {"int8": 0.98, "fp16": 0.99, "fp32": 0.99}


def default_min_agreement(precision: Any) -> float:
    """The agreement floor of an engine of ``precision`` (any precision naming INT8 counts as INT8)."""
    return DEFAULT_MIN_AGREEMENT["int8" if "int8" in str(precision or "").lower() else "fp32"]


@dataclass(frozen=True)
class Disagreement:
    """One clip whose top-1 differs between the engine and the reference (or whose logits are not finite)."""

    id: str
    reference: int
    engine: int
    reference_class: str
    engine_class: str
    max_abs_error: float
    label: int | None = None
    nonfinite: str | None = None  # "engine", "reference" or "both"

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


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
    min_agreement: float | None = None  # top-1 agreement with the reference the engine must reach (None: no gate)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip id, why) of the clips that could not be read
    class_names: list[str] | None = None  # the clip source's when it has them, else the graph metadata's

    @property
    def drop_points(self) -> float:
        return self.result.drop_points

    @property
    def failures(self) -> list[str]:
        """Why the engine fails, one reason each (empty: it passes)."""
        r, out = self.result, []
        for what, ids in (("engine", r.nonfinite_engine), ("reference", r.nonfinite_reference)):
            if ids:
                named = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
                out.append(f"{len(ids)} of {r.clips} clips give non-finite (NaN or inf) {what} logits ({named})")
        if self.min_agreement is not None and not r.top1_agreement >= self.min_agreement:
            out.append(f"top-1 agreement {100 * r.top1_agreement:.2f}% is below --min-agreement "
                       f"{100 * self.min_agreement:.2f}%")
        if not self.drop_points <= self.max_drop:
            what = "top-1 drop" if r.top1_reference is not None else "disagreement"
            out.append(f"{what} {self.drop_points:.2f} points is over --max-drop {self.max_drop}")
        return out

    def disagreements(self) -> list[Disagreement]:
        """The clips whose top-1 differs (and those with non-finite logits), the largest logit error first."""
        pc, names = self.result.per_clip, self.class_names or []
        ids = pc.id or [str(i) for i in range(len(pc.engine_top1))]
        bad_e, bad_r = set(self.result.nonfinite_engine or ()), set(self.result.nonfinite_reference or ())
        out = []
        for i, clip in enumerate(ids):
            ref, eng = int(pc.reference_top1[i]), int(pc.engine_top1[i])
            nonfinite = ("both" if clip in bad_e and clip in bad_r else "engine" if clip in bad_e
                         else "reference" if clip in bad_r else None)
            if ref == eng and nonfinite is None:
                continue
            out.append(Disagreement(clip, ref, eng, names[ref] if 0 <= ref < len(names) else str(ref),
                                    names[eng] if 0 <= eng < len(names) else str(eng), float(pc.max_abs_error[i]),
                                    pc.label[i] if pc.label is not None else None, nonfinite))
        # non-finite clips first (they are the worst), then by logit error
        return sorted(out, key=lambda x: (0, 0.0) if x.nonfinite or math.isnan(x.max_abs_error)
                      else (1, -x.max_abs_error))

    @property
    def verdict(self) -> str:
        return "fail" if self.failures else "pass"

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
        if self.class_names is not None:
            d["class_names"] = list(self.class_names)
        d.update(skipped=[{"id": i, "reason": why} for i, why in self.skipped],
                 disagreements=[x.to_dict() for x in self.disagreements()])
        d.update(drop_points=self.drop_points, min_agreement=self.min_agreement, verdict=self.verdict,
                 failures=self.failures)
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
                   Departure.from_dict(d["per_layer"]) if "per_layer" in d else None, d.get("min_agreement"),
                   [(s["id"], s["reason"]) for s in d.get("skipped") or []],
                   list(d["class_names"]) if d.get("class_names") is not None else None)
