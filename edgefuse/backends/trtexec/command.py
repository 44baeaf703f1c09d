"""trtexec command lines, per TensorRT version (pure: no process is started here).

Which flag each version takes was read from NVIDIA/TensorRT ``samples/common/sampleOptions.cpp`` at the release
tags 8.0.1, 8.2.1, 8.4.1, 8.5.2, v8.6.1, v10.0.1 .. v10.16, v11.0, v11.1 (the table is in
``tests/data/trtexec/SOURCES.md``):

- workspace: ``--workspace=N`` (MiB) on 8.0-8.3; ``--memPoolSize=workspace:N`` (MiB) on 8.4-10.0;
  ``--memPoolSize=workspace:NM`` on 10.1+ (unit suffixes from 10.1; ``--workspace`` is gone in 10.0);
- ``--explicitBatch`` on 8.0 only (8.2-8.6 ignore it with a warning, 10.0 refuses it);
- ``--buildOnly`` up to 8.5, ``--skipInference`` from 8.6;
- ``--fp16`` / ``--int8`` / ``--best`` up to 10.x; TensorRT 11 is strongly typed only (precision from the graph);
- ``--stronglyTyped`` on 10.x (a deprecated no-op on 11, so it is left out there);
- ``--percentile`` takes one value up to 8.4, a list from 8.5;
- timing: ``--useCudaGraph`` / ``--useSpinWait`` up to 10.x; on 11 CUDA graphs and spin wait are the defaults and
  data transfers are off unless ``--includeDataTransfers`` (passed, so H2D/D2H are measured as on every version).
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgefuse.errors import EdgefuseError

TRTEXEC = "trtexec"
DEFAULT_PERCENTILES = (90, 95, 99)


def parse_version(version: str) -> tuple[int, int, int]:
    """'8.2.1' / '8.2.1.8' / '10.3' / 'v8201' / 'v100300' -> (major, minor, patch)."""
    text = version.strip()
    m = re.fullmatch(r"v?(\d+)", text)
    if m and len(m.group(1)) >= 4:  # trtexec's '[TensorRT v8201]' form
        return version_from_code(int(m.group(1)))
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*", text)
    if not m:
        raise EdgefuseError(f"TensorRT version {version!r} is not of the form 8.6.1; give the version trtexec prints "
                            "(its first line: '&&&& RUNNING TensorRT.trtexec [TensorRT v8601]')")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_from_code(code: int) -> tuple[int, int, int]:
    """NV_TENSORRT_VERSION as trtexec prints it: major*1000+minor*100+patch on 8.x (8201 -> 8.2.1),
    major*10000+minor*100+patch from 10.0 (101602 -> 10.16.2)."""
    if code >= 100000:
        return code // 10000, code % 10000 // 100, code % 100
    return code // 1000, code % 1000 // 100, code % 100


def version_string(version: str) -> str:
    return ".".join(str(x) for x in parse_version(version))


def checked_version(version: str) -> tuple[int, int, int]:
    """The version as numbers, supported as :func:`edgefuse.backends.trt.versions.parse_version` decides (one rule
    for the Python bindings and trtexec); TensorRT 7's trtexec is named as such."""
    from edgefuse.backends.trt.versions import parse_version as supported

    v = parse_version(version)
    if v[0] < 8:
        raise EdgefuseError(f"trtexec of TensorRT {version_string(version)}: edgefuse drives trtexec of TensorRT 8.0 "
                            "and later (JetPack 4.6+); upgrade JetPack or TensorRT")
    supported(version_string(version))
    return v


