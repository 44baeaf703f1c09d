"""What ``edgefuse bench`` returns and writes (``--json-out``): typed, with a JSON round trip (``to_dict``
gives the file's content, ``from_dict`` reads it back). Measured runs give a :class:`BenchReport`; a
device that is not this machine gives roofline estimates only, an :class:`EstimateReport`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Figures of one engine's raw per-run timings (all computed from ``raw_ms``)."""

    iterations: int
    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cov: float  # coefficient of variation: std / mean
    clips_per_s: float
    frames_per_s: float

    @classmethod
    def of(cls, raw_ms: list[float], batch: int, frames: int) -> Latency:
        a = np.asarray(raw_ms, dtype=np.float64)
        mean = float(a.mean())
        return cls(
            iterations=int(a.size), min_ms=float(a.min()), mean_ms=mean, median_ms=float(np.median(a)),
            p90_ms=float(np.percentile(a, 90)), p95_ms=float(np.percentile(a, 95)),
            p99_ms=float(np.percentile(a, 99)), max_ms=float(a.max()), cov=float(a.std() / mean) if mean else 0.0,
            clips_per_s=1000.0 * batch / mean if mean else 0.0,
            frames_per_s=1000.0 * batch * frames / mean if mean else 0.0,
        )


@dataclass(frozen=True)
class JetsonPower:
    """On a Jetson: the power mode, whether the clocks were pinned, mean power and energy per clip."""

    power_mode: str | None
    clocks_pinned: bool | None
    mean_power_mw: float | None
    energy_mj_per_clip: float | None
    power_source: str | None = None  # the input rail, or "partial sum(...)" where the board has none (docs/power.md)


LATENCY_KEYS = tuple(f.name for f in dataclasses.fields(Latency))
POWER_KEYS = tuple(f.name for f in dataclasses.fields(JetsonPower))
ROW_KEYS = ("name", "backend", "precision", "rss_mb", "raw_ms", "gpu_memory_mb", "estimate_ms", "estimate_error_pct",
            "speedup_vs_first", "command")


@dataclass(frozen=True)
class BenchRow:
    """One engine (or the PyTorch eager baseline) in a measured bench."""

    name: str
    backend: str
    precision: str
    latency: Latency
    rss_mb: float
    raw_ms: list[float]
    gpu_memory_mb: float | None = None  # TensorRT
    timings: dict[str, float] = field(default_factory=dict)  # the backend's own split of a run (means), if any
    estimate_ms: float | None = None  # roofline estimate on the device profile
    estimate_error_pct: float | None = None  # of the estimate against the measured median
    power: JetsonPower | None = None
    speedup_vs_first: float | None = None
    command: str | None = None  # the exact trtexec command, for rows trtexec timed

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "backend": self.backend, "precision": self.precision,
                             **dataclasses.asdict(self.latency), "rss_mb": self.rss_mb}
        if raw:
            d["raw_ms"] = self.raw_ms
        if self.gpu_memory_mb is not None:
            d["gpu_memory_mb"] = self.gpu_memory_mb
        d.update(self.timings)
        if self.estimate_ms is not None:
            d.update(estimate_ms=self.estimate_ms, estimate_error_pct=self.estimate_error_pct)
        if self.power is not None:
            d.update(dataclasses.asdict(self.power))
        d["speedup_vs_first"] = self.speedup_vs_first
        if self.command is not None:
            d["command"] = self.command
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchRow:
        known = set(LATENCY_KEYS) | set(POWER_KEYS) | set(ROW_KEYS)
        power = JetsonPower(**{k: d.get(k) for k in POWER_KEYS}) if "energy_mj_per_clip" in d else None
        return cls(name=d["name"], backend=d["backend"], precision=d["precision"],
                   latency=Latency(**{k: d[k] for k in LATENCY_KEYS}), rss_mb=d["rss_mb"], raw_ms=list(d["raw_ms"]),
                   gpu_memory_mb=d.get("gpu_memory_mb"), timings={k: v for k, v in d.items() if k not in known},
                   estimate_ms=d.get("estimate_ms"), estimate_error_pct=d.get("estimate_error_pct"), power=power,
                   speedup_vs_first=d.get("speedup_vs_first"), command=d.get("command"))


@dataclass(frozen=True)
class BenchReport:
    device: str
    hardware: dict[str, Any] | None  # the CPU's identity on a CPU profile
    batch: int
    input: list[int]  # the clip shape every engine ran
    warmup: int
    peak_rss_mb: float
    threads: int | None
    rows: list[BenchRow]
    date: str

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        """The JSON form; without every run's raw timing when ``raw`` is False."""
        return {"device": self.device, "hardware": self.hardware, "batch": self.batch, "input": self.input,
                "warmup": self.warmup, "peak_rss_mb": self.peak_rss_mb, "threads": self.threads,
                "rows": [r.to_dict(raw) for r in self.rows], "date": self.date}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchReport:
        return cls(d["device"], d["hardware"], d["batch"], list(d["input"]), d["warmup"], d["peak_rss_mb"],
                   d["threads"], [BenchRow.from_dict(r) for r in d["rows"]], d["date"])


@dataclass(frozen=True)
class EstimateRow:
    name: str
    estimate_ms: float
    label: str
    summary: str
    assumptions: list[str]


@dataclass(frozen=True)
class EstimateReport:
    """Roofline estimates only: the device profile asked for is not this machine."""

    device: str
    rows: list[EstimateRow]
    note: str

    @property
    def estimate_only(self) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "estimate_only": True, "rows": [dataclasses.asdict(r) for r in self.rows],
                "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimateReport:
        return cls(d["device"], [EstimateRow(**r) for r in d["rows"]], d["note"])
