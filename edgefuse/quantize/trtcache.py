"""TensorRT calibration caches (implicit INT8, TensorRT <= 10) written from edgefuse's statistics
and read back into Q/DQ scales.

Format, as ``IInt8EntropyCalibrator2`` writes it: a header line
``TRT-<version>-EntropyCalibration2`` (version as TensorRT encodes it: 8.6.1 -> 8601,
10.3.0 -> 100300), then one ``tensor_name: <hex>`` line per tensor, ``<hex>`` being the
big-endian IEEE-754 float32 of the tensor's scale (amax / 127).
"""
from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from pathlib import Path

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
DEFAULT_VERSION = "8.6.1"


def encode_version(version: str) -> str:
    """'8.6.1' -> '8601'; '10.3.0' -> '100300' (TensorRT's NV_TENSORRT_VERSION encoding)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return str(major * 1000 + minor * 100 + patch) if major < 10 else str(major * 10000 + minor * 100 + patch)


def write_cache(path: str | Path, amax: Mapping[str, float], version: str = DEFAULT_VERSION,
                algorithm: str = "EntropyCalibration2") -> Path:
    lines = [f"TRT-{encode_version(version)}-{algorithm}"]
    for name in sorted(amax):
        scale = float(amax[name]) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    dest = Path(path)
    with atomic_path(dest) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def read_cache(path: str | Path) -> dict[str, float]:
    """tensor -> amax (scale * 127) from a TensorRT calibration cache."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EdgefuseError(f"{p}: cannot read the calibration cache ({e}); give a TensorRT calibration cache "
                            "file") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not HEADER.match(lines[0]):
        raise EdgefuseError(f"{p}: not a TensorRT calibration cache (first line should be like "
                            "'TRT-8601-EntropyCalibration2')")
    out: dict[str, float] = {}
    for i, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(":")
        try:
            if not sep:
                raise ValueError("no ':'")
            scale = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
        except (ValueError, struct.error):
            raise EdgefuseError(f"{p}:{i}: expected 'tensor_name: <8 hex digits>', got {line[:80]!r}") from None
        out[name.strip()] = scale * 127.0
    return out
