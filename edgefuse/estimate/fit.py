"""Fitting the timing model's constants (:mod:`.model`) on the published latencies of ``published.toml``.

Classes are fitted in groups: ``jetson_volta`` and ``jetson_ampere`` share their efficiencies, harness cost and DLA
efficiency (one fitted point on AGX Orin cannot fix three constants; the Jetson tensor-core GPUs run the same
TensorRT kernels on the same LPDDR memory) and each keep their own overhead; ``jetson_maxwell``, ``desktop`` and
``datacenter`` are fitted alone; ``jetson_blackwell`` and ``jetson_pascal`` have no published measurement and borrow
``jetson_ampere``'s and ``jetson_maxwell``'s.

The fit minimises the sum of squared relative errors of the points not held out. The overheads and the harness cost
enter linearly and are solved exactly (non-negative least squares) for every candidate of the efficiencies, which are
searched on a logarithmic grid (``eta_compute`` and ``eta_dla`` in 0.02-1, ``eta_memory`` in 0.2-4) refined three
times around the best: deterministic, so the same data give the same constants (``benchmarks/estimate_fit.py
--check``, tests/test_estimate_fit.py).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.estimate.device import DeviceFigures, figures_for_device, published
from edgefuse.estimate.kernels import Kernel
from edgefuse.estimate.model import FITTED, L2_SHARE, ClassConstants, Fitted, load_fitted

GROUPS: dict[str, tuple[str, ...]] = {
    "jetson_maxwell": ("jetson_maxwell",),
    "jetson_tensor_cores": ("jetson_volta", "jetson_ampere"),
    "desktop": ("desktop",),
    "datacenter": ("datacenter",),
}
BORROWED = {"jetson_blackwell": "jetson_ampere", "jetson_pascal": "jetson_maxwell"}
BOUNDS = {"eta_compute": (0.02, 1.0), "eta_memory": (0.2, 4.0), "eta_dla": (0.02, 1.0)}
GRID = 40
REFINE = 3

__all__ = ["FITTED", "FitResult", "Point", "compare_constants", "fit", "load_fitted", "load_points", "markdown_table",
           "write_fitted"]


@dataclass(frozen=True)
class Point:
    device: str
    graph: str  # model/variant, a key of the kernel tables
    batch: int
    latency_ms: float
    harness: str  # mlperf | torch2trt
    target: str  # gpu | dla
    held_out: bool
    source: str
    url: str

    @property
    def label(self) -> str:
        model, variant = self.graph.split("/")
        return f"{model} {variant}{' on DLA' if self.target == 'dla' else ''}, batch {self.batch}"


def load_points(data: Mapping[str, Any] | None = None) -> list[Point]:
    """The ``[[point]]`` entries of published.toml (latency from ``latency_ms``, or ``batch / throughput``)."""
    raw = data if data is not None else published()
    points = []
    for p in raw.get("point", []):
        batch = int(p.get("batch", 1))
        ms = float(p["latency_ms"]) if "latency_ms" in p else 1000.0 * batch / float(p["throughput"])
        points.append(Point(p["device"], p["graph"], batch, ms, p.get("harness", "mlperf"), p.get("target", "gpu"),
                            bool(p.get("held_out", False)), p.get("source", ""), p.get("url", "")))
    return points


@dataclass
class _Prepared:
    point: Point
    cls: str
    compute: np.ndarray  # seconds per kernel at efficiency 1
    memory: np.ndarray  # seconds per kernel at efficiency 1
    overhead_per_kcycle: float  # milliseconds the run's kernels take per kcycle of overhead


def _prepare(point: Point, tables: Mapping[str, Sequence[Sequence[Any]]],
             figures: DeviceFigures) -> _Prepared:
    kernels = [Kernel.from_row(r).scaled(point.batch) for r in tables[point.graph]]
    bw = figures.bandwidth()
    l2 = (figures.l2_cache_mb or 0.0) * 1e6 * L2_SHARE if point.target == "gpu" else 0.0
    resident = sum(k.weight_bytes for k in kernels) <= l2
    compute, memory = [], []
    for k in kernels:
        if k.macs:
            rate = figures.gpu_rate(k.precision) if point.target == "gpu" else figures.dla_rate(k.precision)
        compute.append(2.0 * k.macs / rate if k.macs else 0.0)
        memory.append((max(0.0, k.act_bytes - l2) + (0 if resident else k.weight_bytes)) / bw)
    clock = figures.gpu_clock_ghz or 1.0
    return _Prepared(point, figures.device_class, np.array(compute), np.array(memory), len(kernels) / clock / 1e3)


def _bodies(prep: Sequence[_Prepared], ec: np.ndarray, em: np.ndarray, ed: np.ndarray) -> np.ndarray:
    """Milliseconds of each point's kernel bodies for every (ec, em, ed) candidate: shape (points, candidates)."""
    out = np.empty((len(prep), len(ec)))
    for i, p in enumerate(prep):
        eta = ed if p.point.target == "dla" else ec
        out[i] = np.maximum(p.compute[None, :] / eta[:, None], p.memory[None, :] / em[:, None]).sum(axis=1) * 1e3
    return out


