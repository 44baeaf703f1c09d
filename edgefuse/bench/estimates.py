"""``--estimate``: roofline estimates (:mod:`edgefuse.estimate`) beside the measurements, or alone for a
device that is not this machine."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgefuse.bench.config import BenchConfig, row_names, write_json
from edgefuse.bench.report import BenchRow, EstimateReport, EstimateRow
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends import Runner
    from edgefuse.devices import DeviceProfile
    from edgefuse.estimate import Estimate


def _estimate(graph: onnx.ModelProto, profile: DeviceProfile, target: str = "gpu",
              engine_precision: str | None = None) -> Estimate:
    from edgefuse.estimate import estimate
    from edgefuse.graph.metadata import read_metadata

    return estimate(graph, read_metadata(graph), profile, target=target, engine_precision=engine_precision)


def _engine_settings(path: Path) -> tuple[str, str | None]:
    """(target, engine precision) of an engine: ``dla`` when its sidecar says it was built for a DLA core, and the
    precision it was built for (builder flags); an .onnx runs on the GPU in its graph's precisions."""
    if Path(path).suffix == ".onnx":
        return "gpu", None
    from edgefuse.backends.sidecar import read_sidecar

    try:
        sidecar = read_sidecar(path)
    except EdgefuseError:
        return "gpu", None
    if sidecar.backend != "tensorrt":
        return "gpu", None
    return ("dla" if sidecar.dla_core is not None else "gpu"), sidecar.precision


def _graph_of(path: Path, runner: Runner) -> onnx.ModelProto:
    """The ONNX graph behind an engine: its sidecar's source graph, else the file itself (an .onnx)."""
    source = runner.info.get("source_onnx")
    for candidate in ([Path(source)] if source else []) + [Path(path)]:
        if candidate.suffix == ".onnx" and candidate.is_file():
            return onnx.load(str(candidate))
    raise EdgefuseError(f"{path}: the estimate needs the ONNX graph the engine was built from, and its sidecar's "
                        "source_onnx is not on this machine; pass the .onnx instead")


def with_estimate(row: BenchRow, path: Path, runner: Runner, profile: DeviceProfile) -> BenchRow:
    """``row`` with the roofline estimate of its engine and the estimate's error against the measured median."""
    target, precision = _engine_settings(path)
    est = _estimate(_graph_of(path, runner), profile, target, precision).total_ms
    median = row.latency.median_ms
    return dataclasses.replace(row, estimate_ms=est, estimate_error_pct=100.0 * (est - median) / median)


def _source_graph(path: Path) -> Path:
    if path.suffix == ".onnx":
        return path
    from edgefuse.backends.sidecar import read_sidecar

    source = Path(read_sidecar(path).source_onnx)
    if not source.is_file():
        raise EdgefuseError(f"{path}: its source graph {source} is not here; pass the .onnx for the estimate")
    return source


def estimate_report(cfg: BenchConfig, profile: DeviceProfile, dla: bool = False) -> EstimateReport:
    """Roofline estimates only, for a device that is not this machine. ``dla``: every engine on one DLA core (an
    engine whose sidecar says it was built for a DLA core is estimated there anyway)."""
    rows = []
    for name, path in zip(row_names(cfg.engines, cfg.names), cfg.engines):
        target, precision = _engine_settings(Path(path))
        est = _estimate(onnx.load(str(_source_graph(Path(path)))), profile, "dla" if dla else target, precision)
        rows.append(EstimateRow(name, est.total_ms, est.label, est.summary(), list(est.assumptions)))
    report = EstimateReport(profile.name, rows,
                            f"{profile.title}, one DLA core: figures are roofline estimates, not measurements" if dla
                            else f"{profile.title} is not this machine: figures are roofline estimates, not measurements")
    if cfg.json_out:
        write_json(report.to_dict(), cfg.json_out)
    return report


