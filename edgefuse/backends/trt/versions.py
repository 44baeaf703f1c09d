"""Which TensorRT API a version has, as pure functions of the version string (no TensorRT here).

Every fact below is read from the name lists in ``tests/data/trt_names/`` (NVIDIA's bindings wheels for
8.6.1, 10.3.0, 10.16.1.11, 11.4.0.106; the bindings source of github.com/NVIDIA/TensorRT at tags 8.0.1,
8.2.1, 8.4.1, 8.5.2 and v10.0.1 for the rest) and checked there by ``tests/test_trt_versions.py``:

==============================  =====================================================
``max_workspace_size``          8.0 - 8.6 (removed in 10.0)
``set_memory_pool_limit``       8.4 and later
``build_engine``                8.0 - 8.6; ``build_serialized_network`` in every version (used everywhere)
``EXPLICIT_BATCH``              8.0 - 10.x (the ONNX parser needs it before 10; a no-op in 10, gone in 11)
``STRONGLY_TYPED``              10.0 and later (11.x: every network is strongly typed, the flag is ignored)
``BuilderFlag.FP16``            8.0 - 10.x (11.x: precision from the graph's types only)
``int8_calibrator``             8.0 - 10.x (implicit INT8 from a calibration cache; gone in 11)
parser ``node_name``            10.0 and later (8.x errors give ``node()`` and ``desc()`` only)
tensor-name API                 8.5 and later (``execute_async_v3``, ``set_input_shape``)
``device_memory_size_v2``       10.1 and later
==============================  =====================================================

A function of the TensorRT adapter whose body uses names of some versions only ends with a suffix naming
them (``_trt80_82``, ``_trt84plus``, ``_trt8``, ``_trt10plus``, ...); :func:`suffix_covers` reads that
suffix, and the tests check each such function against the name lists of exactly those versions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgefuse.errors import EdgefuseError

SUPPORTED = "TensorRT 8.0, 8.2, 8.4, 8.5, 8.6, 10.x or 11.x"
# The releases of 8.x that exist (8.1 and 8.3 were never released).
_MINORS_8 = (0, 2, 4, 5, 6)


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def key(self) -> tuple[int, int]:
        return (self.major, self.minor)


def parse_version(version: str) -> TrtVersion:
    """'8.5.2.2' -> TrtVersion(8, 5, 2); a version edgefuse does not support is one error with the fix."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        raise EdgefuseError(f"TensorRT version {version!r} is not a version number; check 'python3 -c \"import "
                            "tensorrt; print(tensorrt.__version__)\"'")
    v = TrtVersion(int(m[1]), int(m[2]), int(m[3] or 0))
    if v.major < 8:
        raise EdgefuseError(f"TensorRT {version} is not supported: edgefuse builds with {SUPPORTED}; JetPack 4.5 "
                            "and older ship TensorRT 7: flash JetPack 4.6 or later (TensorRT 8.0.1+)")
    if v.major == 8 and v.minor not in _MINORS_8 or v.major == 9:
        raise EdgefuseError(f"TensorRT {version} is not supported: edgefuse builds with {SUPPORTED} (9.x was an "
                            "LLM-only early-access release); install one of those")
    if v.major > 11:
        raise EdgefuseError(f"TensorRT {version} is newer than edgefuse knows ({SUPPORTED}); its API has not been "
                            "checked: use TensorRT 11.x or update edgefuse")
    return v


@dataclass(frozen=True)
class BuildApi:
    """What a build does on one TensorRT version: each field names the adapter function to call (its suffix
    says which versions it serves) or a plain fact."""

    version: TrtVersion
    workspace: str  # adapter function setting the workspace limit
    parser_errors: str  # adapter function reading the ONNX parser's errors
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH needed (8.x)
    typing: str  # "weak" (8.x: flags choose precision) | "flag" (10.x: STRONGLY_TYPED on request) | "strong" (11.x)
    implicit_int8: bool  # a calibrator (int8_calibrator) can read a calibration cache
    calibrator: str | None  # adapter function making the cache-reading calibrator
    tensor_api: bool  # execute_async_v3 / set_input_shape (8.5+); else bindings and execute_async_v2
    device_memory_v2: bool  # ICudaEngine.device_memory_size_v2 (10.1+)


def build_api(version: str | TrtVersion) -> BuildApi:
    v = version if isinstance(version, TrtVersion) else parse_version(version)
    eight = v.major == 8
    return BuildApi(
        version=v,
        workspace="_set_workspace_trt80_82" if v.key < (8, 4) else "_set_workspace_trt84plus",
        parser_errors="_parser_errors_trt8" if eight else "_parser_errors_trt10plus",
        explicit_batch=eight,
        typing="weak" if eight else "flag" if v.major == 10 else "strong",
        implicit_int8=v.major <= 10,
        calibrator="_cache_calibrator_trt8_10" if v.major <= 10 else None,
        tensor_api=v.key >= (8, 5),
        device_memory_v2=v.key >= (10, 1),
    )


# ---------------------------------------------------------------------------------------------
# Version suffixes of function names

_SUFFIX = re.compile(r"_trt(\d+)(?:_(\d+)|(plus))?$")


def _token(tok: str) -> tuple[int, int | None]:
    """'8' -> (8, None); '84' -> (8, 4); '10' -> (10, None); '101' -> (10, 1); '11' -> (11, None)."""
    if tok.startswith("1") and len(tok) >= 2:
        return int(tok[:2]), int(tok[2:]) if tok[2:] else None
    return int(tok[0]), int(tok[1:]) if tok[1:] else None


def suffix_covers(function: str, version: str | TrtVersion) -> bool:
    """Whether a function named with a version suffix serves ``version``: ``_trt86`` 8.6 only, ``_trt8`` every
    8.x, ``_trt80_84`` 8.0 to 8.4, ``_trt101plus`` 10.1 and later, ``_trt10plus`` 10.x and 11.x; a function
    without a suffix serves every version."""
    v = version if isinstance(version, TrtVersion) else parse_version(version)
    m = _SUFFIX.search(function)
    if not m:
        return True
    lo_major, lo_minor = _token(m[1])
    low = (lo_major, lo_minor or 0)
    if m[3]:
        return v.key >= low
    hi_major, hi_minor = _token(m[2]) if m[2] else (lo_major, lo_minor)
    high = (hi_major, hi_minor if hi_minor is not None else 10**6)
    return low <= v.key <= high


def has_suffix(function: str) -> bool:
    return _SUFFIX.search(function) is not None
