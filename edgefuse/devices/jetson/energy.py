"""Energy and mean power over a window, integrated from sampled tegrastats power readings."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from edgefuse.devices.jetson.sampler import TimedSample
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)


def _power_points(samples: Sequence[TimedSample]) -> list[tuple[float, float]]:
    pts = sorted((s.t, float(s.sample.total_power_mw)) for s in samples if s.sample.total_power_mw is not None)
    if not pts:
        raise EdgefuseError("no tegrastats sample carries a power reading; tegrastats prints the power rails "
                            "only on boards with an INA power monitor (and on some only under sudo)")
    return pts


def _power_at(pts: list[tuple[float, float]], t: float) -> float:
    """Power at ``t``: linear between samples, held constant before the first and after the last."""
    if t <= pts[0][0]:
        return pts[0][1]
    if t >= pts[-1][0]:
        return pts[-1][1]
    lo, hi = 0, len(pts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, p0), (t1, p1) = pts[lo], pts[hi]
    return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)


def energy_mj(samples: Sequence[TimedSample], start: float, end: float) -> float:
    """Energy in mJ (mW x s) drawn between ``start`` and ``end`` (``time.monotonic()`` seconds).

    The trapezoid rule over each sample's instantaneous total power (:attr:`TegraSample.total_power_mw`), with the
    power interpolated linearly at the window's edges; outside the sampled span the nearest sample's power is held
    (and logged), so sample for a little longer than the workload runs.
    """
    if end < start:
        raise EdgefuseError(f"energy window ends ({end}) before it starts ({start}); pass start <= end")
    pts = _power_points(samples)
    uncovered = max(0.0, pts[0][0] - start) + max(0.0, end - pts[-1][0])
    if end > start and uncovered > 0:
        log.warning("tegrastats samples cover %.0f%% of the %.3f s window; holding the edge readings for the rest",
                    100 * (1 - min(uncovered, end - start) / (end - start)), end - start)
    inner = [p for p in pts if start < p[0] < end]
    knots = [(start, _power_at(pts, start)), *inner, (end, _power_at(pts, end))]
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(knots))


def mean_power_mw(samples: Sequence[TimedSample], start: float, end: float) -> float:
    """Mean total power in mW over ``[start, end]`` (the energy divided by the duration)."""
    if end <= start:
        raise EdgefuseError(f"power window is empty ({start} to {end}); pass start < end")
    return energy_mj(samples, start, end) / (end - start)


def energy_per_clip_mj(samples: Sequence[TimedSample], start: float, end: float, clips: int, *,
                       idle_mw: float = 0.0) -> float:
    """Energy per clip in mJ over a window in which ``clips`` clips ran; ``idle_mw`` (the board's idle power,
    measured beforehand) is subtracted over the window to count only what the workload added."""
    if isinstance(clips, bool) or not isinstance(clips, int) or clips <= 0:
        raise EdgefuseError(f"clips must be a positive whole number, not {clips!r}")
    return (energy_mj(samples, start, end) - idle_mw * (end - start)) / clips