def _nnls(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min ||a x - b_j||^2 with x >= 0 for every column b_j of ``b``, by trying every subset of free variables (``a``
    has a few columns and is the same for all candidates, so each subset is one pseudo-inverse): (x, residual)."""
    n, m = a.shape[1], b.shape[1]
    best_x, best_r = np.zeros((n, m)), (b * b).sum(axis=0)
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sub = a[:, cols]
            x_sub = np.linalg.pinv(sub) @ b
            r = ((sub @ x_sub - b) ** 2).sum(axis=0)
            better = (x_sub >= 0).all(axis=0) & (r < best_r - 1e-15)
            if better.any():
                best_r = np.where(better, r, best_r)
                x = np.zeros((n, m))
                x[list(cols)] = x_sub
                best_x = np.where(better[None, :], x, best_x)
    return best_x, best_r


def _fit_group(classes: tuple[str, ...], prep: Sequence[_Prepared]) -> dict[str, Any]:
    fit = [p for p in prep if not p.point.held_out]
    y = np.array([p.point.latency_ms for p in fit])
    # linear unknowns: one overhead per class with fitted points, and the harness cost if torch2trt points are fitted
    linear = [c for c in classes if any(p.cls == c for p in fit)]
    harness = any(p.point.harness == "torch2trt" for p in fit)
    cols = linear + (["harness"] if harness else [])
    x_lin = np.zeros((len(fit), len(cols)))
    for i, p in enumerate(fit):
        if p.cls in linear:
            x_lin[i, linear.index(p.cls)] = p.overhead_per_kcycle
        if harness and p.point.harness == "torch2trt":
            x_lin[i, -1] = 1.0
    a = x_lin / y[:, None]
    has_dla = any(p.point.target == "dla" for p in fit)

    def solve(ec: np.ndarray, em: np.ndarray, ed: np.ndarray) -> tuple[int, np.ndarray, float]:
        bodies = _bodies(fit, ec, em, ed)
        x, r = _nnls(a, 1.0 - bodies / y[:, None])
        j = int(np.argmin(r))  # the first of equal minima: deterministic
        return j, x[:, j], float(r[j])

    def axis(name: str, centre: float | None = None, step: float | None = None) -> np.ndarray:
        lo, hi = BOUNDS[name]
        if centre is None:
            return np.geomspace(lo, hi, GRID)
        assert step is not None
        return np.clip(centre * np.exp(np.linspace(-step, step, 9)), lo, hi)

    ec_ax, em_ax = axis("eta_compute"), axis("eta_memory")
    ed_ax = axis("eta_dla") if has_dla else np.array([1.0])
    step = math.log(BOUNDS["eta_memory"][1] / BOUNDS["eta_memory"][0]) / (GRID - 1)
    for round_ in range(REFINE + 1):
        grid = np.array(list(itertools.product(ec_ax, em_ax, ed_ax)))
        j, x, r = solve(grid[:, 0], grid[:, 1], grid[:, 2])
        ec, em, ed = (float(v) for v in grid[j])
        step = step * (1.0 if round_ == 0 else 0.25)
        ec_ax, em_ax = axis("eta_compute", ec, 2 * step), axis("eta_memory", em, 2 * step)
        ed_ax = axis("eta_dla", ed, 2 * step) if has_dla else np.array([1.0])
    return {"eta_compute": ec, "eta_memory": em, "eta_dla": ed if has_dla else None,
            "overheads": {c: float(x[i]) for i, c in enumerate(linear)},
            "harness_ms": float(x[-1]) if harness else 0.0, "rms_rel": math.sqrt(r / max(len(fit), 1))}


@dataclass(frozen=True)
class Evaluated:
    point: Point
    device_class: str
    estimate_ms: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.estimate_ms - self.point.latency_ms) / self.point.latency_ms


@dataclass(frozen=True)
class FitResult:
    constants: dict[str, ClassConstants]
    evaluated: tuple[Evaluated, ...]
    dla_heldout_max_abs_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"constants": {c: k.to_dict() for c, k in self.constants.items()},
                "dla_heldout_max_abs_pct": self.dla_heldout_max_abs_pct,
                "points": [{"device": e.point.device, "class": e.device_class, "graph": e.point.graph,
                            "batch": e.point.batch, "target": e.point.target, "harness": e.point.harness,
                            "held_out": e.point.held_out, "published_ms": e.point.latency_ms,
                            "estimate_ms": round(e.estimate_ms, 6), "error_pct": round(e.error_pct, 2),
                            "source": e.point.source, "url": e.point.url} for e in self.evaluated]}


def _stats(errors: Sequence[float]) -> tuple[float | None, float | None]:
    if not errors:
        return None, None
    return round(max(abs(e) for e in errors), 1), round(math.sqrt(sum(e * e for e in errors) / len(errors)), 1)


def fit(points: Sequence[Point], tables: Mapping[str, Sequence[Sequence[Any]]]) -> FitResult:
    """Fit every group on its points not held out; evaluate every point."""
    figures = {p.device: figures_for_device(p.device) for p in points}
    prep = [_prepare(p, tables, figures[p.device]) for p in points]
    constants: dict[str, ClassConstants] = {}
    for classes in GROUPS.values():
        group = [p for p in prep if p.cls in classes]
        if not any(not p.point.held_out for p in group):
            continue
        g = _fit_group(classes, group)
        for c in classes:
            if c not in g["overheads"]:
                continue
            ref = next(figures[p.point.device].gpu_clock_ghz for p in group if p.cls == c and not p.point.held_out)
            constants[c] = ClassConstants(
                eta_compute=_round(g["eta_compute"]), eta_memory=_round(g["eta_memory"]),
                overhead_kcycles=_round(g["overheads"][c]), reference_clock_ghz=float(ref or 1.0),
                harness_ms=_round(g["harness_ms"]), eta_dla=_round(g["eta_dla"]) if g["eta_dla"] else None)
    for c, source in BORROWED.items():
        if source in constants:
            constants[c] = ClassConstants(**{**constants[source].__dict__, "borrowed_from": source})
    evaluated = []
    for p in prep:
        k = constants[p.cls]
        eta = (k.eta_dla or k.eta_compute) if p.point.target == "dla" else k.eta_compute
        body = float(np.maximum(p.compute / eta, p.memory / k.eta_memory).sum()) * 1e3
        ms = body + p.overhead_per_kcycle * k.overhead_kcycles + (k.harness_ms if p.point.harness == "torch2trt" else 0)
        evaluated.append(Evaluated(p.point, p.cls, ms))
    final: dict[str, ClassConstants] = {}
    for c, k in constants.items():
        own = [e for e in evaluated if e.device_class == c and e.point.target == "gpu"]
        held = [e.error_pct for e in own if e.point.held_out]
        fitted = [e.error_pct for e in own if not e.point.held_out]
        hmax, hrms = _stats(held)
        fmax, _ = _stats(fitted)
        final[c] = ClassConstants(**{**k.__dict__, "fitted_on": len(fitted), "heldout_points": len(held),
                                     "heldout_max_abs_pct": hmax, "heldout_rms_pct": hrms, "fit_max_abs_pct": fmax})
    dla = [e.error_pct for e in evaluated if e.point.target == "dla" and e.point.held_out]
    return FitResult(final, tuple(evaluated), _stats(dla)[0])


def _round(v: float) -> float:
    return float(f"{v:.5g}")


def write_fitted(result: FitResult, path: Path | None = None) -> Path:
    """Write the constants as fitted.toml (what ``estimate`` reads)."""
    p = Path(path) if path is not None else FITTED
    lines = ["# Written by `python benchmarks/estimate_fit.py` (edgefuse/estimate/fit.py) from published.toml; do not",
             "# edit by hand. Per device class: eta_compute / eta_memory (fraction of the dense peak / of DRAM bandwidth",
             "# the kernels reach), overhead_kcycles (thousands of GPU cycles per kernel), reference_clock_ghz (the",
             "# clock of the device it was fitted on), harness_ms (a Python caller's cost per call, not added to",
             "# estimates), eta_dla; heldout_* the errors on the held-out points (the uncertainty estimates print).",
             'command = "python benchmarks/estimate_fit.py"']
    if result.dla_heldout_max_abs_pct is not None:
        lines.append(f"dla_heldout_max_abs_pct = {result.dla_heldout_max_abs_pct}")
    for name, k in result.constants.items():
        lines.append(f"\n[class.{name}]")
        for key, value in k.to_dict().items():
            lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_fitted.cache_clear()
    return p


def compare_constants(new: Mapping[str, ClassConstants], recorded: Mapping[str, ClassConstants],
                      rel: float = 1e-3) -> list[str]:
    """The differences between two sets of constants (empty when they agree to ``rel``)."""
    out = []
    for c in sorted(set(new) | set(recorded)):
        if c not in new or c not in recorded:
            out.append(f"{c}: {'only recorded' if c in recorded else 'not recorded'}")
            continue
        a, b = new[c].to_dict(), recorded[c].to_dict()
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            same = x == y or (isinstance(x, (int, float)) and isinstance(y, (int, float))
                              and math.isclose(x, y, rel_tol=rel, abs_tol=1e-9))
            if not same:
                out.append(f"{c}.{key}: fitted {x}, recorded {y}")
    return out


def markdown_table(result: FitResult) -> str:
    """The tables of docs/estimates.md: constants per class, then fitted and held-out points."""
    head = [("| class | eta_compute | eta_memory | overhead (kcycles / kernel) | overhead at ref. clock (us) | "
             "harness (ms) | eta_dla | points fitted | held out | held-out max abs error |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c, k in result.constants.items():
        head.append(f"| {c}{' (from ' + k.borrowed_from + ')' if k.borrowed_from else ''} | {k.eta_compute:.3g} | "
                    f"{k.eta_memory:.3g} | {k.overhead_kcycles:.3g} | "
                    f"{k.overhead_us(None):.3g} at {k.reference_clock_ghz:g} GHz | {k.harness_ms:.3g} | "
                    f"{'-' if k.eta_dla is None else f'{k.eta_dla:.3g}'} | {k.fitted_on} | {k.heldout_points} | "
                    f"{'-' if k.heldout_max_abs_pct is None else f'{k.heldout_max_abs_pct:.1f}%'} |")
    rows = ["| device | class | graph | published (ms) | estimate (ms) | error | source |",
            "| --- | --- | --- | --- | --- | --- | --- |"]

    def table(held: bool) -> list[str]:
        out = list(rows)
        for e in result.evaluated:
            if e.point.held_out != held:
                continue
            out.append(f"| {e.point.device} | {e.device_class} | {e.point.label} | {e.point.latency_ms:.4g} | "
                       f"{e.estimate_ms:.4g} | {e.error_pct:+.1f}% | [{e.point.source}]({e.point.url}) |")
        return out

    return "\n".join(["### Constants", "", *head, "", "### Fitted points", "", *table(False), "",
                      "### Held-out points (not fitted on)", "", *table(True)])


def recorded() -> Fitted:
    return load_fitted()
