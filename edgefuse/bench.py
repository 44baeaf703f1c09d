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


def check_device(device: str) -> Any:
    from edgefuse.devices import detect_device, get_device

    if device == "auto":
        return detect_device()
    profile = get_device(device) if device not in ("jetson",) else None
    here = detect_device()
    if device == "jetson" or (profile is not None and profile.kind == "jetson"):
        if here.kind != "jetson":
            raise EdgefuseError(f"--device {device}: this machine is not a Jetson (it is {here.title}); run bench on "
                                "the Jetson itself")
        return here
    if profile is not None and profile.kind == "gpu" and here.kind != "gpu":
        raise EdgefuseError(f"--device {device}: no NVIDIA GPU here ({here.title}); run bench on that GPU")
    return profile


def bench(cfg: BenchConfig) -> dict[str, Any]:
    from edgefuse import backends
    from edgefuse.progress import Progress

    if not cfg.engines:
        raise EdgefuseError("bench needs at least one engine or .onnx graph")
    profile = check_device(cfg.device)
    runners: list[tuple[str, Any]] = []
    for i, path in enumerate(cfg.engines):
        name = cfg.names[i] if i < len(cfg.names) else Path(path).name
        runners.append((name, backends.load(path, threads=cfg.threads)))
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
        if extra[name]:
            for key in extra[name][0]:
                row[key] = float(np.mean([e[key] for e in extra[name]]))
        rows.append(row)
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
