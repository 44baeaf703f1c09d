"""What this CPU is, as far as an ONNX Runtime engine cares: physical cores (the default thread
count) and the instruction sets its kernels and offline-optimized layouts depend on."""
from __future__ import annotations

import os
import platform
from pathlib import Path

# the ISA features ONNX Runtime's MLAS kernels dispatch on (x86) or Arm's dot-product / fp16 / i8mm
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimddp", "asimdhp", "i8mm", "sve")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def physical_cores(cpuinfo: str | None = None) -> int:
    """Physical cores (hyper-threads excluded): ONNX Runtime's best intra-op thread count for
    compute-bound graphs. Falls back to the logical CPU count."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    cores = set()
    physical = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip() and core is not None:
            cores.add((physical, core))
            physical = core = None
    if core is not None:
        cores.add((physical, core))
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(len(cores), available)) if cores else max(1, available)


def cpu_identity(cpuinfo: str | None = None) -> dict[str, object]:
    """Model name, machine, and the ISA flags that matter for ONNX Runtime's kernels."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    name, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name") and value.strip():
            name = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    return {"name": name, "machine": platform.machine(), "isa": sorted(f for f in ISA_FLAGS if f in flags),
            "cores": physical_cores(text)}
