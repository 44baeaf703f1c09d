"""On a Jetson: the power mode and whether clocks are pinned, then each engine alone under tegrastats."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgefuse.bench.report import BenchRow, JetsonPower

if TYPE_CHECKING:
    from edgefuse.backends import Runner

log = logging.getLogger(__name__)


def jetson_power(rows: list[BenchRow], runners: Sequence[Runner], x: np.ndarray, batch: int,
                 seconds: float) -> list[BenchRow]:
    """``rows`` with the power mode, whether clocks are pinned (a warning when not), and each engine's mean
    power and energy per clip over ``seconds`` of running alone."""
    from edgefuse.devices.jetson import (
        TegrastatsSampler,
        clocks_pinned,
        energy_per_clip_mj,
        mean_power_mw,
        power_mode,
        total_source,
    )

    mode, pinned = power_mode(), clocks_pinned()
    if pinned is False:
        log.warning("jetson_clocks has not pinned the clocks: latency will vary; run 'sudo jetson_clocks' first")
    out = []
    for row, r in zip(rows, runners):
        with TegrastatsSampler(interval_ms=50) as ts:
            start, n = time.monotonic(), 0
            while time.monotonic() - start < seconds:
                r.run(x)
                n += batch
            end = time.monotonic()
        src = total_source(ts.samples, start, end)
        power = JetsonPower(mode[0] if mode else None, pinned, mean_power_mw(ts.samples, start, end),
                            energy_per_clip_mj(ts.samples, start, end, n), src.short() if src else None)
        out.append(dataclasses.replace(row, power=power))
    return out
