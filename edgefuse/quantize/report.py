"""What ``edgefuse calibrate`` returns and writes beside its graph (``<output>.calib.json``): typed, with a
JSON round trip (``to_dict`` gives the file's content, ``from_dict`` reads it back)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.quantize.evaluate import Comparison

# the report's fields that also go into the graph's metadata (edgefuse.calibration), in this order
CALIBRATION_KEYS = ("precision", "method", "percentile", "clips", "num_clips", "seed", "cache_key", "statistics",
                    "excluded_patterns", "excluded_layers", "budget_layers", "max_drop", "min_agreement")


def _skips(skipped: list[tuple[str, str]] | None) -> list[dict[str, str]] | None:
    return None if skipped is None else [{"id": i, "reason": r} for i, r in skipped]


def _unskips(d: list[dict[str, str]] | None) -> list[tuple[str, str]] | None:
    return None if d is None else [(s["id"], s["reason"]) for s in d]


@dataclass(frozen=True)
class HeldOut:
    """The clips the comparison with FP32 ran on: held out from calibration, or (``held_out`` False) the calibration
    clips themselves when there was no held-out set."""

    source: str
    clips: int
    held_out: bool = True
    ids: list[str] | None = None
    skipped: list[tuple[str, str]] | None = None  # (id, why) of the source's clips that could not be read

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "clips": self.clips, "held_out": self.held_out, "ids": self.ids,
                "skipped": _skips(self.skipped)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldOut:
        return cls(d["source"], int(d["clips"]), bool(d.get("held_out", True)), d.get("ids"),
                   _unskips(d.get("skipped")))


@dataclass(frozen=True)
class MacsSplit:
    """MACs per run at the optimal shape: all, in the low precision, and those of the budget's layers.
    In JSON the low-precision count is keyed by the precision's name (``int8`` or ``fp16``)."""

    precision: str
    total: int
    low: int
    budget_layers_macs: int

    @property
    def fp32(self) -> int:
        return self.total - self.low

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, self.precision: self.low, "fp32": self.fp32,
                "above_int8_fp32": self.fp32 if self.precision == "int8" else None,
                "budget_layers_macs": self.budget_layers_macs}

    @classmethod
    def from_dict(cls, d: dict[str, Any], precision: str) -> MacsSplit:
        return cls(precision, d["total"], d[precision], d["budget_layers_macs"])


@dataclass(frozen=True)
class CalibrateReport:
    model: str
    output: str
    precision: str  # int8 | fp16
    method: str | None  # INT8 threshold rule
    percentile: float | None
    clips: str
    num_clips: int | None  # calibration clips (None: scales from a TensorRT cache)
    seed: int
    cache_key: str
    statistics: str  # where the statistics came from, in words
    excluded_patterns: list[str]
    excluded_layers: list[str]
    budget_layers: list[str]  # layers the budget returned to FP32, most sensitive first
    max_drop: float | None
    min_agreement: float | None
    holdout: HeldOut
    first_try: Comparison | None  # before the budget changed anything (None when it did not)
    result: Comparison
    within_budget: bool | None  # None: no budget
    sensitivity: dict[str, float]  # layer -> logit MSE with only it in low precision, most sensitive first
    macs: MacsSplit
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    calibration_ids: list[str] | None = None  # the clips the statistics came from (None: not known or a TRT cache)
    calibration_skipped: list[tuple[str, str]] | None = None  # (id, why) of --clips' unreadable clips (None: unknown)

    @property
    def drop_points(self) -> float:
        return self.result.drop_points

    @property
    def skipped(self) -> list[dict[str, str]]:
        """Every clip that could not be read, with its source and why (calibration clips first)."""
        out = [{"id": i, "reason": r, "source": self.clips} for i, r in self.calibration_skipped or []]
        seen = {(d["source"], d["id"]) for d in out}
        source = self.holdout.source.split(" (")[0]
        out += [{"id": i, "reason": r, "source": source} for i, r in self.holdout.skipped or []
                if (source, i) not in seen]
        return out

    def calibration(self) -> dict[str, Any]:
        """The calibration facts the graph's metadata records."""
        return {k: getattr(self, k) for k in CALIBRATION_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "output": self.output, **self.calibration(),
                "calibration_clips": self.calibration_ids, "calibration_skipped": _skips(self.calibration_skipped),
                "holdout": self.holdout.to_dict(), "skipped": self.skipped,
                "first_try": self.first_try.to_dict() if self.first_try is not None else None,
                "result": self.result.to_dict(), "drop_points": self.drop_points, "within_budget": self.within_budget,
                "sensitivity": dict(self.sensitivity), "macs": self.macs.to_dict(), "timings": dict(self.timings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrateReport:
        return cls(model=d["model"], output=d["output"], **{k: d[k] for k in CALIBRATION_KEYS},
                   holdout=HeldOut.from_dict(d["holdout"]),
                   first_try=Comparison.from_dict(d["first_try"]) if d.get("first_try") else None,
                   result=Comparison.from_dict(d["result"]), within_budget=d["within_budget"],
                   sensitivity=dict(d["sensitivity"]), macs=MacsSplit.from_dict(d["macs"], d["precision"]),
                   timings=dict(d.get("timings") or {}), calibration_ids=d.get("calibration_clips"),
                   calibration_skipped=_unskips(d.get("calibration_skipped")))


@dataclass(frozen=True)
class CalibrateResult:
    """What ``calibrate`` wrote: the graph, its report file (and the report), a TensorRT cache if asked."""

    path: Path
    report_path: Path
    report: CalibrateReport
    trt_cache: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "report_path": str(self.report_path), "report": self.report.to_dict(),
                "trt_cache": str(self.trt_cache) if self.trt_cache else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrateResult:
        return cls(Path(d["path"]), Path(d["report_path"]), CalibrateReport.from_dict(d["report"]),
                   Path(d["trt_cache"]) if d.get("trt_cache") else None)
