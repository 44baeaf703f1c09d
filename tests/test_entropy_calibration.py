"""Entropy calibration (``amax_entropy``): the vectorised prefix-sum KL picks exactly the threshold
the former per-candidate loop picked, on random histograms of every shape calibration meets and on
the activations of a small trained model. Equality is exact (``==`` on the returned amax)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from edgefuse.quantize.stats import (
    INT8_MAX,
    NUM_BINS,
    Histogram,
    _entropy_kl_exact,
    _entropy_kls,
    amax_entropy,
)

LEVELS = INT8_MAX + 1


def _reference_kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _reference_amax_entropy(hist: Histogram, levels: int = LEVELS) -> float:
    """The former implementation of ``amax_entropy`` (a Python loop over the candidates, KL bin by
    bin), kept verbatim to check that the vectorised one returns the same amax."""
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
        kl = _reference_kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return min(hist.amax, best_i * hist.width)


# --- histograms as calibration builds them -----------------------------------------------------

def _streamed(batches: list[np.ndarray]) -> Histogram:
    """A histogram filled batch by batch through ``Histogram.add`` (the range grows as in calibration)."""
    h = Histogram()
    for b in batches:
        h.add(b)
    return h


def _from_counts(counts: np.ndarray, width: float) -> Histogram:
    """A histogram from counts and a bin width, as ``ActivationStats.load`` rebuilds one."""
    counts = counts.astype(np.int64)  # (NUM_BINS,)
    used = np.nonzero(counts)[0]  # (nonzero,)
    top = (used[-1] + 0.5) * width if used.size else 0.0
    return Histogram(counts, width, -top, top)


def _relu(rng: np.random.Generator) -> Histogram:
    scale = 10.0 ** rng.uniform(-3, 3)
    n = int(rng.integers(1_000, 50_000))
    return _streamed([np.maximum(rng.standard_normal(n) * scale * rng.uniform(0.5, 2), 0.0) for _ in range(3)])


def _heavy_tail(rng: np.random.Generator) -> Histogram:
    scale = 10.0 ** rng.uniform(-2, 2)
    n = int(rng.integers(1_000, 50_000))
    kind = rng.integers(3)
    if kind == 0:
        x = rng.standard_t(float(rng.uniform(1.0, 4.0)), n)  # (n,)
    elif kind == 1:
        x = rng.lognormal(0.0, float(rng.uniform(0.5, 2.0)), n)  # (n,)
    else:
        x = rng.laplace(0.0, 1.0, n) * rng.exponential(1.0, n)  # (n,)
    return _streamed([scale * x])


def _sparse(rng: np.random.Generator) -> Histogram:
    counts = np.zeros(NUM_BINS, dtype=np.int64)  # (NUM_BINS,)
    hi = int(rng.integers(LEVELS + 1, NUM_BINS + 1))
    bins = rng.choice(hi, size=int(rng.integers(2, 60)), replace=False)  # (k,)
    counts[bins] = rng.integers(1, 10_000, bins.size)
    counts[hi - 1] = max(counts[hi - 1], 1)  # the last used bin sits past ``levels``
    if rng.random() < 0.5:
        counts[0] = rng.integers(0, 1_000_000)  # ReLU's exact zeros
    return _from_counts(counts, 10.0 ** rng.uniform(-4, 2))


def _narrow(rng: np.random.Generator) -> Histogram:
    """Every count in the first ``levels`` bins (or one past them): nothing or little to choose."""
    counts = np.zeros(NUM_BINS, dtype=np.int64)  # (NUM_BINS,)
    hi = int(rng.integers(1, LEVELS + 3))
    counts[:hi] = rng.integers(0, 1_000, hi)
    counts[hi - 1] += 1
    return _from_counts(counts, 10.0 ** rng.uniform(-3, 1))


def _outlier(rng: np.random.Generator) -> Histogram:
    n = int(rng.integers(1_000, 50_000))
    x = np.abs(rng.standard_normal(n))  # (n,)
    x[int(rng.integers(n))] = float(rng.uniform(50, 5_000))  # one value far beyond the rest
    return _streamed([x * 10.0 ** rng.uniform(-2, 2)])


def _smooth_counts(rng: np.random.Generator) -> Histogram:
    """Dense, smooth counts with a large total (big c log c prefix sums: the rounding stress case)."""
    hi = int(rng.integers(LEVELS + 1, NUM_BINS + 1))
    centres = np.arange(NUM_BINS) + 0.5  # (NUM_BINS,)
    shape = np.exp(-centres / (hi * rng.uniform(0.05, 0.5)))  # (NUM_BINS,)
    counts = np.floor(shape * 10.0 ** rng.uniform(3, 9)) * (centres < hi)  # (NUM_BINS,)
    counts[hi - 1] = max(counts[hi - 1], 1)
    return _from_counts(counts, 10.0 ** rng.uniform(-3, 1))


KINDS: dict[str, Callable[[np.random.Generator], Histogram]] = {
    "relu": _relu, "heavy_tail": _heavy_tail, "sparse": _sparse, "narrow": _narrow,
    "outlier": _outlier, "smooth_counts": _smooth_counts,
}


def _histograms(kind: str, n: int, seed: int) -> Iterator[Histogram]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield KINDS[kind](rng)


# --- tests -------------------------------------------------------------------------------------

def _check_random(kind: str, n: int, seed: int) -> None:
    for k, hist in enumerate(_histograms(kind, n, seed)):
        assert amax_entropy(hist) == _reference_amax_entropy(hist), f"{kind} histogram {k} (seed {seed})"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_entropy_matches_former_loop_on_random_histograms(kind: str) -> None:
    _check_random(kind, 10, sorted(KINDS).index(kind))  # 60 histograms in all (-m slow: 900 more)


@pytest.mark.slow  # ~2 min: the former loop is the slow part
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_entropy_matches_former_loop_on_many_random_histograms(kind: str) -> None:
    _check_random(kind, 150, 1000 + sorted(KINDS).index(kind))  # 900 histograms in all


def test_entropy_matches_former_loop_on_degenerate_histograms() -> None:
    cases = [
        Histogram(),  # nothing collected
        _streamed([np.zeros(1000)]),  # all exact zeros: width stays 0
        _from_counts(np.zeros(NUM_BINS), 0.1),  # all-zero counts with a width
        _from_counts(np.ones(NUM_BINS), 0.01),  # flat: every bin the same count
        _from_counts(np.tile([5, 0], NUM_BINS // 2), 1.0),  # alternating empty bins
        _from_counts(np.r_[np.zeros(NUM_BINS - 1), 7], 1e-3),  # one count in the last bin only
        _from_counts(np.r_[123_456, np.zeros(NUM_BINS - 2), 1], 1e-3),  # zeros and one far outlier
        _from_counts(np.r_[np.zeros(1000), np.ones(24), np.zeros(NUM_BINS - 1024)], 0.5),  # mass far out
    ]
    for n, hist in enumerate(cases):
        assert amax_entropy(hist) == _reference_amax_entropy(hist), f"case {n}"


@pytest.mark.parametrize("levels", [2, 16, 255, 1024])
def test_entropy_matches_former_loop_for_other_level_counts(levels: int) -> None:
    rng = np.random.default_rng(100 + levels)
    for n in range(6):
        hist = KINDS[sorted(KINDS)[n]](rng)
        assert amax_entropy(hist, levels) == _reference_amax_entropy(hist, levels), f"histogram {n}"


def test_prefix_sum_kl_equals_bin_by_bin_kl_for_every_candidate() -> None:
    rng = np.random.default_rng(7)
    for kind in sorted(KINDS):
        for hist in _histograms(kind, 2, int(rng.integers(1 << 30))):
            counts = hist.counts.astype(np.float64)
            counts[0] = counts[1]
            used = int(np.max(np.nonzero(counts)[0])) + 1 if counts.any() else 0
            if used <= LEVELS:
                continue
            cands = np.arange(LEVELS, used + 1)  # (candidates,)
            exact = [_entropy_kl_exact(counts, int(i), LEVELS) for i in cands]
            expected = np.array([np.inf if kl is None else kl for kl in exact])  # (candidates,)
            fast = _entropy_kls(counts, cands, LEVELS)  # (candidates,)
            assert np.array_equal(np.isinf(fast), np.isinf(expected)), kind
            finite = np.isfinite(expected)  # (candidates,)
            np.testing.assert_allclose(fast[finite], expected[finite], rtol=1e-9, atol=1e-11, err_msg=kind)


@pytest.mark.slow  # ~12 s; the random kinds above cover the histogram shapes
def test_entropy_matches_former_loop_on_model_activations() -> None:
    """Every layer output of the shipped small TSM (trained weights) on two smooth random clips."""
    torch = pytest.importorskip("torch")
    from edgefuse.models import create_model

    model = create_model("tsm_resnet18.synth_w025", pretrained=True)
    hists: dict[str, Histogram] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: object, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                hists.setdefault(name, Histogram()).add(output.detach().float().numpy())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if not list(m.children())]
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            coarse = torch.randn(2 * 8, 3, 14, 14, generator=gen)  # (N*T, 3, 14, 14)
            frames = torch.nn.functional.interpolate(coarse, size=(112, 112), mode="bilinear")  # (N*T, 3, 112, 112)
            model(frames.reshape(2, 8, 3, 112, 112))  # (N, T, 3, H, W) clips
    finally:
        for handle in handles:
            handle.remove()
    assert len(hists) > 20
    for name, hist in hists.items():
        assert amax_entropy(hist) == _reference_amax_entropy(hist), name
