"""Device figures for the estimate: GPU-only dense peaks per precision, the DLA's, DRAM bandwidth, GPU clock and L2
size, and the device class whose fitted constants apply.

A figure comes from the device profile when it carries it (``gpu_fp32_tflops``, ``gpu_fp16_tflops``,
``gpu_int8_tops``, ``dla_int8_tops``, ``memory_bandwidth_gbs``, ``gpu_clock_ghz``, ``l2_cache_mb``; read with
``getattr`` so profiles without the fields still load), else from the ``[device.<name>]`` table of
``published.toml`` (the figures the constants were fitted with), else from the profile's older fields where they are
GPU-only (``fp16_tflops``; ``int8_tops`` only on a device without DLA, where the module total is the GPU's). A figure
still missing is an error naming the device and the field, raised only when a layer needs it.
"""
from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6's): the same parser from PyPI
    import tomli as tomllib

PUBLISHED = Path(__file__).with_name("published.toml")

CLASSES = {
    "jetson_maxwell": "Jetson with a Maxwell GPU (Nano): FP16 on CUDA cores, no tensor cores, no INT8 path",
    "jetson_pascal": "Jetson with a Pascal GPU (TX2): FP16 on CUDA cores, no tensor cores",
    "jetson_volta": "Jetson with a Volta GPU and tensor cores (AGX Xavier, Xavier NX)",
    "jetson_ampere": "Jetson with an Ampere GPU (AGX Orin, Orin NX, Orin Nano)",
    "jetson_blackwell": "Jetson with a Blackwell GPU (Thor)",
    "desktop": "GPU on a GeForce-class die with GDDR memory (RTX 3090, RTX 4090; also T4, A10, A2, L4)",
    "datacenter": "GPU on an HBM compute die (A100, A30, H100)",
}
FIELDS = ("gpu_fp32_tflops", "gpu_fp16_tflops", "gpu_int8_tops", "dla_int8_tops", "memory_bandwidth_gbs",
          "gpu_clock_ghz", "l2_cache_mb")
