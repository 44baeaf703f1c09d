"""The timing model and its fitted constants.

Each kernel takes ``max(2 x MACs / (eta_compute x peak), DRAM bytes / (eta_memory x bandwidth)) + overhead``:

* ``peak``: the GPU's dense peak for the kernel's precision (or one DLA core's), ``bandwidth`` DRAM's;
* ``eta_compute``, ``eta_memory``: the fraction of the peaks TensorRT's kernels reach, fitted per device class
  (``eta_memory`` above 1 is bandwidth caches add beyond DRAM's; ``eta_dla`` is the DLA's ``eta_compute``);
* DRAM bytes: a kernel's activations less what half the GPU's L2 holds (``max(0, act - L2 / 2)``), plus its weights
  unless all the graph's weights fit in half the L2 (they then stay there from one run to the next);
* ``overhead``: launch and the gap between dependent kernels, ``overhead_kcycles / GPU clock`` (thousands of GPU
  cycles per kernel, fitted per class; a GPU without a clock figure takes the class's reference clock).

``harness_ms`` is fitted apart: a fixed cost per call of a Python caller (torch2trt's timings include it), reported
beside the estimate but not added to it. The constants are fitted by :mod:`.fit` on ``published.toml`` and stored in
``fitted.toml``.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError
from edgefuse.estimate.device import DeviceFigures
from edgefuse.estimate.kernels import Kernel

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6's): the same parser from PyPI
    import tomli as tomllib

FITTED = Path(__file__).with_name("fitted.toml")
L2_SHARE = 0.5  # the part of the L2 taken to hold a kernel's working set (fixed, not fitted)


@dataclass(frozen=True)
class ClassConstants:
    """The fitted constants of one device class and what is known of their error."""

    eta_compute: float
    eta_memory: float
    overhead_kcycles: float
    reference_clock_ghz: float  # the clock of the device the overhead was fitted on (used when a GPU has none)
    harness_ms: float = 0.0
    eta_dla: float | None = None
    fitted_on: int = 0  # points
    borrowed_from: str | None = None  # no published measurement: the constants of this class
    heldout_points: int = 0
    heldout_max_abs_pct: float | None = None  # largest |error| of the held-out points of the class
    heldout_rms_pct: float | None = None
    fit_max_abs_pct: float | None = None

    def overhead_us(self, clock_ghz: float | None) -> float:
        return self.overhead_kcycles / (clock_ghz or self.reference_clock_ghz)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Fitted:
    constants: dict[str, ClassConstants]
    command: str = "python benchmarks/estimate_fit.py"
    notes: tuple[str, ...] = ()
    dla_heldout_max_abs_pct: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def load_fitted(path: Path | None = None) -> Fitted:
    """The constants in ``fitted.toml``."""
    p = Path(path) if path is not None else FITTED
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise EdgefuseError(f"{p}: cannot read the estimate's fitted constants ({e}); run "
                            "'python benchmarks/estimate_fit.py'") from None
    consts = {name: ClassConstants(**values) for name, values in raw.get("class", {}).items()}
    return Fitted(consts, raw.get("command", ""), tuple(raw.get("notes", [])), raw.get("dla_heldout_max_abs_pct"))


@dataclass(frozen=True)
class KernelTime:
    compute_s: float
    memory_s: float
    overhead_s: float
    dram_bytes: int

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s


def kernel_times(kernels: Sequence[Kernel], figures: DeviceFigures, consts: ClassConstants, target: str = "gpu",
                 rates: dict[str, float] | None = None, bandwidth: float | None = None) -> list[KernelTime]:
    """Time of each kernel on ``target`` (``gpu`` or ``dla``). ``rates`` (ops/s per precision) and ``bandwidth``
    (bytes/s) replace the figures' when given."""
    if target not in ("gpu", "dla"):
        raise EdgefuseError(f"target must be gpu or dla, not {target!r}")
    bw = bandwidth if bandwidth is not None else figures.bandwidth()
    l2 = (figures.l2_cache_mb or 0.0) * 1e6 * L2_SHARE if target == "gpu" else 0.0
    weights_resident = sum(k.weight_bytes for k in kernels) <= l2
    eta = consts.eta_compute if target == "gpu" else (consts.eta_dla or consts.eta_compute)
    overhead = consts.overhead_us(figures.gpu_clock_ghz) * 1e-6
    out = []
    cache: dict[str, float] = {}
    for k in kernels:
        prec = k.precision
        if k.macs and prec not in cache:  # a kernel without MACs needs no compute figure
            if rates is not None and prec in rates:
                cache[prec] = rates[prec]
            else:
                cache[prec] = figures.gpu_rate(prec) if target == "gpu" else figures.dla_rate(prec)
        dram = int(max(0.0, k.act_bytes - l2)) + (0 if weights_resident else k.weight_bytes)
        compute = 2.0 * k.macs / (eta * cache[prec]) if k.macs else 0.0
        memory = dram / (consts.eta_memory * bw) if dram else 0.0
        out.append(KernelTime(compute, memory, overhead, dram))
    return out


def predict_ms(kernels: Sequence[Kernel], figures: DeviceFigures, consts: ClassConstants, target: str = "gpu",
               harness: str | None = None) -> float:
    """Milliseconds of one run of ``kernels`` (plus the fitted harness cost for ``harness="torch2trt"``)."""
    total = sum(t.time_s for t in kernel_times(kernels, figures, consts, target)) * 1e3
    return total + (consts.harness_ms if harness == "torch2trt" else 0.0)
