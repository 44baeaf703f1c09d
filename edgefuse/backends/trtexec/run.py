"""Running trtexec: find it, run it with a timeout, turn every failure into one EdgefuseError line naming the step;
and the two calls the rest of edgefuse makes: :func:`build_with_trtexec` (build-engine) and
:func:`time_with_trtexec` (bench)."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

from .command import (
    TRTEXEC,
    BuildSpec,
    TimingSpec,
    build_argv,
    command_string,
    parse_version,
    timing_argv,
    version_string,
)
from .figures import ExportedTimes, read_export_times
from .report import TrtexecReport, check_report, failure_reason, message, parse_report

log = logging.getLogger(__name__)

JETSON_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")  # where JetPack installs it (not on PATH)
BUILD_TIMEOUT_S = 3600.0  # a Nano builds a ResNet-50 in minutes; a large graph on a Jetson can take far longer
TIMING_TIMEOUT_S = 600.0


def find_trtexec(candidates: Sequence[Path] = (JETSON_TRTEXEC,)) -> Path:
    """trtexec on PATH, else at JetPack's /usr/src/tensorrt/bin/trtexec."""
    found = shutil.which(TRTEXEC)
    if found:
        return Path(found)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise EdgefuseError("trtexec not found on PATH or at /usr/src/tensorrt/bin/trtexec: install TensorRT (JetPack "
                        "ships it there; desktop: the TensorRT tar's bin/) or add its folder to PATH")


def run_trtexec(argv: Sequence[str], timeout_s: float, step: str = "run") -> str:
    """Run trtexec (``argv[0]`` 'trtexec' is looked up with :func:`find_trtexec`); its output (stdout and stderr
    in order). A missing binary, a timeout or a failed run raises one EdgefuseError line naming ``step``."""
    args = [str(a) for a in argv]
    if not args:
        raise EdgefuseError(f"trtexec {step}: empty command")
    if args[0] == TRTEXEC:
        args[0] = str(find_trtexec())
    log.info("trtexec %s: %s", step, command_string(args))
    try:
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise EdgefuseError(f"trtexec {step}: {args[0]} not found; install TensorRT or put trtexec on PATH") from e
    except PermissionError as e:
        raise EdgefuseError(f"trtexec {step}: {args[0]} is not executable (chmod +x, or use JetPack's "
                            "/usr/src/tensorrt/bin/trtexec)") from e
    except subprocess.TimeoutExpired as e:
        raise EdgefuseError(f"trtexec {step} timed out after {timeout_s:g} s; give it longer (a Jetson builds "
                            "slowly) or check the device (tegrastats)") from e
    out = done.stdout.decode("utf-8", errors="replace")
    if done.returncode != 0:
        report = parse_report(out)
        reason = failure_reason(report) or _last_line(out) or "no output"
        version = f", TensorRT {report.version}" if report.version else ""
        raise EdgefuseError(f"trtexec {step} failed (exit {done.returncode}{version}): {reason}")
    return out


def _last_line(text: str) -> str:
    lines = [message(x) for x in text.splitlines() if message(x)]
    return lines[-1] if lines else ""


def probe_version(timeout_s: float = 60.0) -> str:
    """The TensorRT version of the trtexec found: its first line '&&&& RUNNING TensorRT.trtexec [TensorRT vN]'
    (printed by every version since 8.0, also for --help)."""
    report = parse_report(run_trtexec([TRTEXEC, "--help"], timeout_s, step="version probe"))
    if report.version is None:
        raise EdgefuseError("trtexec version probe: no '[TensorRT vN]' in 'trtexec --help'; give the TensorRT version "
                            "explicitly")
    return report.version