_DATACENTER = re.compile(r"^(a100|a30|a800|h100|h200|h800|b100|b200|gb200|gh200)", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """``published.toml``: ``device`` (figures per device name) and ``point`` (published measurements)."""
    with PUBLISHED.open("rb") as f:
        return tomllib.load(f)


@dataclass(frozen=True)
class DeviceFigures:
    """What the estimate needs of a device; ``None`` where nothing gives the figure."""

    name: str
    device_class: str
    gpu_fp32_tflops: float | None = None
    gpu_fp16_tflops: float | None = None
    gpu_int8_tops: float | None = None
    dla_int8_tops: float | None = None  # all DLA cores together
    dla_cores: int = 0
    memory_bandwidth_gbs: float | None = None
    gpu_clock_ghz: float | None = None
    l2_cache_mb: float | None = None
    tf32: bool = False  # fp32 layers run as TF32 on tensor cores (sm_80 and later; TensorRT's default)
    int8_as: str | None = None  # a GPU without fast INT8 (the Nano): the precision its INT8 layers run in
    where: str = ""  # the profile file (or published.toml) the figures are for, for error messages
    sources: dict[str, str] = field(default_factory=dict)  # figure -> where it came from

    def missing(self, name: str, why: str) -> EdgefuseError:
        return EdgefuseError(f"{self.name}: no {name}, needed for {why}; add the device's published dense figure as "
                             f"{name} to {self.where}, or pass peaks")

    def gpu_rate(self, precision: str) -> float:
        """Dense peak of the GPU in operations per second for layers of ``precision`` (TF32 for fp32 layers where
        the GPU has it: half the FP16 tensor rate)."""
        if precision == "int8" and self.int8_as:
            precision = self.int8_as
        if precision == "int8":
            if self.gpu_int8_tops is None:
                raise self.missing("gpu_int8_tops", "the int8 layers (GPU only: DLA apart)")
            return self.gpu_int8_tops * 1e12
        if precision == "fp16":
            if self.gpu_fp16_tflops is None:
                raise self.missing("gpu_fp16_tflops", "the fp16 layers")
            return self.gpu_fp16_tflops * 1e12
        rates = [r for r in (self.gpu_fp32_tflops, self.gpu_fp16_tflops / 2 if self.tf32 and self.gpu_fp16_tflops
                             else None) if r]
        if not rates:
            raise self.missing("gpu_fp32_tflops", "the fp32 layers")
        return max(rates) * 1e12

    def dla_rate(self, precision: str) -> float:
        """Dense peak of one DLA core: INT8, or FP16 at half that (the DLA runs no FP32: FP32 layers run in FP16)."""
        if not self.dla_cores:
            raise EdgefuseError(f"{self.name} has no DLA; estimate without --dla")
        if self.dla_int8_tops is None:
            raise self.missing("dla_int8_tops", "a DLA estimate")
        per_core = self.dla_int8_tops * 1e12 / self.dla_cores
        return per_core if precision == "int8" else per_core / 2

    def bandwidth(self) -> float:
        if not self.memory_bandwidth_gbs:
            raise self.missing("memory_bandwidth_gbs", "the memory-bound time of every layer")
        return self.memory_bandwidth_gbs * 1e9


def device_class(profile: Any) -> str:
    """The class whose fitted constants apply to a profile: published.toml's for a known name; a Jetson by its GPU
    architecture (compute capability); a GPU is ``datacenter`` when its name is an HBM compute part (A100, A30, H100,
    H200, B200 ...), else ``desktop``."""
    entry = published().get("device", {}).get(profile.name)
    if entry and entry.get("class") in CLASSES:
        return str(entry["class"])
    if profile.kind == "jetson":
        arch = (profile.architecture or "").lower()
        for a in ("maxwell", "pascal", "volta", "ampere", "blackwell"):
            if a in arch:
                return f"jetson_{a}"
        major = int(str(profile.compute_capability or "0.0").split(".")[0])
        return "jetson_maxwell" if major < 6 else "jetson_pascal" if major < 7 else "jetson_volta" if major < 8 else "jetson_ampere" if major < 10 \
            else "jetson_blackwell"
    return "datacenter" if _DATACENTER.match(profile.name) else "desktop"


def _figure(name: str, profile: Any, fallback: dict[str, Any]) -> tuple[float | None, str]:
    value = getattr(profile, name, None)
    if value is not None:
        return float(value), f"{profile.path}"
    if fallback.get(name) is not None:
        return float(fallback[name]), f"published.toml [device.{profile.name}]"
    return None, ""


def figures_for_profile(profile: Any) -> DeviceFigures:
    """The figures of a device profile (see the module docstring for the order they are looked up in)."""
    fallback = published().get("device", {}).get(profile.name, {})
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        v, src = _figure(name, profile, fallback)
        if v is not None:
            values[name], sources[name] = v, src
    legacy = profile.kind == "gpu" or not profile.dla_cores  # module totals are GPU-only without a DLA
    if "gpu_fp16_tflops" not in values and profile.fp16_tflops is not None and legacy:
        values["gpu_fp16_tflops"], sources["gpu_fp16_tflops"] = profile.fp16_tflops, f"{profile.path} (fp16_tflops)"
    if "gpu_int8_tops" not in values and profile.int8_tops is not None and legacy:
        values["gpu_int8_tops"], sources["gpu_int8_tops"] = profile.int8_tops, f"{profile.path} (int8_tops)"
    cc = profile.compute_capability or fallback.get("compute_capability") or "0.0"
    slow = profile.slow("int8") if hasattr(profile, "slow") else None
    int8_as = slow.instead if slow is not None and "int8" not in profile.precisions else None
    dla_cores = int(profile.dla_cores or fallback.get("dla_cores", 0) or 0)
    return DeviceFigures(name=profile.name, device_class=device_class(profile), dla_cores=dla_cores,
                         tf32=float(cc) >= 8.0, int8_as=int8_as, where=str(profile.path), sources=sources, **values)


def figures_for_name(name: str) -> DeviceFigures:
    """The figures published.toml gives a device (those with published measurements but no profile)."""
    entry = published().get("device", {}).get(name)
    if entry is None:
        raise EdgefuseError(f"{PUBLISHED}: no [device.{name}] table")
    values = {k: float(entry[k]) for k in FIELDS if entry.get(k) is not None}
    return DeviceFigures(name=name, device_class=str(entry["class"]), dla_cores=int(entry.get("dla_cores", 0)),
                         tf32=float(entry.get("compute_capability", "0")) >= 8.0,
                         int8_as=None if "gpu_int8_tops" in values else "fp16", where=f"{PUBLISHED} [device.{name}]",
                         sources={k: "published.toml" for k in values}, **values)


def figures_for_device(name: str) -> DeviceFigures:
    """The figures of a device by name: its profile's (published.toml's filling what it lacks) where a profile of
    that name exists, else published.toml's alone."""
    from edgefuse.devices import get_device

    try:
        profile = get_device(name)
    except EdgefuseError:
        return figures_for_name(name)
    return figures_for_profile(profile) if profile.name == name else figures_for_name(name)
