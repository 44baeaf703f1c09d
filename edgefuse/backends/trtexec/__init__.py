"""trtexec as a backend: build engines and time them with NVIDIA's trtexec, for devices where the TensorRT Python
bindings are missing or the Python is too old for edgefuse (JetPack 4.6: Python 3.6; JetPack 5: 3.8), while trtexec
ships with every JetPack (``/usr/src/tensorrt/bin/trtexec``) and every TensorRT install.

- :mod:`.command`: the exact argv per TensorRT version (pure);
- :mod:`.report`: trtexec's output parsed into :class:`TrtexecReport` (pure);
- :mod:`.figures`: a parsed timing as bench's figures (pure);
- :mod:`.run`: running trtexec with a timeout; :func:`build_with_trtexec`, :func:`time_with_trtexec`.
"""
from __future__ import annotations

from .command import BuildSpec, TimingSpec, build_argv, command_string, parse_version, timing_argv
from .figures import BenchFigures, ExportedTimes, bench_figures, read_export_times
from .report import Stats, TrtexecReport, check_report, failure_reason, parse_report
from .run import (
    build_settings,
    build_with_trtexec,
    check_build,
    find_trtexec,
    probe_version,
    run_trtexec,
    time_with_trtexec,
)

__all__ = ["BenchFigures", "BuildSpec", "ExportedTimes", "Stats", "TimingSpec", "TrtexecReport", "bench_figures",
           "build_argv", "build_settings", "build_with_trtexec", "check_build", "check_report", "command_string", "failure_reason", "find_trtexec",
           "parse_report", "parse_version", "probe_version", "read_export_times", "run_trtexec", "time_with_trtexec",
           "timing_argv"]