def build_with_trtexec(onnx: Path, engine: Path, flags: Sequence[str] = (), network_flags: Sequence[str] = (),
                       profiles: Mapping[str, Sequence[Sequence[int]]] | None = None, workspace_mb: int | None = None,
                       dla_core: int | None = None, gpu_fallback: bool = False, timing_cache: Path | None = None,
                       version: str | None = None, best: bool = False, verbose: bool = False,
                       timeout_s: float = BUILD_TIMEOUT_S, calibration_cache: Path | None = None) -> dict[str, Any]:
    """Build ``engine`` from ``onnx`` with trtexec; returns the sidecar's settings (the adapter's keys, plus the
    exact command and trtexec's version). ``flags`` / ``network_flags``: TensorRT BuilderFlag /
    NetworkDefinitionCreationFlag names as backends.plan decides them (FP16, INT8; STRONGLY_TYPED)."""
    unknown = sorted(set(flags) - {"FP16", "INT8"})
    if unknown:
        raise EdgefuseError(f"builder flag(s) {', '.join(unknown)} have no trtexec equivalent here; build with the "
                            "TensorRT Python bindings (--backend tensorrt)")
    version = version_string(version) if version else probe_version()
    cache_before = timing_cache.stat().st_size if timing_cache is not None and timing_cache.is_file() else 0
    spec = BuildSpec(onnx=Path(onnx), engine=Path(engine), version=version, fp16="FP16" in flags,
                     int8="INT8" in flags, best=best, strongly_typed="STRONGLY_TYPED" in network_flags,
                     shapes=dict(profiles or {}), dla_core=dla_core, gpu_fallback=gpu_fallback,
                     timing_cache=timing_cache, workspace_mb=workspace_mb, verbose=verbose,
                     calibration_cache=calibration_cache)
    argv = build_argv(spec, exe=str(find_trtexec()))  # the command recorded is the one that ran
    engine.unlink(missing_ok=True)  # a stale engine must not pass for a new one
    out = run_trtexec(argv, timeout_s, step="build")
    report = parse_report(out)
    check_report(report, "build")
    if not engine.is_file() or engine.stat().st_size == 0:
        raise EdgefuseError(f"trtexec build: it exited cleanly but wrote no engine at {engine}; rerun with verbose "
                            "output and check the disk")
    check_build(report, version, dla_core, gpu_fallback)
    from edgefuse.backends.sidecar import final_path

    final = f"--saveEngine={final_path(engine)}"  # the command as it reruns: the engine's place, not its staging
    recorded = [final if a == f"--saveEngine={engine}" else a for a in argv]
    return build_settings(report, recorded, version, flags, network_flags, dla_core, timing_cache, workspace_mb,
                          reused_timing_cache=bool(cache_before and report.timing_cache_loaded_bytes))


def check_build(report: TrtexecReport, version: str, dla_core: int | None, gpu_fallback: bool) -> None:
    """What a build's log must show beyond a clean exit: the TensorRT version the command was made for, and no DLA
    layer falling back to the GPU unless allowed (pure; one EdgefuseError line)."""
    if report.version and parse_version(report.version)[:2] != parse_version(version)[:2]:
        raise EdgefuseError(f"trtexec build: the command was made for TensorRT {version} but trtexec is "
                            f"{report.version}; rebuild without giving the version")
    if dla_core is not None and report.dla_fallback_layers and not gpu_fallback:
        raise EdgefuseError(f"trtexec build: {len(report.dla_fallback_layers)} layer(s) cannot run on DLA (e.g. "
                            f"{report.dla_fallback_layers[0]}); pass --gpu-fallback or build without --dla")


def build_settings(report: TrtexecReport, argv: Sequence[str], version: str, flags: Sequence[str],
                   network_flags: Sequence[str], dla_core: int | None, timing_cache: Path | str | None,
                   workspace_mb: int | None, reused_timing_cache: bool = False) -> dict[str, Any]:
    """The sidecar's settings of an engine trtexec built (pure): the exact command, trtexec's version and device."""
    return {"builder": "trtexec", "trtexec_version": report.version or version, "trtexec_command": command_string(argv),
            "flags": list(flags), "network_flags": list(network_flags), "dla_core": dla_core,
            "gpu_fallback_layers": list(report.dla_fallback_layers) if dla_core is not None else [],
            "timing_cache": str(timing_cache) if timing_cache else None, "workspace_mb": workspace_mb,
            "reused_timing_cache": reused_timing_cache,
            "trtexec_build_seconds": report.engine_build_s, "marked_outputs": [],
            "trtexec_device": {"name": report.device_name, "compute_capability": report.compute_capability}}


def time_with_trtexec(engine: Path, version: str | None = None, shapes: Mapping[str, Sequence[int]] | None = None,
                      warmup_ms: int = 200, iterations: int | None = None, duration_s: int | None = None,
                      cuda_graph: bool = False, dla_core: int | None = None,
                      timeout_s: float = TIMING_TIMEOUT_S) -> tuple[TrtexecReport, ExportedTimes, str]:
    """Time ``engine`` with trtexec: (its parsed report, the per-run times from --exportTimes, the command)."""
    version = version_string(version) if version else probe_version()
    with tempfile.TemporaryDirectory(prefix="edgefuse-trtexec-") as tmp:
        times_path = Path(tmp) / "times.json"
        spec = TimingSpec(engine=Path(engine), version=version, shapes=dict(shapes or {}), warmup_ms=warmup_ms,
                          iterations=iterations, duration_s=duration_s, cuda_graph=cuda_graph, dla_core=dla_core,
                          export_times=times_path)
        argv = timing_argv(spec, exe=str(find_trtexec()))
        out = run_trtexec(argv, timeout_s, step="timing")
        report = parse_report(out)
        check_report(report, "timing")
        if not times_path.is_file():
            raise EdgefuseError(f"trtexec timing: no --exportTimes file was written ({times_path}); rerun the timing")
        times = read_export_times(times_path)
    return report, times, command_string(argv)
