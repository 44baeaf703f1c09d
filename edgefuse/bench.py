"""``edgefuse bench``: latency and throughput of engines side by side, on one clip shape.

Every engine (and optionally the PyTorch eager model as a baseline row) runs the same input,
round robin after a warm-up so all see the same machine state. Raw timings are kept in the JSON;
every figure (min / mean / median / p90 / p95 / p99, coefficient of variation, clips/s and
frames/s) is computed from them, and a PNG shows their distributions.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    engines: tuple[Path, ...]
    device: str = "auto"
    batch: int = 1
    iterations: int = 50
    duration: float | None = None  # seconds per engine instead of a count
    warmup: int = 5
    eager: Path | None = None  # a checkpoint: add PyTorch eager FP32 as a baseline row
    threads: int | None = None
    json_out: Path | None = None
    png_out: Path | None = None
    seed: int = 0
    progress: bool = True
    names: tuple[str, ...] = field(default_factory=tuple)  # row labels (default: file names)
    estimate: bool = False  # add a roofline estimate per engine on the device profile (measured too where possible)
    energy_seconds: float = 3.0  # Jetson: seconds each engine runs under tegrastats for energy per clip


def stats(raw_ms: list[float], batch: int, frames: int) -> dict[str, float]:
    a = np.asarray(raw_ms, dtype=np.float64)
    mean = float(a.mean())
    return {
        "iterations": int(a.size), "min_ms": float(a.min()), "mean_ms": mean, "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)), "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
        "cov": float(a.std() / mean) if mean else 0.0,
        "clips_per_s": 1000.0 * batch / mean if mean else 0.0,
        "frames_per_s": 1000.0 * batch * frames / mean if mean else 0.0,
    }


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
    return np.random.default_rng(seed).standard_normal((batch, t, 3, size, size)).astype(np.float32)


def check_device(device: str, estimate_only_ok: bool = False) -> tuple[Any, bool]:
    """(the device profile, whether it is this machine). A Jetson or GPU profile on another machine is
    an error, unless only an estimate is asked for (``--estimate``)."""
    from edgefuse.devices import detect_device, get_device

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


def bench(cfg: BenchConfig) -> dict[str, Any]:
    from edgefuse import backends
    from edgefuse.progress import Progress

    if not cfg.engines:
        raise EdgefuseError("bench needs at least one engine or .onnx graph")
    profile, here = check_device(cfg.device, estimate_only_ok=cfg.estimate)
    if not here:
        return estimate_report(cfg, profile)
    runners: list[tuple[str, Any]] = []
    paths: dict[str, Path] = {}  # row name -> engine file (the eager baseline has none)
    for i, path in enumerate(cfg.engines):
        name = cfg.names[i] if i < len(cfg.names) else Path(path).name
        runners.append((name, backends.load(path, threads=cfg.threads)))
        paths[name] = Path(path)
    meta = dict(runners[0][1].metadata)
    x = _input(meta, cfg.batch, cfg.seed, cfg.engines[0])
    for (name, r), path in zip(runners, cfg.engines):
        m = r.metadata
        if (m.get("segments"), m.get("input_size")) != (meta.get("segments"), meta.get("input_size")):
            raise EdgefuseError(f"{path}: takes {m.get('segments')}x{m.get('input_size')} clips, "
                                f"{cfg.engines[0]} takes {meta.get('segments')}x{meta.get('input_size')}; "
                                "bench engines of one input shape together")
    if cfg.eager is not None:
        from edgefuse.backends.eager import EagerRunner

        runners.insert(0, ("PyTorch eager FP32", EagerRunner(cfg.eager, meta, threads=cfg.threads)))
    for _, r in runners:
        for _ in range(cfg.warmup):
            r.run(x)
    raw: dict[str, list[float]] = {name: [] for name, _ in runners}
    extra: dict[str, list[dict[str, float]]] = {name: [] for name, _ in runners}
    rss: dict[str, float] = {}
    total = cfg.iterations if cfg.duration is None else None
    bar = Progress(total, "bench", enabled=cfg.progress)
    start = time.monotonic()
    i = 0
    while (cfg.duration is None and i < cfg.iterations) or (cfg.duration is not None and
                                                            time.monotonic() - start < cfg.duration * len(runners)):
        for name, r in runners:  # round robin
            t = time.perf_counter()
            r.run(x)
            raw[name].append(1000.0 * (time.perf_counter() - t))
            if getattr(r, "timings", None):
                extra[name].append(dict(r.timings))
            rss[name] = max(rss.get(name, 0.0), _rss_mb()[0])
        i += 1
        bar.update()
    bar.close()
    frames = int(meta["segments"])
    rows = []
    for name, r in runners:
        row: dict[str, Any] = {"name": name, "backend": r.backend,
                               "precision": (r.info or {}).get("precision") or r.metadata.get("precision") or "fp32",
                               **stats(raw[name], cfg.batch, frames), "rss_mb": round(rss.get(name, 0.0), 1),
                               "raw_ms": [round(v, 4) for v in raw[name]]}
        if getattr(r, "gpu_memory_mb", None) is not None:
            row["gpu_memory_mb"] = round(float(r.gpu_memory_mb), 1)
        if extra[name]:
            for key in extra[name][0]:
                row[key] = float(np.mean([e[key] for e in extra[name]]))
        rows.append(row)
    if cfg.estimate:
        for (name, r), row in zip(runners, rows):
            if name not in paths:
                continue
            est = _estimate(paths[name], r, profile)
            row["estimate_ms"] = est["estimate_ms"]
            row["estimate_error_pct"] = 100.0 * (est["estimate_ms"] - row["median_ms"]) / row["median_ms"]
    if profile is not None and profile.kind == "jetson":
        jetson_power(report_rows=rows, runners=runners, x=x, cfg=cfg)
    base = rows[0]["median_ms"]
    for row in rows:
        row["speedup_vs_first"] = base / row["median_ms"] if row["median_ms"] else None
    from edgefuse.backends.ort.cpu import cpu_identity

    report = {"device": profile.name if profile is not None else cfg.device, "hardware": cpu_identity()
              if profile is None or profile.kind == "cpu" else None, "batch": cfg.batch,
              "input": list(x.shape), "warmup": cfg.warmup, "peak_rss_mb": round(_rss_mb()[1], 1),
              "threads": cfg.threads, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if cfg.json_out:
        with atomic_path(cfg.json_out) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if cfg.png_out:
        plot(report, cfg.png_out)
    return report


def plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 3.5))
    ax.boxplot([r["raw_ms"] for r in rows], showfliers=True)
    ax.set_xticks(range(1, len(rows) + 1), [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("latency per run (ms)")
    ax.set_title(f"edgefuse bench: input {'x'.join(str(d) for d in report['input'])}, {report['device']}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Estimates and Jetson power

def _graph_of(path: Path, runner: Any) -> Any:
    """The ONNX graph behind an engine: its sidecar's source graph, else the file itself (an .onnx)."""
    import onnx

    source = (getattr(runner, "info", None) or {}).get("source_onnx")
    for candidate in ([Path(source)] if source else []) + [Path(path)]:
        if candidate.suffix == ".onnx" and candidate.is_file():
            return onnx.load(str(candidate))
    raise EdgefuseError(f"{path}: the estimate needs the ONNX graph the engine was built from, and its sidecar's "
                        "source_onnx is not on this machine; pass the .onnx instead")


