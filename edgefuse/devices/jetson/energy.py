"""Energy and mean power over a window, integrated from sampled tegrastats power readings, and what that power is the
total of (:func:`total_source`: the input rail, or a partial sum of rails; docs/power.md)."""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edgefuse.devices.jetson.sampler import TimedSample
from edgefuse.devices.jetson.tegrastats import RAIL_RULES
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TotalSource:
    """Where the total power of a window's samples came from.

    ``rail`` is the input rail or ``"sum(A,B,...)"`` (several joined by ``" / "`` when the samples disagree), ``rule``
    the :class:`~edgefuse.devices.jetson.tegrastats.RailRule` key, ``partial`` True when any sample's total is a
    partial sum (no input rail on the line), ``mixed`` True when partial and input-rail totals were mixed, and
    ``negative_rails`` the rails that read below zero in some sample (never summed) with how many samples did.
    """

    rail: str
    rule: str | None
    partial: bool
    mixed: bool
    negative_rails: tuple[tuple[str, int], ...]
    samples: int

    def short(self) -> str:
        """A short label for a report column: ``"VIN"``, or ``"partial sum(A,B,...)"``, with ``" (mixed)"`` and the
        rails below zero appended when they apply."""
        text = f"partial {self.rail}" if self.partial else self.rail
        if self.mixed:
            text += " (mixed)"
        if self.negative_rails:
            text += " (below zero: " + ",".join(n for n, _ in self.negative_rails) + ")"
        return text

    def describe(self) -> str:
        """One line for the user: the total's source, and why a partial total is not comparable."""
        rule = next((r for r in RAIL_RULES if r.key == self.rule), None)
        if not self.partial:
            scope = f", {rule.input_scope}" if rule is not None else ""
            text = f"total from {self.rail}{scope}"
        else:
            text = (f"PARTIAL total {self.rail}: no input rail on these tegrastats lines, so this leaves out what no "
                    f"monitor measures and is not comparable with a board or image that prints one")
        if self.mixed:
            text += "; WARNING: partial and input-rail totals mixed in one window (the input rail came and went)"
        if self.negative_rails:
            text += "; rails below zero (not summed): " + ", ".join(f"{n} in {k} samples"
                                                                   for n, k in self.negative_rails)
        return text


def total_source(samples: Sequence[TimedSample], start: float | None = None,
                 end: float | None = None) -> TotalSource | None:
    """What the total power of the samples in ``[start, end]`` (all when not given) came from; None when no sample
    carries a total."""
    picked = [s.sample for s in samples if s.sample.total_power_mw is not None and s.sample.power_rail is not None
              and (start is None or s.t >= start) and (end is None or s.t <= end)]
    if not picked:
        return None
    rails = list(dict.fromkeys(s.power_rail for s in picked if s.power_rail is not None))
    rules = list(dict.fromkeys(s.power_rule for s in picked))
    partial = {s.power_partial for s in picked}
    negative = Counter(n for s in samples for n in s.sample.negative_rails
                       if (start is None or s.t >= start) and (end is None or s.t <= end))
    return TotalSource(" / ".join(rails), rules[0] if len(rules) == 1 else None, True in partial, len(partial) > 1,
                       tuple(sorted(negative.items())), len(picked))


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
    measured beforehand) is subtracted over the window to count only what the workload added. Logs where the total
    came from (:func:`total_source`), as a warning when it is partial, mixed or had rails below zero."""
    if isinstance(clips, bool) or not isinstance(clips, int) or clips <= 0:
        raise EdgefuseError(f"clips must be a positive whole number, not {clips!r}")
    energy = energy_mj(samples, start, end)
    source = total_source(samples, start, end) or total_source(samples)
    if source is not None and (source.partial or source.mixed or source.negative_rails):
        log.warning("energy per clip: %s", source.describe())
    elif source is not None:
        log.info("energy per clip: %s", source.describe())
    return (energy - idle_mw * (end - start)) / clips
