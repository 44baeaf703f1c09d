"""trtexec's output, parsed into a typed result (pure; tested on recorded outputs of TensorRT 8.0 .. 10.16 in
``tests/data/trtexec``).

What differs between versions (from those recordings and NVIDIA's ``samples/common/sampleReporting.cpp``):
8.0 and 8.2 print an ``End-to-End Host Latency`` line and one ``percentile(99%)``; 8.4 drops that line; 8.5 and
later print several percentiles (``percentile(90%) = .., percentile(95%) = .., percentile(99%) = ..``). TensorRT 7
printed a multi-line block (``percentile: X ms at 99%``), refused here with the reason. Lines may come with or
without the ``[date] [I]`` prefix (a pasted log often loses it); a damaged figure is left out, never guessed.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from edgefuse.errors import EdgefuseError

from .command import version_from_code

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(r"^\s*(?:\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\] )?(?:\[([IWEVF])\] )?(?:\[TRT\] )?")
_STAT_LINES = {"Latency": "latency", "End-to-End Host Latency": "end_to_end", "Enqueue Time": "enqueue",
               "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute", "D2H Latency": "d2h"}
_STAT = re.compile(r"^(" + "|".join(re.escape(k) for k in _STAT_LINES) + r"): (.*)$")
_FIELD = re.compile(rf"\b(min|max|mean|median)\s*=?\s*({_NUM}) ms\b")
_PCT = re.compile(rf"percentile\(({_NUM})%\)\s*=?\s*({_NUM}) ms\b")
_RESULT = re.compile(r"^&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec(?: \[TensorRT v(\d+)\])?(?: \[b\d+\])?"
                     r"(?: # (.*))?$")
_SCALARS = {
    "throughput_qps": re.compile(rf"^Throughput: ({_NUM}) qps"),
    "total_host_walltime_s": re.compile(rf"^Total Host Walltime: ({_NUM}) s"),
    "total_gpu_compute_s": re.compile(rf"^Total GPU Compute Time: ({_NUM}) s"),
    "engine_build_s": re.compile(rf"^Engine built in ({_NUM}) sec"),
    "engine_size_mib": re.compile(rf"^Created engine with size: ({_NUM}) MiB"),
    "timing_cache_loaded_bytes": re.compile(rf"^Loaded ({_NUM}) bytes of timing cache from "),
    "timing_cache_saved_bytes": re.compile(rf"^Saved ({_NUM}) bytes of timing cache to "),
    "gpu_compute_cov_pct": re.compile(rf"coefficient of variance = ({_NUM})%"),
}
_NAMED = (("version", "TensorRT version: "), ("device_name", "Selected Device: "),
          ("compute_capability", "Compute Capability: "))
_LEGACY = re.compile(rf"^percentile: ({_NUM}) ms at ({_NUM})%")
_DLA_FALLBACK = (  # 8.x wording; 8.6 / 10.x wording; DLA's subgraph limit; DLA's precision limit
    re.compile(r"layer (.+?) is not supported on DLA, falling back to GPU"),
    re.compile(r"^Layer '(.+?)' \([A-Z_]+\): Unsupported on DLA\. Switching this layer's device type to GPU"),
    re.compile(r"Switching to GPU for layer (\S+)"),
    re.compile(r"DLA only supports FP16 and Int8 precision type\. Switching (.+?) device type to GPU"),
)
# trtexec's own closing lines: true but say nothing of the cause
_GENERIC = ("Engine set up failed", "Failed to create engine from model or file", "Building engine failed",
            "Parsing model failed", "Engine could not be created from network", "Failed to parse onnx file",
            "--- End node ---", "--- Begin node ---")


@dataclass(frozen=True)
class Stats:
    """One summary line: min/max/mean/median and the percentiles it printed ({'99': ms}), in ms."""

    min_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    median_ms: float | None = None
    percentiles: dict[str, float] = field(default_factory=dict)

    def percentile(self, p: float) -> float | None:
        return self.percentiles.get(_pct_key(p))


@dataclass(frozen=True)
class TrtexecReport:
    """What one trtexec run printed. ``passed``: the closing '&&&& PASSED|FAILED' line (None: not seen)."""

    version: str | None = None
    command: str | None = None
    passed: bool | None = None
    throughput_qps: float | None = None
    latency: Stats | None = None  # H2D + GPU compute + D2H of one query
    end_to_end: Stats | None = None  # 8.0 / 8.2 only
    enqueue: Stats | None = None
    h2d: Stats | None = None
    gpu_compute: Stats | None = None
    d2h: Stats | None = None
    total_host_walltime_s: float | None = None
    total_gpu_compute_s: float | None = None
    gpu_compute_cov_pct: float | None = None  # printed only when trtexec finds the GPU time unstable
    engine_build_s: float | None = None
    engine_size_mib: float | None = None
    timing_cache_loaded_bytes: int | None = None
    timing_cache_saved_bytes: int | None = None
    device_name: str | None = None  # '=== Device Information ===': 'Selected Device: Orin'
    compute_capability: str | None = None  # 'Compute Capability: 8.7'
    dla_fallback_layers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the [E] lines, continuation lines joined
    legacy_format: bool = False  # TensorRT 7's summary block

    @property
    def has_summary(self) -> bool:
        return self.latency is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrtexecReport:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for name in _STAT_LINES.values():
            if kw.get(name) is not None:
                kw[name] = Stats(**kw[name])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _pct_key(p: float | str) -> str:
    v = float(p)
    return str(int(v)) if v.is_integer() else repr(v)


def _strip(line: str) -> tuple[str | None, str]:
    """(severity letter or None, the message without the '[date] [I] [TRT] ' prefixes)."""
    m = _PREFIX.match(line)
    assert m is not None  # every part of the prefix is optional
    return m.group(1), line[m.end():].strip()


def message(line: str) -> str:
    """A log line without its '[date] [I] [TRT] ' prefixes."""
    return _strip(line)[1]


def _stats(text: str) -> Stats:
    values = {k: float(v) for k, v in _FIELD.findall(text)}
    return Stats(min_ms=values.get("min"), max_ms=values.get("max"), mean_ms=values.get("mean"),
                 median_ms=values.get("median"), percentiles={_pct_key(p): float(v) for p, v in _PCT.findall(text)})


def parse_report(text: str) -> TrtexecReport:
    """Parse a trtexec run's output (stdout and stderr together). Missing parts stay None; nothing raises."""
    out: dict[str, Any] = {"errors": [], "dla_fallback_layers": []}
    last_error = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        sev, body = _strip(line)
        if sev is None and last_error and not body.startswith(("&&&&", "===")):
            out["errors"][-1] += " " + body  # a message continued on the next line (parser assertions)
            continue
        last_error = sev == "E" or sev == "F"
        if last_error:
            out["errors"].append(body)
        m = _RESULT.match(body)
        if m:
            if m.group(2):
                out["version"] = ".".join(str(x) for x in version_from_code(int(m.group(2))))
            if m.group(3) and "command" not in out:
                out["command"] = m.group(3).strip()
            if m.group(1) != "RUNNING":
                out["passed"] = m.group(1) == "PASSED"
            continue
        named = next(((key, body[len(lead):].strip()) for key, lead in _NAMED if body.startswith(lead)), None)
        if named:
            out.setdefault(*named)
            continue
        m = _STAT.match(body)
        if m:
            out[_STAT_LINES[m.group(1)]] = _stats(m.group(2))
            continue
        if _LEGACY.match(body):
            out["legacy_format"] = True
            continue
        for key, rx in _SCALARS.items():
            sm = rx.search(body)
            if sm:
                value = float(sm.group(1))
                out[key] = int(value) if key.endswith("_bytes") else value
                break
        for rx in _DLA_FALLBACK:
            dm = rx.search(body)
            if dm and dm.group(1).strip() not in out["dla_fallback_layers"]:
                out["dla_fallback_layers"].append(dm.group(1).strip())
                break
    return TrtexecReport(**out)


