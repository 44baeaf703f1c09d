"""``bench(BenchConfig(...))``: every engine on the same input, round robin after a warm-up."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.bench.config import EAGER, BenchConfig, row_names, write_json
from edgefuse.bench.report import BenchReport, BenchRow, EstimateReport, Latency
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends import Runner
    from edgefuse.backends.sidecar import Sidecar
    from edgefuse.devices import DeviceProfile



@dataclass
class Entry:
    """One row being measured: its label, runner, engine file (None for the eager baseline) and timings."""

    name: str
    runner: Runner
    path: Path | None
    raw_ms: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    rss_mb: float = 0.0


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    cur = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def _input(meta: dict[str, Any], batch: int, seed: int, path: Path) -> np.ndarray:
    try:
        t, size = int(meta["segments"]), int(meta["input_size"])
    except (KeyError, TypeError, ValueError):
        raise EdgefuseError(f"{path}: no edgefuse metadata (segments, input size); build it from an 'edgefuse export' "
                            "graph") from None
    return np.random.default_rng(seed).standard_normal((batch, t, 3, size, size)).astype(np.float32)  # (N, T, 3, H, W)


def check_device(device: str, estimate_only_ok: bool = False) -> tuple[DeviceProfile, bool]:
    """(the device profile, whether it is this machine). A Jetson or GPU profile on another machine is
    an error, unless only an estimate is asked for (``--estimate``)."""
    from edgefuse.devices import detect_device, get_device

    if device == "cpu":  # always this machine: nothing to detect
        return get_device("cpu"), True
    here = detect_device()
    if device == "auto":
        return here, True
    if device == "jetson":
        if here.kind != "jetson":
            raise EdgefuseError(f"--device jetson: this machine is not a Jetson (it is {here.title}); run bench on the "
                                "Jetson itself, or give a Jetson profile with --estimate for a roofline estimate")
        return here, True
    profile = get_device(device)
    if profile.kind == "cpu" or profile.name == here.name:
        return profile, True
    if estimate_only_ok:
        return profile, False
    what = "a Jetson" if profile.kind == "jetson" else "an NVIDIA GPU"
    raise EdgefuseError(f"--device {device}: this machine is not {profile.title} (it is {here.title}), and {what} "
                        "is needed to measure; run bench there, or add --estimate for a roofline estimate")


def _load(cfg: BenchConfig) -> tuple[list[Entry], dict[str, Sidecar], dict[str, Any]]:
    """The rows run here (the eager baseline first when asked for), the rows trtexec times (by name: their sidecar)
    and the first engine's metadata; one input shape."""
    from edgefuse import backends
    from edgefuse.bench.trtexec import timed_by_trtexec

    entries, by_trtexec, metas = [], {}, []
    for name, path in zip(row_names(cfg.engines, cfg.names), cfg.engines):
        sidecar = timed_by_trtexec(Path(path), cfg.timer)
        if sidecar is not None:
            by_trtexec[name] = sidecar
            metas.append((Path(path), dict(sidecar.metadata)))
        else:
            entries.append(Entry(name, backends.load(path, threads=cfg.threads), Path(path)))
            metas.append((Path(path), dict(entries[-1].runner.metadata)))
    meta = metas[0][1]
    for path, m in metas:
        if (m.get("segments"), m.get("input_size")) != (meta.get("segments"), meta.get("input_size")):
            raise EdgefuseError(f"{path}: takes {m.get('segments')}x{m.get('input_size')} clips, "
                                f"{cfg.engines[0]} takes {meta.get('segments')}x{meta.get('input_size')}; "
                                "bench engines of one input shape together")
    if cfg.eager is not None:
        from edgefuse.backends.eager import EagerRunner

        entries.insert(0, Entry(EAGER, EagerRunner(cfg.eager, meta, threads=cfg.threads), None))
    return entries, by_trtexec, meta


