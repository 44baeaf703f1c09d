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


# Tie margin for the vectorised KLs: candidates whose prefix-sum KL is within this of the smallest
# are re-scored bin by bin (the former per-candidate arithmetic), so rounding never picks the winner.
_ENTROPY_TIE_TOL = 1e-9
_ENTROPY_SLICE = 1 << 20  # elements of one (candidates, levels) slice: bounds memory for large ``levels``


def _entropy_kl_exact(counts: np.ndarray, i: int, levels: int) -> float | None:
    """KL of candidate ``i`` computed bin by bin (the former loop body); None where it is skipped."""
    ref = counts[:i].copy()  # (i,)
    ref[i - 1] += counts[i:].sum()  # outliers clipped into the last bin
    src = counts[:i]  # (i,)
    sizes = np.full(levels, i // levels) + (np.arange(levels) < i % levels)  # (levels,) as array_split
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (levels,)
    nonzero = src > 0  # (i,)
    per_level = np.add.reduceat(src, starts) / np.maximum(np.add.reduceat(nonzero, starts), 1)  # (levels,)
    cand = np.repeat(per_level, sizes) * nonzero  # (i,) each level's mass spread over its non-empty bins
    if ref.sum() == 0 or cand.sum() == 0:
        return None
    p, q = ref / ref.sum(), cand / cand.sum()  # (i,), (i,)
    if np.any((p > 0) & (q == 0)):
        q = np.where(q == 0, 1e-12, q)  # (i,)
    return _kl(p, q)


def _entropy_kls(counts: np.ndarray, cands: np.ndarray, levels: int) -> np.ndarray:
    """KL of every candidate threshold in ``cands`` from prefix sums (inf where a candidate is skipped)."""
    c = counts  # (n,) float64, integral values
    pos = c > 0  # (n,)
    csum = np.concatenate([[0.0], np.cumsum(c)])  # (n + 1,) mass of bins [0, j)
    nzsum = np.concatenate([[0], np.cumsum(pos)])  # (n + 1,) non-empty bins in [0, j)
    clogc = np.where(pos, c * np.log(np.where(pos, c, 1.0)), 0.0)  # (n,) c log c, 0 for empty bins
    clsum = np.concatenate([[0.0], np.cumsum(clogc)])  # (n + 1,)
    total = csum[-1]
    kls = np.full(cands.shape, np.inf)  # (candidates,)
    valid = np.flatnonzero(csum[cands] > 0)  # (valid,) a candidate with no mass below it is skipped
    k = np.arange(levels + 1, dtype=np.int32)  # (levels + 1,) chunk index of each boundary
    per_slice = max(1, _ENTROPY_SLICE // (levels + 1))
    for lo in range(0, valid.size, per_slice):
        sel = valid[lo:lo + per_slice]  # (m,)
        i = cands[sel]  # (m,)
        base, extra = (i // levels).astype(np.int32), (i % levels).astype(np.int32)  # (m,), (m,)
        bounds = k[None, :] * base[:, None] + np.minimum(k[None, :], extra[:, None])  # (m, levels + 1) as array_split
        mass = np.diff(csum[bounds], axis=1)  # (m, levels) each chunk's mass
        nonempty = np.diff(nzsum[bounds], axis=1)  # (m, levels) each chunk's non-empty bins
        filled = mass > 0  # (m, levels)
        level = np.zeros_like(mass)  # (m, levels) log(m_k / z_k): log of q * Zq on the chunk's non-empty bins
        np.divide(mass, nonempty, out=level, where=filled)
        np.log(level, out=level, where=filled)
        last = c[i - 1]  # (m,) the last kept bin, without the outliers
        kept = csum[i]  # (m,) Zq: the candidate's total mass
        # bins j < i - 1: sum c_j/S * (log c_j - log S - log(m_k/z_k) + log Zq)
        cross = np.einsum("ij,ij->i", mass, level) - last * level[:, -1]  # (m,) sum_{j < i-1} c_j log(m_k/z_k)
        body = (clsum[i - 1] - cross) / total + csum[i - 1] / total * (np.log(kept) - np.log(total))  # (m,)
        # the last kept bin: its p carries the outliers; its q is 1e-12 where it is empty
        p_last = (last + (total - kept)) / total  # (m,)
        log_q_last = np.where(last > 0, level[:, -1] - np.log(kept), np.log(1e-12))  # (m,)
        tail = np.where(p_last > 0, p_last * (np.log(np.where(p_last > 0, p_last, 1.0)) - log_q_last), 0.0)  # (m,)
        kls[sel] = body + tail
    return kls


def amax_entropy(hist: Histogram, levels: int = INT8_MAX + 1) -> float:
    """TensorRT's entropy calibration over the histogram of |x| (starting at ``levels`` bins).

    Candidate thresholds are the bin edges ``i`` from ``levels`` to the last used bin. For each,
    p is the histogram cut at ``i`` with the outliers added to its last bin, and q merges the
    first ``i`` bins into ``levels`` chunks (sizes as ``np.array_split``) and spreads each chunk's
    mass evenly over its non-empty bins (an empty last bin gets q = 1e-12). KL(p || q) of every
    candidate comes from prefix sums of c, of (c > 0) and of c log c: with S the total, Zq the
    mass below ``i``, m_k and z_k each chunk's mass and non-empty bins,
    KL = sum_{j < i-1} c_j/S (log c_j - log S - log(m_k / z_k) + log Zq) + p_last log(p_last / q_last),
    which is O(levels) per candidate and vectorised as a (candidates, levels) array. Candidates
    whose KL is within rounding of the smallest are re-scored bin by bin, so the pick (the first
    smallest) is the one the bin-by-bin computation makes.
    """
    counts = hist.counts.astype(np.float64)
    counts[0] = counts[1]  # the zeros ReLU makes would dominate every candidate; NVIDIA's calibrator does the same
    used = int(np.max(np.nonzero(counts)[0])) + 1 if counts.any() else 0
    if used <= levels or hist.width == 0.0:
        return hist.amax
    # candidate thresholds at bin edges i; skip every other candidate on very wide histograms
    step = max(1, (used - levels) // 1024)
    cands = np.arange(levels, used + 1, step)  # (candidates,)
    kls = _entropy_kls(counts, cands, levels)  # (candidates,)
    best_i = used
    if np.isfinite(kls).any():
        low = float(np.min(kls))
        near = cands[kls <= low + _ENTROPY_TIE_TOL * (1.0 + abs(low))]  # (near,) ascending
        if near.size == 1:
            best_i = int(near[0])
        else:
            best_kl = np.inf
            for i in near:
                kl = _entropy_kl_exact(counts, int(i), levels)
                if kl is not None and kl < best_kl:
                    best_kl, best_i = kl, int(i)
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