def shape_spec(shapes: Mapping[str, Sequence[int]]) -> str:
    """{'clips': [1, 8, 3, 224, 224]} -> 'clips:1x8x3x224x224' (comma-separated inputs, trtexec's syntax)."""
    parts = []
    for name, dims in shapes.items():
        if not dims or any(int(d) < 1 for d in dims):
            raise EdgefuseError(f"input {name!r}: shape {list(dims)} needs positive dimensions for trtexec")
        if "," in name or ":" in name:
            raise EdgefuseError(f"input {name!r}: trtexec cannot name an input with ',' or ':' in --shapes; "
                                "rename it at export")
        parts.append(f"{name}:" + "x".join(str(int(d)) for d in dims))
    return ",".join(parts)


def workspace_flag(version: str, workspace_mb: int) -> str:
    major, minor, _ = checked_version(version)
    if workspace_mb < 1:
        raise EdgefuseError(f"workspace {workspace_mb} MiB: give a positive size in MiB")
    if major == 8 and minor < 4:
        return f"--workspace={workspace_mb}"
    if (major, minor) <= (10, 0):
        return f"--memPoolSize=workspace:{workspace_mb}"
    return f"--memPoolSize=workspace:{workspace_mb}M"


def build_only_flag(version: str) -> str:
    major, minor, _ = checked_version(version)
    return "--buildOnly" if (major, minor) < (8, 6) else "--skipInference"