def _estimate(path: Path, runner: Any, profile: Any) -> dict[str, Any]:
    from edgefuse.estimate import estimate
    from edgefuse.graph.metadata import read_metadata

    graph = _graph_of(path, runner)
    est = estimate(graph, read_metadata(graph), profile)
    return {"estimate_ms": est.total_ms, "label": est.label, "assumptions": list(est.assumptions)}


def estimate_report(cfg: BenchConfig, profile: Any) -> dict[str, Any]:
    """Roofline estimates only, for a device that is not this machine."""
    import onnx

    from edgefuse.estimate import estimate
    from edgefuse.graph.metadata import read_metadata

    rows = []
    for i, path in enumerate(cfg.engines):
        p = Path(path)
        if p.suffix != ".onnx":
            from edgefuse.backends.sidecar import read_sidecar

            source = read_sidecar(p).source_onnx
            p = Path(source)
            if not p.is_file():
                raise EdgefuseError(f"{path}: its source graph {source} is not here; pass the .onnx for the estimate")
        graph = onnx.load(str(p))
        est = estimate(graph, read_metadata(graph), profile)
        rows.append({"name": cfg.names[i] if i < len(cfg.names) else Path(path).name, "estimate_ms": est.total_ms,
                     "label": est.label, "summary": est.summary(), "assumptions": list(est.assumptions)})
    report = {"device": profile.name, "estimate_only": True, "rows": rows,
              "note": f"{profile.title} is not this machine: figures are roofline estimates, not measurements"}
    if cfg.json_out:
        with atomic_path(cfg.json_out) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def jetson_power(report_rows: list[dict[str, Any]], runners: list[tuple[str, Any]], x: np.ndarray,
                 cfg: BenchConfig) -> None:
    """On a Jetson: the power mode and whether clocks are pinned (a warning when not), then each engine
    runs alone for ``energy_seconds`` under tegrastats: mean power and energy per clip."""
    from edgefuse.devices.jetson import (
        TegrastatsSampler,
        clocks_pinned,
        energy_per_clip_mj,
        mean_power_mw,
        power_mode,
    )

    mode, pinned = power_mode(), clocks_pinned()
    if pinned is False:
        log.warning("jetson_clocks has not pinned the clocks: latency will vary; run 'sudo jetson_clocks' first")
    for row, (_, r) in zip(report_rows, runners):
        with TegrastatsSampler(interval_ms=50) as ts:
            start, n = time.monotonic(), 0
            while time.monotonic() - start < cfg.energy_seconds:
                r.run(x)
                n += cfg.batch
            end = time.monotonic()
        row["power_mode"] = mode[0] if mode else None
        row["clocks_pinned"] = pinned
        row["mean_power_mw"] = mean_power_mw(ts.samples, start, end)
        row["energy_mj_per_clip"] = energy_per_clip_mj(ts.samples, start, end, n)