def _measure(entries: list[Entry], x: np.ndarray, cfg: BenchConfig) -> None:
    """Warm-up, then round robin until the count or the duration: every run's time into its entry."""
    from edgefuse.progress import Progress

    for e in entries:
        for _ in range(cfg.warmup):
            e.runner.run(x)
    bar = Progress(cfg.iterations if cfg.duration is None else None, "bench", enabled=cfg.progress)
    start = time.monotonic()
    i = 0
    while (cfg.duration is None and i < cfg.iterations) or (cfg.duration is not None and
                                                            time.monotonic() - start < cfg.duration * len(entries)):
        for e in entries:  # round robin
            t = time.perf_counter()
            e.runner.run(x)
            e.raw_ms.append(1000.0 * (time.perf_counter() - t))
            if e.runner.timings:
                e.timings.append(dict(e.runner.timings))
            e.rss_mb = max(e.rss_mb, _rss_mb()[0])
        i += 1
        bar.update()
    bar.close()


def _row(e: Entry, batch: int, frames: int) -> BenchRow:
    r = e.runner
    gpu = r.gpu_memory_mb
    return BenchRow(
        name=e.name, backend=r.backend, precision=r.info.get("precision") or r.metadata.get("precision") or "fp32",
        latency=Latency.of(e.raw_ms, batch, frames), rss_mb=round(e.rss_mb, 1), raw_ms=[round(v, 4) for v in e.raw_ms],
        gpu_memory_mb=round(float(gpu), 1) if gpu is not None else None,
        timings={k: float(np.mean([t[k] for t in e.timings])) for k in e.timings[0]} if e.timings else {},
    )


def bench(cfg: BenchConfig) -> BenchReport | EstimateReport:
    """Measure ``cfg.engines`` here; on a device profile that is not this machine, estimate them instead
    (with ``cfg.estimate``)."""
    if not cfg.engines:
        raise EdgefuseError("bench needs at least one engine or .onnx graph")
    profile, here = check_device(cfg.device, estimate_only_ok=cfg.estimate)
    if not here:
        from edgefuse.bench.estimates import estimate_report

        return estimate_report(cfg, profile)
    entries, by_trtexec, meta = _load(cfg)
    x = _input(meta, cfg.batch, cfg.seed, cfg.engines[0])
    _measure(entries, x, cfg)
    measured = {e.name: _row(e, cfg.batch, int(meta["segments"])) for e in entries}
    if by_trtexec:
        from edgefuse.bench.trtexec import trtexec_row

        for name, sidecar in by_trtexec.items():
            path = Path(cfg.engines[row_names(cfg.engines, cfg.names).index(name)])
            measured[name] = trtexec_row(name, path, sidecar, list(x.shape), cfg.batch, int(meta["segments"]),
                                         cfg.iterations, cfg.warmup)
    order = ([EAGER] if cfg.eager is not None else []) + row_names(cfg.engines, cfg.names)
    rows = [measured[name] for name in order]
    entries_by_name = {e.name: e for e in entries}
    if cfg.estimate:
        from edgefuse.bench.estimates import with_estimate

        rows = [with_estimate(row, e.path, e.runner, profile) if (e := entries_by_name.get(row.name)) is not None
                and e.path is not None else row for row in rows]
    if profile.kind == "jetson" and not by_trtexec:  # energy runs each engine under tegrastats with its runner
        from edgefuse.bench.power import jetson_power

        rows = jetson_power(rows, [e.runner for e in entries], x, cfg.batch, cfg.energy_seconds)
    base = rows[0].latency.median_ms
    rows = [dataclasses.replace(r, speedup_vs_first=base / r.latency.median_ms if r.latency.median_ms else None)
            for r in rows]
    from edgefuse.backends.ort.cpu import cpu_identity

    report = BenchReport(device=profile.name, hardware=cpu_identity() if profile.kind == "cpu" else None,
                         batch=cfg.batch, input=list(x.shape), warmup=cfg.warmup, peak_rss_mb=round(_rss_mb()[1], 1),
                         threads=cfg.threads, rows=rows, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if cfg.json_out:
        write_json(report.to_dict(), cfg.json_out)
    if cfg.png_out:
        from edgefuse.bench.plot import plot

        plot(report, cfg.png_out)
    return report
