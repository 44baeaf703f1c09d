"""``edgefuse bench``: latency and throughput of engines side by side, on one clip shape.

Every engine (and optionally the PyTorch eager model as a baseline row) runs the same input,
round robin after a warm-up so all see the same machine state. Raw timings are kept in the JSON;
every figure (min / mean / median / p90 / p95 / p99, coefficient of variation, clips/s and
frames/s) is computed from them, and a PNG shows their distributions.

Modules: :mod:`.config`, :mod:`.run` (the measurement), :mod:`.report` (the typed reports),
:mod:`.estimates` (roofline estimates), :mod:`.power` (Jetson power), :mod:`.plot`.
"""
from __future__ import annotations

from edgefuse.bench.config import BenchConfig
from edgefuse.bench.report import BenchReport, BenchRow, EstimateReport, EstimateRow, Latency
from edgefuse.bench.run import bench, check_device

__all__ = ["BenchConfig", "BenchReport", "BenchRow", "EstimateReport", "EstimateRow", "Latency", "bench",
           "check_device"]