@dataclass(frozen=True)
class BuildSpec:
    """What an engine build asks of trtexec; the precision flags are decided elsewhere (backends.plan)."""

    onnx: Path
    engine: Path
    version: str  # the TensorRT version of this trtexec, e.g. '8.2.1'
    fp16: bool = False
    int8: bool = False
    best: bool = False
    strongly_typed: bool = False
    shapes: Mapping[str, Sequence[Sequence[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    dla_core: int | None = None
    gpu_fallback: bool = False
    timing_cache: Path | None = None
    workspace_mb: int | None = None
    verbose: bool = False
    calibration_cache: Path | None = None  # implicit INT8 (DLA on 8.x / 10.x): trtexec --calib


def build_argv(spec: BuildSpec, exe: str = TRTEXEC) -> list[str]:
    """The exact trtexec argv that builds ``spec.onnx`` into ``spec.engine`` (and skips the timing run)."""
    major, minor, _ = checked_version(spec.version)
    argv = [exe, f"--onnx={spec.onnx}", f"--saveEngine={spec.engine}"]
    if (major, minor) < (8, 2):
        argv.append("--explicitBatch")  # 8.0: implicit batch is trtexec's default unless shapes are given
    if spec.shapes:
        for i, flag in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
            argv.append(f"{flag}=" + shape_spec({name: s[i] for name, s in _profiles(spec.shapes).items()}))
    precision = [name for name, on in (("--fp16", spec.fp16), ("--int8", spec.int8), ("--best", spec.best)) if on]
    if major >= 11 and precision:
        raise EdgefuseError(f"trtexec of TensorRT {version_string(spec.version)} builds strongly typed networks only "
                            f"({' '.join(precision)} no longer exist): put the precision in the graph ('edgefuse "
                            "calibrate') and build without precision flags")
    if spec.strongly_typed:
        if major < 10:
            raise EdgefuseError(f"--stronglyTyped needs trtexec of TensorRT 10 or later, not "
                                f"{version_string(spec.version)}: build with precision flags instead")
        if precision:
            raise EdgefuseError(f"a strongly typed build takes its precision from the graph; trtexec switches "
                                f"{' '.join(precision)} off: leave them out")
        if major == 10:  # 11: the default, and the flag a deprecated no-op
            argv.append("--stronglyTyped")
    argv += precision
    if spec.dla_core is not None:
        if spec.dla_core < 0:
            raise EdgefuseError(f"DLA core {spec.dla_core}: give 0 or 1")
        argv.append(f"--useDLACore={spec.dla_core}")
        if spec.gpu_fallback:
            argv.append("--allowGPUFallback")
    elif spec.gpu_fallback:
        raise EdgefuseError("GPU fallback applies to DLA builds only: give a DLA core too, or leave it out")
    if spec.workspace_mb:
        argv.append(workspace_flag(spec.version, spec.workspace_mb))
    if spec.timing_cache is not None:
        argv.append(f"--timingCacheFile={spec.timing_cache}")
    if spec.calibration_cache is not None:
        if not spec.int8:
            raise EdgefuseError("a calibration cache gives INT8 scales: build with INT8 too, or leave the cache out")
        argv.append(f"--calib={spec.calibration_cache}")  # 'Read INT8 calibration cache file' (8.x, 10.x)
    argv.append(build_only_flag(spec.version))
    if spec.verbose:
        argv.append("--verbose")
    return argv


def _profiles(shapes: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Sequence[Sequence[int]]]:
    for name, s in shapes.items():
        if len(s) != 3:
            raise EdgefuseError(f"input {name!r}: an optimization profile is [min, opt, max], got {len(s)} shape(s)")
        if not len(s[0]) == len(s[1]) == len(s[2]):
            raise EdgefuseError(f"input {name!r}: min/opt/max shapes differ in rank: {[list(x) for x in s]}")
        if any(not lo <= opt <= hi for lo, opt, hi in zip(*s)):
            raise EdgefuseError(f"input {name!r}: needs min <= opt <= max in every dimension, got "
                                f"{[list(x) for x in s]}")
    return dict(shapes)


@dataclass(frozen=True)
class TimingSpec:
    """A timing run of a built engine, like edgefuse's own runner: data transfers included, one stream."""

    engine: Path
    version: str
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)  # dynamic inputs only: the shape to time
    warmup_ms: int = 200
    iterations: int | None = None  # at least this many runs
    duration_s: int | None = None  # and at least this long (trtexec's default: 3 s)
    cuda_graph: bool = False
    spin_wait: bool = False
    dla_core: int | None = None
    export_times: Path | None = None  # per-run timings (JSON): the raw figures bench keeps
    percentiles: tuple[int, ...] = DEFAULT_PERCENTILES
    verbose: bool = False


def timing_argv(spec: TimingSpec, exe: str = TRTEXEC) -> list[str]:
    """The exact trtexec argv that times ``spec.engine``."""
    major, minor, _ = checked_version(spec.version)
    argv = [exe, f"--loadEngine={spec.engine}"]
    if spec.shapes:
        argv.append("--shapes=" + shape_spec(spec.shapes))
    if spec.dla_core is not None:
        argv.append(f"--useDLACore={spec.dla_core}")
    argv.append(f"--warmUp={int(spec.warmup_ms)}")
    if spec.iterations is not None:
        argv.append(f"--iterations={int(spec.iterations)}")
    if spec.duration_s is not None:
        argv.append(f"--duration={int(spec.duration_s)}")
    if major >= 11:
        argv.append("--includeDataTransfers")  # 11: off by default; bench measures H2D and D2H on every version
        if not spec.cuda_graph:
            argv.append("--noCudaGraph")
        if not spec.spin_wait:
            argv.append("--noSpinWait")
    else:
        if spec.cuda_graph:
            argv.append("--useCudaGraph")
        if spec.spin_wait:
            argv.append("--useSpinWait")
    pcts = tuple(int(p) for p in spec.percentiles)
    if any(not 0 <= p <= 100 for p in pcts) or not pcts:
        raise EdgefuseError(f"percentiles {list(spec.percentiles)}: give values in 0..100")
    if (major, minor) < (8, 5):
        argv.append(f"--percentile={max(pcts)}")  # one value only before 8.5; the rest come from --exportTimes
    else:
        argv.append("--percentile=" + ",".join(str(p) for p in pcts))
    if spec.export_times is not None:
        argv.append(f"--exportTimes={spec.export_times}")
    if spec.verbose:
        argv.append("--verbose")
    return argv


def command_string(argv: Sequence[str]) -> str:
    """The command as the sidecar records it: one shell line, each argument quoted where needed."""
    return shlex.join(str(a) for a in argv)
