"""TensorRT engines timed by trtexec: where TensorRT's Python bindings are missing (JetPack 4.6 and 5 with an old
Python, a bare TensorRT install) or when asked for (``timer="trtexec"``). trtexec runs its own warm-up and iterations
in one process, so these rows are timed after the round robin of the others, from the per-run times trtexec exports
(``--exportTimes``): the same figures as every other row (:class:`~edgefuse.bench.report.Latency`)."""
from __future__ import annotations

from pathlib import Path

from edgefuse.backends.sidecar import Sidecar, read_sidecar, sidecar_path
from edgefuse.bench.report import BenchRow, Latency
from edgefuse.errors import EdgefuseError

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


def trtexec_row(name: str, path: Path, sidecar: Sidecar, input_shape: list[int], batch: int, frames: int,
                iterations: int, warmup_runs: int) -> BenchRow:
    """One row from a trtexec timing of ``path`` on ``input_shape`` (dynamic inputs only get ``--shapes``)."""
    from edgefuse.backends.trtexec import bench_figures, time_with_trtexec

    shapes = {n: input_shape for n, (lo, _, hi) in sidecar.profiles.items() if lo != hi}
    report, times, command = time_with_trtexec(path, version=sidecar.backend_version, shapes=shapes,
                                               warmup_ms=max(200, 20 * warmup_runs), iterations=iterations,
                                               dla_core=sidecar.settings.get("dla_core"))
    fig = bench_figures(report, batch, frames, times)
    timings = {k: float(v) for k, v in fig.timings.items()}
    return BenchRow(name=name, backend="tensorrt (trtexec)", precision=sidecar.precision,
                    latency=Latency.of(fig.raw_ms, batch, frames), rss_mb=0.0, raw_ms=[round(v, 4) for v in fig.raw_ms],
                    timings=timings, command=command)
