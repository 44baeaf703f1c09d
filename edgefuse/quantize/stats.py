"""Activation statistics for calibration: one histogram of |x| per tensor, gathered by running
the FP32 graph in ONNX Runtime with the tensors exposed as outputs, and the thresholds
(amax) that each calibration method picks from them.

The histograms are exact and mergeable: ``NUM_BINS`` bins of equal width starting at 0; when a
value beyond the range arrives, the bin width doubles by summing neighbouring pairs (no
re-binning error), so one pass over the clips suffices and the counts can be saved, resumed and
reused by every method without running the clips again.

Methods (the amax each returns; the INT8 scale is amax / 127):

* ``minmax``: the largest |x| seen.
* ``percentile``: the given percentile of |x| (default 99.99).
* ``entropy``: TensorRT's ``EntropyCalibration2`` rule: the threshold minimising the KL
  divergence between the histogram clipped there and its 128-level quantized version (the
  zero bin counted like its neighbour, so ReLU's exact zeros do not decide the range).
* ``mse``: the threshold minimising the expected squared error of symmetric INT8 rounding and
  clipping over the histogram.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

NUM_BINS = 2048
METHODS = ("entropy", "percentile", "minmax", "mse")
INT8_MAX = 127


@dataclass
class Histogram:
    """Counts of |x| in ``NUM_BINS`` bins of width ``width`` from 0; plus min, max and count."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=np.int64))
    width: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    @property
    def amax(self) -> float:
        return max(abs(self.minimum), abs(self.maximum)) if self.maximum >= self.minimum else 0.0

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add_range(self, values: np.ndarray) -> None:
        """Only the min and max (tensors that need no histogram: FP16 range checks, TensorRT caches)."""
        if values.size:
            self.minimum = min(self.minimum, float(values.min()))
            self.maximum = max(self.maximum, float(values.max()))

    def add(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).ravel()
        if flat.size == 0:
            return
        if not np.all(np.isfinite(flat)):
            raise EdgefuseError("a calibration tensor holds NaN or Inf in FP32: the model itself overflows on "
                                "these clips; check the clips' preprocessing against the model's metadata")
        self.minimum = min(self.minimum, float(flat.min()))
        self.maximum = max(self.maximum, float(flat.max()))
        mags = np.abs(flat)
        top = float(mags.max())
        if self.width == 0.0 and top > 0.0:
            self.width = top / NUM_BINS * (1 + 1e-6)  # first non-zero batch sets the range
        while self.width > 0.0 and top >= self.width * NUM_BINS:
            self.counts = self.counts.reshape(NUM_BINS // 2, 2).sum(axis=1)  # (NUM_BINS/2,) pairs merged
            self.counts = np.concatenate([self.counts, np.zeros(NUM_BINS // 2, dtype=np.int64)])  # (NUM_BINS,)
            self.width *= 2.0
        if self.width == 0.0:
            self.counts[0] += mags.size
            return
        idx = np.minimum((mags / self.width).astype(np.int64), NUM_BINS - 1)
        self.counts += np.bincount(idx, minlength=NUM_BINS)


@dataclass
class ActivationStats:
    """Histograms per tensor name, and how many clips went into them."""

    histograms: dict[str, Histogram]
    clips: int = 0

    @classmethod
    def empty(cls, names: Iterable[str]) -> ActivationStats:
        return cls({name: Histogram() for name in names})

    def save(self, path: str | Path, info: dict[str, object] | None = None) -> Path:
        names = sorted(self.histograms)
        arrays: dict[str, Any] = {
            "names": np.array(names, dtype=str),
            "counts": np.stack([self.histograms[n].counts for n in names]) if names else np.zeros((0, NUM_BINS)),
            "width": np.array([self.histograms[n].width for n in names], dtype=np.float64),
            "minimum": np.array([self.histograms[n].minimum for n in names], dtype=np.float64),
            "maximum": np.array([self.histograms[n].maximum for n in names], dtype=np.float64),
            "clips": np.array(self.clips),
            "info": np.array(json.dumps(info or {}, sort_keys=True)),
        }
        dest = Path(path)
        with atomic_path(dest) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return dest

    @classmethod
    def load(cls, path: str | Path) -> ActivationStats:
        try:
            with np.load(path) as data:
                names = [str(n) for n in data["names"]]
                hists = {n: Histogram(data["counts"][i].astype(np.int64), float(data["width"][i]),
                                      float(data["minimum"][i]), float(data["maximum"][i]))
                         for i, n in enumerate(names)}
                return cls(hists, int(data["clips"]))
        except (OSError, KeyError, ValueError) as e:
            raise EdgefuseError(f"{path}: not a readable statistics cache ({e}); delete it to recollect") from None


# ---------------------------------------------------------------------------------------------
# Thresholds

def _centres(hist: Histogram) -> np.ndarray:
    return (np.arange(NUM_BINS) + 0.5) * hist.width  # (NUM_BINS,)


def amax_minmax(hist: Histogram) -> float:
    return hist.amax


def amax_percentile(hist: Histogram, percentile: float = 99.99) -> float:
    total = hist.count
    if total == 0 or hist.width == 0.0:
        return hist.amax
    cdf = np.cumsum(hist.counts) / total
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return min(hist.amax, (i + 1) * hist.width)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def amax_entropy(hist: Histogram, levels: int = INT8_MAX + 1) -> float:
    """TensorRT's entropy calibration over the histogram of |x| (starting at ``levels`` bins)."""
    counts = hist.counts.astype(np.float64)
    counts[0] = counts[1]  # the zeros ReLU makes would dominate every candidate; NVIDIA's calibrator does the same
    used = int(np.max(np.nonzero(counts)[0])) + 1 if counts.any() else 0
    if used <= levels or hist.width == 0.0:
        return hist.amax
    best_i, best_kl = used, np.inf
    # candidate thresholds at bin edges i; skip every other candidate on very wide histograms
    step = max(1, (used - levels) // 1024)
    for i in range(levels, used + 1, step):
        ref = counts[:i].copy()
        ref[i - 1] += counts[i:].sum()  # outliers clipped into the last bin
        src = counts[:i]
        sizes = np.full(levels, i // levels) + (np.arange(levels) < i % levels)  # (levels,) as array_split
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (levels,)
        nonzero = src > 0
        per_level = np.add.reduceat(src, starts) / np.maximum(np.add.reduceat(nonzero, starts), 1)  # (levels,)
        cand = np.repeat(per_level, sizes) * nonzero  # (i,) each level's mass spread over its non-empty bins
        if ref.sum() == 0 or cand.sum() == 0:
            continue
        p, q = ref / ref.sum(), cand / cand.sum()
        if np.any((p > 0) & (q == 0)):
            q = np.where(q == 0, 1e-12, q)
        kl = _kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return min(hist.amax, best_i * hist.width)


def amax_mse(hist: Histogram, candidates: int = 200) -> float:
    """The amax minimising sum(counts * (x - dequant(quant(x)))^2) over bin centres."""
    if hist.count == 0 or hist.width == 0.0:
        return hist.amax
    x = _centres(hist)
    w = hist.counts.astype(np.float64)
    best, best_err = hist.amax, np.inf
    for amax in np.linspace(hist.amax * 0.05, hist.amax, candidates):
        scale = amax / INT8_MAX
        q = np.clip(np.round(x / scale), 0, INT8_MAX) * scale
        err = float(np.sum(w * (x - q) ** 2))
        if err < best_err:
            best, best_err = float(amax), err
    return best


def thresholds(stats: ActivationStats, method: str, names: Sequence[str] | None = None,
               percentile: float = 99.99) -> dict[str, float]:
    """amax per tensor by ``method`` (a tensor that was always 0 gets a tiny amax so its scale is valid)."""
    if method not in METHODS:
        raise EdgefuseError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    out: dict[str, float] = {}
    for name in (names if names is not None else sorted(stats.histograms)):
        hist = stats.histograms.get(name)
        if hist is None:
            raise EdgefuseError(f"tensor {name}: no statistics were collected for it; delete the statistics cache")
        if method == "minmax":
            amax = amax_minmax(hist)
        elif method == "percentile":
            amax = amax_percentile(hist, percentile)
        elif method == "entropy":
            amax = amax_entropy(hist)
        else:
            amax = amax_mse(hist)
        out[name] = max(float(amax), 1e-8)
    return out
