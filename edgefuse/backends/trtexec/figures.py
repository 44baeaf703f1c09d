"""trtexec timings as the figures ``edgefuse bench`` reports (``bench.report.Latency`` and ``BenchRow.timings``).

The backends layer sits below bench, so this returns plain values keyed like ``Latency``'s fields; bench builds
its ``Latency`` from them (``Latency(**figures.latency)``, or ``Latency.of(figures.raw_ms, batch, frames)`` when
``raw_ms`` is there, which gives the same numbers). The raw per-run figures come from trtexec's
``--exportTimes`` file (every version since 8.0 writes ``latencyMs``, ``h2dMs``, ``computeMs``, ``d2hMs`` per
run); without it only the printed summary is there, and figures it did not print stay None (before 8.5 trtexec
prints one percentile).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import EdgefuseError

from .report import TrtexecReport

LATENCY_FIELDS = ("iterations", "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "cov",
                  "clips_per_s", "frames_per_s")  # edgefuse.bench.report.Latency, in its order


@dataclass(frozen=True)
class ExportedTimes:
    """Per-run figures of one trtexec timing run (ms), from its --exportTimes JSON."""

    latency_ms: list[float]
    h2d_ms: list[float]
    compute_ms: list[float]
    d2h_ms: list[float]


def read_export_times(path: Path) -> ExportedTimes:
    try:
        runs = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EdgefuseError(f"{path}: trtexec's --exportTimes file is unreadable ({e}); rerun the timing") from e
    if not isinstance(runs, list) or not runs:
        raise EdgefuseError(f"{path}: trtexec's --exportTimes file holds no runs; rerun the timing")
    try:
        return ExportedTimes(*([float(r[k]) for r in runs] for k in ("latencyMs", "h2dMs", "computeMs", "d2hMs")))
    except (KeyError, TypeError, ValueError) as e:
        raise EdgefuseError(f"{path}: not trtexec's --exportTimes format (latencyMs, h2dMs, computeMs, d2hMs per "
                            f"run): {e!r}") from e


@dataclass(frozen=True)
class BenchFigures:
    raw_ms: list[float]  # per-run latency (H2D + compute + D2H); empty without --exportTimes
    latency: dict[str, float | int | None]  # keyed like bench.report.Latency
    timings: dict[str, float] = field(default_factory=dict)  # means: h2d_ms, compute_ms, d2h_ms, enqueue_ms, ...
    source: str = "exportTimes"  # or "summary"

    def to_dict(self) -> dict[str, Any]:
        return {"raw_ms": self.raw_ms, "latency": self.latency, "timings": self.timings, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchFigures:
        return cls(list(d["raw_ms"]), dict(d["latency"]), dict(d["timings"]), d["source"])


def _from_raw(raw: Sequence[float], batch: int, frames: int) -> dict[str, float | int | None]:
    a = np.asarray(raw, dtype=np.float64)  # the same arithmetic as bench.report.Latency.of
    mean = float(a.mean())
    return {"iterations": int(a.size), "min_ms": float(a.min()), "mean_ms": mean, "median_ms": float(np.median(a)),
            "p90_ms": float(np.percentile(a, 90)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
            "cov": float(a.std() / mean) if mean else 0.0,
            "clips_per_s": 1000.0 * batch / mean if mean else 0.0,
            "frames_per_s": 1000.0 * batch * frames / mean if mean else 0.0}


def bench_figures(report: TrtexecReport, batch: int, frames: int, times: ExportedTimes | None = None) -> BenchFigures:
    """bench's figures for one trtexec timing run of an engine taking ``batch`` clips of ``frames`` frames."""
    timings: dict[str, float] = {}
    if report.throughput_qps is not None:
        timings["throughput_qps"] = report.throughput_qps
    if report.enqueue is not None and report.enqueue.mean_ms is not None:
        timings["enqueue_ms"] = report.enqueue.mean_ms
    if times is not None:
        timings.update(h2d_ms=float(np.mean(times.h2d_ms)), compute_ms=float(np.mean(times.compute_ms)),
                       d2h_ms=float(np.mean(times.d2h_ms)))
        return BenchFigures(list(times.latency_ms), _from_raw(times.latency_ms, batch, frames), timings)
    lat = report.latency
    if lat is None or lat.mean_ms is None:
        raise EdgefuseError("trtexec printed no 'Latency:' summary line: no figures to report; rerun the timing")
    for key, stats in (("h2d_ms", report.h2d), ("compute_ms", report.gpu_compute), ("d2h_ms", report.d2h)):
        if stats is not None and stats.mean_ms is not None:
            timings[key] = stats.mean_ms
    mean = lat.mean_ms
    cov = report.gpu_compute_cov_pct / 100.0 if report.gpu_compute_cov_pct is not None else None
    iterations = None
    if report.total_gpu_compute_s and report.gpu_compute is not None and report.gpu_compute.mean_ms:
        iterations = round(report.total_gpu_compute_s * 1000.0 / report.gpu_compute.mean_ms)
    latency: dict[str, float | int | None] = {
        "iterations": iterations, "min_ms": lat.min_ms, "mean_ms": mean, "median_ms": lat.median_ms,
        "p90_ms": lat.percentile(90), "p95_ms": lat.percentile(95), "p99_ms": lat.percentile(99), "max_ms": lat.max_ms,
        "cov": cov, "clips_per_s": 1000.0 * batch / mean if mean else 0.0,
        "frames_per_s": 1000.0 * batch * frames / mean if mean else 0.0}
    return BenchFigures([], latency, timings, "summary")
