"""TensorRT engines timed by trtexec: where TensorRT's Python bindings are missing (JetPack 4.6 and 5 with an old
Python, a bare TensorRT install) or when asked for (``timer="trtexec"``). trtexec runs its own warm-up and iterations
in one process, so these rows are timed after the round robin of the others, from the per-run times trtexec exports
(``--exportTimes``): the same figures as every other row (:class:`~edgefuse.bench.report.Latency`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgefuse.backends.sidecar import Sidecar, read_sidecar, sidecar_path
from edgefuse.bench.report import BenchRow, Latency
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends.trtexec import ExportedTimes, TimingSpec, TrtexecReport

TIMERS = ("auto", "python", "trtexec")


def timed_by_trtexec(path: Path, timer: str) -> Sidecar | None:
    """The engine's sidecar when trtexec times it (a TensorRT engine, with ``timer`` trtexec, or auto and no Python
    bindings here), else None."""
    if timer not in TIMERS:
        raise EdgefuseError(f"timer {timer!r}: use one of {', '.join(TIMERS)}")
    if timer == "python":
        return None
    if path.suffix.lower() == ".onnx" and not sidecar_path(path).is_file():  # a graph: ONNX Runtime runs it
        if timer == "trtexec":
            raise EdgefuseError(f"{path}: an ONNX graph; trtexec times TensorRT engines only (build one with "
                                "'edgefuse build-engine')")
        return None
    sidecar = read_sidecar(path)
    if sidecar.backend != "tensorrt":
        if timer == "trtexec":
            raise EdgefuseError(f"{path}: a {sidecar.backend} engine; trtexec times TensorRT engines only")
        return None
    from edgefuse.backends.trt.adapter import bindings_available

    return sidecar if timer == "trtexec" or not bindings_available() else None


def trtexec_timing_spec(engine: Path, sidecar: Sidecar, input_shape: list[int], iterations: int, warmup_runs: int,
                        *, version: str | None = None, export_times: Path | None = None) -> TimingSpec:
    """How bench times ``engine`` with trtexec (pure; shared by the local and the remote timing): dynamic inputs
    (a profile whose min and max differ) get ``--shapes`` of ``input_shape``, the DLA core the engine was built for,
    a warm-up of 20 ms per warm-up run (200 ms at least), at least ``iterations`` runs. ``version``: the TensorRT
    version whose trtexec flags to use, default the sidecar's (empty: unknown, probed before a local run)."""
    from edgefuse.backends.trtexec import TimingSpec

    shapes = {n: list(input_shape) for n, (lo, _, hi) in sidecar.profiles.items() if lo != hi}
    dla = sidecar.settings.get("dla_core")
    return TimingSpec(engine=Path(engine), version=version or sidecar.backend_version, shapes=shapes,
                      warmup_ms=max(200, 20 * warmup_runs), iterations=iterations,
                      dla_core=int(dla) if dla is not None else None, export_times=export_times)


def trtexec_bench_row(name: str, sidecar: Sidecar, report: TrtexecReport, times: ExportedTimes | None, command: str,
                      batch: int, frames: int) -> BenchRow:
    """The bench row of one trtexec timing (pure): bench's own figures of the exported per-run times."""
    from edgefuse.backends.trtexec import bench_figures

    fig = bench_figures(report, batch, frames, times)
    timings = {k: float(v) for k, v in fig.timings.items()}
    return BenchRow(name=name, backend="tensorrt (trtexec)", precision=sidecar.precision,
                    latency=Latency.of(fig.raw_ms, batch, frames), rss_mb=0.0, raw_ms=[round(v, 4) for v in fig.raw_ms],
                    timings=timings, command=command)


def trtexec_row(name: str, path: Path, sidecar: Sidecar, input_shape: list[int], batch: int, frames: int,
                iterations: int, warmup_runs: int) -> BenchRow:
    """One row from a trtexec timing of ``path`` on ``input_shape`` (dynamic inputs only get ``--shapes``)."""
    from edgefuse.backends.trtexec import time_with_trtexec

    spec = trtexec_timing_spec(path, sidecar, input_shape, iterations, warmup_runs)
    report, times, command = time_with_trtexec(spec.engine, version=spec.version or None, shapes=spec.shapes,
                                               warmup_ms=spec.warmup_ms, iterations=spec.iterations,
                                               dla_core=spec.dla_core)
    return trtexec_bench_row(name, sidecar, report, times, command, batch, frames)