def failure_reason(report: TrtexecReport) -> str | None:
    """The cause of a failed run in one line (the most specific error trtexec or TensorRT printed), or None."""
    if not report.errors and report.passed is not False:
        return None
    specific = [e for e in report.errors if not any(g in e for g in _GENERIC)]
    generic = [e for e in report.errors if e not in specific]
    parse_failed = any(e.startswith(("Failed to parse onnx file", "Parsing model failed")) for e in report.errors)
    if parse_failed:
        detail = next((e for e in specific if "ERROR" in e or "Assertion" in e or "Error" in e), None)
        reason = "TensorRT's ONNX parser rejected the graph"
        return f"{reason}: {_squash(detail)}" if detail else reason
    if specific:
        return _squash(specific[0])
    if generic:
        return _squash(generic[0])
    return "trtexec reported FAILED without an error line (rerun with --verbose)"


def _squash(text: str, limit: int = 400) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def check_report(report: TrtexecReport, step: str) -> None:
    """Raise one EdgefuseError line when the run failed or (for ``step == 'timing'``) printed no usable summary."""
    reason = failure_reason(report)
    where = f"trtexec {step}" + (f" (TensorRT {report.version})" if report.version else "")
    if report.passed is False or (reason and report.passed is not True):
        raise EdgefuseError(f"{where} failed: {reason}")
    if step == "timing":
        if report.legacy_format:
            raise EdgefuseError(f"{where}: this is TensorRT 7's summary format; edgefuse reads trtexec of TensorRT "
                                "8.0 and later (JetPack 4.6+)")
        if report.latency is None or report.latency.mean_ms is None:
            raise EdgefuseError(f"{where}: no 'Latency:' line in trtexec's performance summary; rerun it and check "
                                "that it reached '=== Performance summary ==='")
