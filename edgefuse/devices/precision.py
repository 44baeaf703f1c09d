"""The precision to build with on a device: ``auto`` picks the best fast one; a slow one falls back or fails."""
from __future__ import annotations

import logging

from edgefuse.devices.profiles import PRECISIONS, DeviceProfile
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

AUTO_ORDER = ("int8", "fp16", "fp32")  # what --precision auto picks, best first
# what to suggest instead of a precision the device lacks, nearest first
INSTEAD = {"fp16": ("fp32",), "bf16": ("fp16", "fp32"), "int8": ("fp16", "fp32"), "fp8": ("int8", "fp16", "fp32"),
           "fp4": ("fp8", "int8", "fp16", "fp32")}
# what a precision needs from the hardware, for the error when a device lacks it
NEEDS = {
    "fp16": "fast fp16 arithmetic",
    "bf16": "bf16 tensor cores (Ampere, sm_80, or later)",
    "int8": "int8 tensor cores or DP4A (sm_61 or later; VNNI or Arm dot-product on CPUs)",
    "fp8": "fp8 tensor cores (Ada sm_89, Hopper sm_90 or Blackwell)",
    "fp4": "fp4 tensor cores (Blackwell, sm_100 or later)",
}

def check_precision(profile: DeviceProfile, precision: str) -> str:
    """The precision to build with on ``profile`` for the requested one (``auto``: the best fast one)."""
    p = precision.strip().lower()
    if p == "auto":
        chosen = next(c for c in AUTO_ORDER if c in profile.precisions)
        log.info("--precision auto: %s on %s", chosen, profile.name)
        return chosen
    if p not in PRECISIONS:
        raise EdgefuseError(f"--precision must be auto or one of {', '.join(PRECISIONS)}, not {precision!r}")
    if p in profile.precisions:
        return p
    slow = profile.slow(p)
    if slow is not None:
        if slow.fallback:
            log.warning("%s is not fast on %s (%s); using %s", p, profile.name, slow.reason, slow.instead)
            return slow.instead
        raise EdgefuseError(f"{p} is not fast on {profile.name}: {slow.reason}; use --precision {slow.instead}")
    best = next(c for c in INSTEAD[p] if c in profile.precisions)
    sm = profile.compute_capability and f"sm_{profile.compute_capability.replace('.', '')}"
    hw = ", ".join(x for x in (profile.architecture, sm) if x)
    raise EdgefuseError(f"{profile.name}{f' ({hw})' if hw else ''} does not support {p}, which needs {NEEDS[p]}; "
                        f"it has {', '.join(profile.precisions)}: use --precision {best}")
