"""trtexec as a backend: the command per TensorRT version, the parser on recorded real trtexec outputs
(tests/data/trtexec, sources in SOURCES.md), bench's figures, and running it.

TensorRT and trtexec cannot exist here: the runs below start a real subprocess, but it is a STAND-IN
(tests/data/trtexec/trtexec, found through PATH) that prints a recorded real output and writes placeholder files.
Nothing here shows that trtexec itself ran.
"""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from edgefuse.backends.trtexec import (
    BenchFigures,
    BuildSpec,
    TimingSpec,
    TrtexecReport,
    bench_figures,
    build_argv,
    build_with_trtexec,
    check_report,
    command_string,
    failure_reason,
    find_trtexec,
    parse_report,
    parse_version,
    probe_version,
    read_export_times,
    run_trtexec,
    time_with_trtexec,
    timing_argv,
)
from edgefuse.backends.trtexec.command import workspace_flag
from edgefuse.bench.report import LATENCY_KEYS, Latency
from edgefuse.errors import EdgefuseError

DATA = Path(__file__).parent / "data" / "trtexec"
PROFILE = {"clips": [[1, 8, 3, 224, 224], [4, 8, 3, 224, 224], [8, 8, 3, 224, 224]]}


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- versions and the command builder

@pytest.mark.parametrize("text,expected", [("8.2.1", (8, 2, 1)), ("8.6.1.6", (8, 6, 1)), ("10.3", (10, 3, 0)),
                                           ("v8201", (8, 2, 1)), ("v8001", (8, 0, 1)), ("v100200", (10, 2, 0)),
                                           ("101602", (10, 16, 2)), ("v8400", (8, 4, 0))])
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


def test_bad_and_old_versions_are_refused() -> None:
    with pytest.raises(EdgefuseError, match="not of the form"):
        parse_version("eight")
    with pytest.raises(EdgefuseError, match="TensorRT 8.0 and later"):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "7.1.3"))


def test_build_argv_trt80_jetpack46_exact() -> None:
    spec = BuildSpec(Path("m.onnx"), Path("m.engine"), "8.0.1", fp16=True, shapes=PROFILE, workspace_mb=1024,
                     timing_cache=Path("cache.bin"))
    assert build_argv(spec) == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--explicitBatch",
        "--minShapes=clips:1x8x3x224x224", "--optShapes=clips:4x8x3x224x224", "--maxShapes=clips:8x8x3x224x224",
        "--fp16", "--workspace=1024", "--timingCacheFile=cache.bin", "--buildOnly"]


@pytest.mark.parametrize("version,workspace,build_only,explicit", [
    ("8.0.1", "--workspace=512", "--buildOnly", True),
    ("8.2.1", "--workspace=512", "--buildOnly", False),
    ("8.4.1", "--memPoolSize=workspace:512", "--buildOnly", False),
    ("8.5.2", "--memPoolSize=workspace:512", "--buildOnly", False),
    ("8.6.1", "--memPoolSize=workspace:512", "--skipInference", False),
    ("10.0.1", "--memPoolSize=workspace:512", "--skipInference", False),
    ("10.3.0", "--memPoolSize=workspace:512M", "--skipInference", False),
    ("11.1", "--memPoolSize=workspace:512M", "--skipInference", False),
])
def test_version_flags(version: str, workspace: str, build_only: str, explicit: bool) -> None:
    argv = build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), version, workspace_mb=512))
    assert workspace in argv and argv[-1] == build_only
    assert ("--explicitBatch" in argv) is explicit
    assert workspace_flag(version, 512) == workspace


def test_multiple_inputs_and_dla() -> None:
    shapes = {"clips": PROFILE["clips"], "state": [[1, 64], [1, 64], [1, 64]]}
    argv = build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "8.5.2", int8=True, fp16=True, shapes=shapes,
                                dla_core=1, gpu_fallback=True))
    assert "--minShapes=clips:1x8x3x224x224,state:1x64" in argv
    assert argv.index("--fp16") < argv.index("--int8")
    assert "--useDLACore=1" in argv and "--allowGPUFallback" in argv
    with pytest.raises(EdgefuseError, match="DLA builds only"):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "8.5.2", gpu_fallback=True))


@pytest.mark.parametrize("shapes,match", [({"x": [[1, 3], [4, 3], [2, 3]]}, "min <= opt <= max"),
                                          ({"x": [[1, 3], [1, 3, 1], [1, 3]]}, "rank"),
                                          ({"x": [[1, 3], [1, 3]]}, r"\[min, opt, max\]"),
                                          ({"a,b": [[1], [1], [1]]}, "rename")])
def test_bad_profiles_are_refused(shapes: dict, match: str) -> None:
    with pytest.raises(EdgefuseError, match=match):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "8.6.1", shapes=shapes))


def test_strongly_typed_and_trt11_precision() -> None:
    argv = build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "10.3.0", strongly_typed=True))
    assert "--stronglyTyped" in argv
    assert "--stronglyTyped" not in build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "11.0",
                                                         strongly_typed=True))  # the default, a no-op flag on 11
    with pytest.raises(EdgefuseError, match="strongly typed networks only"):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "11.0", fp16=True))
    with pytest.raises(EdgefuseError, match="TensorRT 10 or later"):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "8.6.1", strongly_typed=True))
    with pytest.raises(EdgefuseError, match="leave them out"):
        build_argv(BuildSpec(Path("m.onnx"), Path("m.engine"), "10.3.0", strongly_typed=True, int8=True))


def test_timing_argv_per_version() -> None:
    old = timing_argv(TimingSpec(Path("m.engine"), "8.2.1", shapes={"clips": [4, 8, 3, 224, 224]},
                                 iterations=100, export_times=Path("t.json")))
    assert old == ["trtexec", "--loadEngine=m.engine", "--shapes=clips:4x8x3x224x224", "--warmUp=200",
                   "--iterations=100", "--percentile=99", "--exportTimes=t.json"]
    new = timing_argv(TimingSpec(Path("m.engine"), "8.5.2", cuda_graph=True, duration_s=10))
    assert "--percentile=90,95,99" in new and "--useCudaGraph" in new and "--duration=10" in new
    trt11 = timing_argv(TimingSpec(Path("m.engine"), "11.0"))
    assert {"--includeDataTransfers", "--noCudaGraph", "--noSpinWait"} <= set(trt11)
    assert "--useCudaGraph" not in trt11 and "--noDataTransfers" not in new + old + trt11


def test_command_string_quotes() -> None:
    argv = build_argv(BuildSpec(Path("my models/m.onnx"), Path("out/m.engine"), "8.6.1"))
    line = command_string(argv)
    assert "'--onnx=my models/m.onnx'" in line and shlex.split(line) == argv


# ---------------------------------------------------------------- the parser, on every recorded output

# file -> (version, throughput, latency mean, latency percentile keys, has End-to-End line, passed)
RECORDED = {
    "trt8.0-8.2_nano_jp46.log": (None, 18.9615, 52.7275, ["99"], True, None),
    "trt8.2_xavier_nx.log": (None, 27207.0, 0.573891, ["99"], True, None),
    "trt8.4.0_xavier_agx.log": ("8.4.0", 41087.7, 0.402238, ["99"], False, True),
    "trt8.5.2_xavier_agx_cut.log": (None, 43073.6, 0.386481, ["90", "95", "99"], False, None),
    "trt8.6.2_agx_orin_jp6dp.log": (None, 208.729, 4.83767, ["90", "95", "99"], False, None),
    "trt10_rtx_summary.log": (None, 130.298, 7.60628, ["90", "95", "99"], False, None),
    "trt10.13.3_agx_thor_jp7.log": (None, 1.55139, 644.386, ["90", "95", "99"], False, None),
    "trt8.2.1_explicit_batch_warning.log": ("8.2.1", None, None, None, False, None),
    "trt8.6.3_device_info.log": ("8.6.3", None, None, None, False, None),
    "trt10.2_timing_start.log": ("10.2.0", None, None, None, False, None),
    "trt10.16.2_orin_nx_build_start.log": ("10.16.2", None, None, None, False, None),
    "trt7_legacy_format.log": (None, None, None, None, False, None),
    "build_engine_built.log": (None, None, None, None, False, None),
    "fail_parse_trt8.6.1.log": (None, None, None, None, False, None),
    "fail_build_trt8.5.log": (None, None, None, None, False, None),
    "dla_fallback_trt8.log": (None, None, None, None, False, None),
    "dla_fallback_switching.log": (None, None, None, None, False, None),
}


def test_every_recording_has_expectations_and_a_source() -> None:
    assert sorted(p.name for p in DATA.glob("*.log")) == sorted(RECORDED)
    sources = read("SOURCES.md")
    assert all(f"`{name}`" in sources for name in RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_output(name: str) -> None:
    version, qps, mean, pcts, e2e, passed = RECORDED[name]
    r = parse_report(read(name))
    assert r.version == version and r.throughput_qps == qps and r.passed is passed
    assert (r.end_to_end is not None) is e2e
    if mean is None:
        assert r.latency is None
    else:
        assert r.latency is not None and r.latency.mean_ms == mean and sorted(r.latency.percentiles) == pcts
        assert r.latency.min_ms is not None and r.latency.min_ms <= r.latency.median_ms <= r.latency.max_ms
    assert TrtexecReport.from_dict(json.loads(r.to_json())) == r


def test_summary_figures_in_detail() -> None:
    r = parse_report(read("trt8.4.0_xavier_agx.log"))
    assert r.h2d is not None and r.h2d.percentile(99) == 0.0272217 and r.h2d.min_ms == 0.00622559
    assert r.gpu_compute is not None and r.gpu_compute.mean_ms == 0.388221
    assert r.d2h is not None and r.d2h.max_ms == 0.00537109 and r.enqueue is not None
    assert r.total_host_walltime_s == 3.00119 and r.total_gpu_compute_s == 2.99202
    assert r.command == "trtexec --loadEngine=mnist16.trt --batch=16"
    device = parse_report(read("trt8.6.3_device_info.log"))
    assert (device.device_name, device.compute_capability) == ("NVIDIA GeForce RTX 2080", "7.5")
    nano = parse_report(read("trt8.0-8.2_nano_jp46.log"))
    assert nano.end_to_end is not None and nano.end_to_end.percentile(99) == 57.1649


def test_a_damaged_paste_keeps_only_whole_figures() -> None:
    r = parse_report(read("trt8.5.2_xavier_agx_cut.log"))  # the poster's terminal cut these lines
    assert r.enqueue is not None and sorted(r.enqueue.percentiles) == ["90", "95"]
    assert r.h2d is not None and sorted(r.h2d.percentiles) == ["90", "95"]
    assert r.gpu_compute is not None and r.gpu_compute.percentile(99) is None and r.gpu_compute.mean_ms == 0.369765
    assert r.d2h is None and r.total_host_walltime_s is None


def test_build_lines_and_dla_fallback() -> None:
    assert parse_report(read("build_engine_built.log")).engine_build_s == 661.648
    old = parse_report(read("dla_fallback_trt8.log")).dla_fallback_layers
    assert old == ["Embedding matrix", "Gather in embedding", "LSTM encoder"]
    new = parse_report(read("dla_fallback_switching.log")).dla_fallback_layers
    assert new == ["/model.24/Constant_1_output_0", "(Unnamed Layer* 277) [Shuffle]", "/model.24/Constant_2_output_0"]


def test_failures_give_one_line_with_the_cause() -> None:
    parse = parse_report(read("fail_parse_trt8.6.1.log"))
    reason = failure_reason(parse)
    assert reason is not None and reason.startswith("TensorRT's ONNX parser rejected the graph")
    assert "Plugin not found" in reason and "\n" not in reason  # the continuation line is joined
    with pytest.raises(EdgefuseError, match="trtexec build failed: TensorRT's ONNX parser"):
        check_report(parse, "build")
    build = failure_reason(parse_report(read("fail_build_trt8.5.log")))
    assert build is not None and "Could not find any implementation for node ConvTranspose_56" in build
    assert failure_reason(parse_report(read("trt8.4.0_xavier_agx.log"))) is None


def test_timing_checks() -> None:
    with pytest.raises(EdgefuseError, match="TensorRT 7's summary format"):
        check_report(parse_report(read("trt7_legacy_format.log")), "timing")
    with pytest.raises(EdgefuseError, match=r"TensorRT 10.2.0\): no 'Latency:' line"):
        check_report(parse_report(read("trt10.2_timing_start.log")), "timing")
    check_report(parse_report(read("trt8.6.2_agx_orin_jp6dp.log")), "timing")  # a usable summary passes


# ---------------------------------------------------------------- bench's figures

def write_times(path: Path, latency: list[float], e2e: bool = False) -> Path:
    """A file in the format trtexec's --exportTimes writes (sampleReporting.cpp exportJSONTrace, 8.0.1 .. 11.1);
    written here, not recorded."""
    runs = []
    t = 0.0
    for ms in latency:
        h2d, d2h = 0.1 * ms, 0.05 * ms
        run = {"startEnqMs": t, "endEnqMs": t + 0.01, "startH2dMs": t, "endH2dMs": t + h2d, "startComputeMs": t + h2d,
               "endComputeMs": t + ms - d2h, "startD2hMs": t + ms - d2h, "endD2hMs": t + ms, "h2dMs": h2d,
               "computeMs": ms - h2d - d2h, "d2hMs": d2h, "latencyMs": ms}
        if e2e:
            run["endToEndMs"] = ms + 0.5
        runs.append(run)
        t += ms
    path.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return path


def test_figures_from_exported_times_match_bench(tmp_path: Path) -> None:
    raw = [4.1, 4.3, 4.0, 5.2, 4.4, 4.2, 4.25, 6.0, 4.05, 4.15]
    times = read_export_times(write_times(tmp_path / "t.json", raw, e2e=True))
    report = parse_report(read("trt8.6.2_agx_orin_jp6dp.log"))
    fig = bench_figures(report, batch=2, frames=8, times=times)
    assert fig.source == "exportTimes" and fig.raw_ms == raw
    assert Latency(**fig.latency) == Latency.of(raw, 2, 8)  # the same figures as the Python runner's
    assert tuple(fig.latency) == LATENCY_KEYS
    assert fig.timings["h2d_ms"] == pytest.approx(0.1 * sum(raw) / len(raw))
    assert fig.timings["throughput_qps"] == 208.729
    assert BenchFigures.from_dict(json.loads(json.dumps(fig.to_dict()))) == fig


def test_figures_from_the_summary_only() -> None:
    fig = bench_figures(parse_report(read("trt8.4.0_xavier_agx.log")), batch=16, frames=1)
    assert fig.source == "summary" and fig.raw_ms == []
    assert fig.latency["mean_ms"] == 0.402238 and fig.latency["p99_ms"] == 0.420288
    assert fig.latency["p90_ms"] is None  # TensorRT 8.4 prints one percentile: the rest need --exportTimes
    assert fig.latency["iterations"] == round(2.99202 * 1000 / 0.388221)
    assert fig.latency["clips_per_s"] == pytest.approx(16 * 1000 / 0.402238)
    assert fig.timings["compute_ms"] == 0.388221 and fig.timings["d2h_ms"] == 0.00360451
    full = bench_figures(parse_report(read("trt10_rtx_summary.log")), batch=1, frames=8)
    assert (full.latency["p90_ms"], full.latency["p95_ms"]) == (10.2996, 10.8698)
    with pytest.raises(EdgefuseError, match="no 'Latency:' summary"):
        bench_figures(parse_report(read("trt10.2_timing_start.log")), 1, 8)


def test_bad_export_times(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('[{"latencyMs": 1.0}]', encoding="utf-8")
    with pytest.raises(EdgefuseError, match="not trtexec's --exportTimes format"):
        read_export_times(tmp_path / "bad.json")
    with pytest.raises(EdgefuseError, match="unreadable"):
        read_export_times(tmp_path / "missing.json")


# ---------------------------------------------------------------- running it (the stand-in, through PATH)

@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Put the stand-in trtexec first on PATH; returns the file its arguments are written to."""
    monkeypatch.setenv("PATH", f"{DATA}{os.pathsep}{os.environ['PATH']}")
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_ARGV", str(argv_file))
    for name in ("REPLAY", "TIMES", "SLEEP", "EXIT"):
        monkeypatch.delenv(f"EDGEFUSE_TRTEXEC_STANDIN_{name}", raising=False)
    return argv_file


def replay(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_REPLAY", ",".join(names))


def test_find_trtexec(standin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert find_trtexec() == DATA / "trtexec"
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(EdgefuseError, match="/usr/src/tensorrt/bin/trtexec"):
        find_trtexec(candidates=())
    jetson = tmp_path / "jetpack" / "trtexec"
    jetson.parent.mkdir()
    jetson.write_text("#!/bin/sh\n", encoding="utf-8")
    jetson.chmod(0o755)
    assert find_trtexec(candidates=(tmp_path / "nothing", jetson)) == jetson
    with pytest.raises(EdgefuseError, match="trtexec not found"):
        run_trtexec(["trtexec", "--help"], 10, step="version probe")


def test_probe_version(standin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replay(monkeypatch, "trt8.2.1_explicit_batch_warning.log")
    assert probe_version() == "8.2.1"
    assert json.loads(standin.read_text()) == ["--help"]
    replay(monkeypatch, "trt8.6.2_agx_orin_jp6dp.log")  # no '[TensorRT vN]' line in it
    with pytest.raises(EdgefuseError, match="give the TensorRT version"):
        probe_version()


def test_build_end_to_end(standin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    replay(monkeypatch, "trt10.16.2_orin_nx_build_start.log", "build_engine_built.log")
    engine, cache = tmp_path / "m.engine", tmp_path / "m.cache"
    settings = build_with_trtexec(tmp_path / "m.onnx", engine, flags=["FP16"], profiles=PROFILE, workspace_mb=512,
                                  timing_cache=cache)  # the version is probed (the recording says 10.16.2)
    assert engine.read_bytes().startswith(b"edgefuse trtexec stand-in")
    assert settings["trtexec_version"] == "10.16.2" and settings["trtexec_build_seconds"] == 661.648
    args = json.loads(standin.read_text())
    assert shlex.split(settings["trtexec_command"]) == [str(DATA / "trtexec"), *args]
    assert f"--saveEngine={engine}" in args and "--fp16" in args and "--skipInference" in args
    assert "--memPoolSize=workspace:512M" in args and f"--timingCacheFile={cache}" in args
    assert "--maxShapes=clips:8x8x3x224x224" in args
    assert settings["flags"] == ["FP16"] and settings["reused_timing_cache"] is False
    assert settings["gpu_fallback_layers"] == [] and settings["builder"] == "trtexec"
    assert settings["trtexec_device"] == {"name": None, "compute_capability": None}  # not in this recording


def test_build_failures(standin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"stale")
    replay(monkeypatch, "fail_parse_trt8.6.1.log")
    with pytest.raises(EdgefuseError, match=r"trtexec build failed \(exit 1\): TensorRT's ONNX parser"):
        build_with_trtexec(tmp_path / "m.onnx", engine, version="8.6.1")
    assert not engine.exists()  # the stale engine is gone, none was written
    replay(monkeypatch, "trt10.16.2_orin_nx_build_start.log")
    with pytest.raises(EdgefuseError, match="made for TensorRT 8.6.1 but trtexec is 10.16.2"):
        build_with_trtexec(tmp_path / "m.onnx", engine, version="8.6.1")
    replay(monkeypatch, "dla_fallback_trt8.log")
    with pytest.raises(EdgefuseError, match="3 layer\\(s\\) cannot run on DLA"):
        build_with_trtexec(tmp_path / "m.onnx", engine, flags=["FP16"], version="8.2.1", dla_core=0)
    settings = build_with_trtexec(tmp_path / "m.onnx", engine, flags=["FP16"], version="8.2.1", dla_core=0,
                                  gpu_fallback=True)
    assert settings["gpu_fallback_layers"] == ["Embedding matrix", "Gather in embedding", "LSTM encoder"]
    assert "--allowGPUFallback" in json.loads(standin.read_text())
    with pytest.raises(EdgefuseError, match="no trtexec equivalent"):
        build_with_trtexec(tmp_path / "m.onnx", engine, flags=["SPARSE_WEIGHTS"], version="8.2.1")


def test_timing_end_to_end(standin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = [0.40, 0.41, 0.39, 0.45, 0.40]
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_TIMES", str(write_times(tmp_path / "t.json", raw)))
    replay(monkeypatch, "trt8.4.0_xavier_agx.log")
    report, times, command = time_with_trtexec(tmp_path / "m.engine", version="8.4.0", iterations=50)
    assert report.version == "8.4.0" and report.passed is True and times.latency_ms == raw
    args = json.loads(standin.read_text())
    assert "--percentile=99" in args and "--iterations=50" in args
    assert any(a.startswith("--exportTimes=") for a in args) and shlex.split(command)[1:] == args
    assert Latency(**bench_figures(report, 16, 1, times).latency) == Latency.of(raw, 16, 1)


def test_timing_failures(standin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    replay(monkeypatch, "trt10.2_timing_start.log")  # a run that stopped before its summary
    with pytest.raises(EdgefuseError, match="no 'Latency:' line"):
        time_with_trtexec(tmp_path / "m.engine", version="10.2.0")
    replay(monkeypatch, "trt10_rtx_summary.log")  # a summary, but no --exportTimes file written
    with pytest.raises(EdgefuseError, match="no --exportTimes file"):
        time_with_trtexec(tmp_path / "m.engine", version="10.2.0")
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_SLEEP", "5")
    with pytest.raises(EdgefuseError, match="trtexec timing timed out after 0.5 s"):
        time_with_trtexec(tmp_path / "m.engine", version="10.2.0", timeout_s=0.5)
    monkeypatch.delenv("EDGEFUSE_TRTEXEC_STANDIN_SLEEP")
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_EXIT", "3")
    replay(monkeypatch, "trt8.6.3_device_info.log")
    with pytest.raises(EdgefuseError, match=r"failed \(exit 3, TensorRT 8.6.3\): Loading standard plugins"):
        run_trtexec(["trtexec", "--loadEngine=m.engine"], 30, step="timing")


def test_not_executable(tmp_path: Path) -> None:
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\n", encoding="utf-8")
    exe.chmod(0o644)
    with pytest.raises(EdgefuseError, match="not executable"):
        run_trtexec([str(exe), "--help"], 10)
    with pytest.raises(EdgefuseError, match="not found"):
        run_trtexec([str(tmp_path / "absent")], 10)


def test_build_engine_command_falls_back_to_trtexec(standin: Path, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """``edgefuse build-engine --device jetson_orin_nx`` where TensorRT's Python bindings do not import (here: only
    the type stubs exist) builds with trtexec: the STAND-IN replays a recorded 10.16.2 Orin NX build (TensorRT
    cannot exist on this machine). The engine and its sidecar appear together, with the exact command recorded."""
    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from edgefuse.backends.sidecar import read_sidecar
    from edgefuse.cli import cli

    graph = helper.make_graph([helper.make_node("Relu", ["clips"], ["logits"])], "g",
                              [helper.make_tensor_value_info("clips", TensorProto.FLOAT, [1, 8, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8, 3, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    replay(monkeypatch, "trt10.16.2_orin_nx_build_start.log", "build_engine_built.log")
    engine = tmp_path / "m.plan"
    res = CliRunner().invoke(cli, ["build-engine", str(tmp_path / "m.onnx"), "--device", "jetson_orin_nx",
                                   "-o", str(engine)])
    assert res.exit_code == 0, res.output
    side = read_sidecar(engine)
    assert side.backend == "tensorrt" and side.backend_version == "10.16.2" and side.device == "jetson_orin_nx"
    assert side.settings["builder"] == "trtexec" and "--saveEngine=" + str(engine) in side.settings["trtexec_command"]
    assert side.precision == "fp32" and "--fp16" not in json.loads(standin.read_text())
    res = CliRunner().invoke(cli, ["build-engine", str(tmp_path / "m.onnx"), "--device", "jetson_orin_nx",
                                   "--backend", "tensorrt", "-o", str(tmp_path / "n.plan")])
    assert res.exit_code == 1 and "python3-libnvinfer" in res.output and not (tmp_path / "n.plan").exists()


def test_bench_times_tensorrt_engines_with_trtexec(standin: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """``edgefuse bench`` on a TensorRT engine where the Python bindings do not import: trtexec times it (the
    STAND-IN replays a recorded 8.4.0 timing and copies per-run times written here in --exportTimes' format), and the
    row's figures are bench's own arithmetic on those runs, beside an ONNX Runtime row timed as usual."""
    import onnx
    from onnx import TensorProto, helper

    from edgefuse.bench import BenchConfig, bench
    from edgefuse.graph.metadata import set_metadata

    x = helper.make_tensor_value_info("clips", TensorProto.FLOAT, [1, 2, 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["clips"], ["logits"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model = set_metadata(model, {"segments": 2, "input_size": 4})
    onnx.save(model, str(tmp_path / "m.onnx"))
    replay(monkeypatch, "trt10.16.2_orin_nx_build_start.log", "build_engine_built.log")
    from edgefuse.backends import BuildConfig, build_engine

    engine = build_engine(BuildConfig(tmp_path / "m.onnx", tmp_path / "m.plan", device="jetson_orin_nx")).path
    raw = [0.40, 0.41, 0.39, 0.45, 0.40]
    monkeypatch.setenv("EDGEFUSE_TRTEXEC_STANDIN_TIMES", str(write_times(tmp_path / "t.json", raw)))
    replay(monkeypatch, "trt8.4.0_xavier_agx.log")
    rep = bench(BenchConfig(engines=(engine, tmp_path / "m.onnx"), device="cpu", iterations=5, warmup=1,
                            progress=False))
    trt_row, ort_row = rep.rows
    assert trt_row.backend == "tensorrt (trtexec)" and trt_row.raw_ms == raw and trt_row.command
    assert trt_row.latency == Latency.of(raw, 1, 2) and "--iterations=5" in json.loads(standin.read_text())
    assert ort_row.backend == "onnxruntime" and len(ort_row.raw_ms) == 5
    assert type(rep).from_dict(json.loads(json.dumps(rep.to_dict()))).rows[0].command == trt_row.command
    with pytest.raises(EdgefuseError, match="TensorRT engines only"):
        bench(BenchConfig(engines=(tmp_path / "m.onnx",), device="cpu", timer="trtexec", progress=False,
                          iterations=1))


def _clip_graph(path: Path, batch: int | str = 1) -> Path:
    import onnx
    from onnx import TensorProto, helper

    from edgefuse.graph.metadata import set_metadata

    x = helper.make_tensor_value_info("clips", TensorProto.FLOAT, [batch, 2, 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["clips"], ["logits"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    meta = {"segments": 2, "input_size": 4} | ({"dynamic_ranges": {"N": [1, 1, 4]}} if batch == "N" else {})
    onnx.save(set_metadata(model, meta), str(path))
    return path


def test_dla_rules_reach_the_command_line_before_a_build(standin: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """Every DLA refusal is one line and exit 1, with no engine written; the version facts come from the trtexec
    STAND-IN's recorded 8.4.0 / 10.16.2 output (TensorRT cannot exist here). A valid DLA INT8 build passes the
    calibration cache to trtexec (--calib) with --useDLACore and the INT8 + FP16 flags."""
    from click.testing import CliRunner

    from edgefuse.cli import cli

    static, dynamic = _clip_graph(tmp_path / "s.onnx"), _clip_graph(tmp_path / "d.onnx", batch="N")
    cache = tmp_path / "m.cache"
    cache.write_text("TRT-8400-EntropyCalibration2\nclips: 3c010a14\n", encoding="utf-8")

    def build(graph: Path, *extra: str) -> tuple[int, str]:
        out = tmp_path / "m.plan"
        out.unlink(missing_ok=True)
        res = CliRunner().invoke(cli, ["build-engine", str(graph), "--device", "jetson_agx_orin", "-o", str(out),
                                       *extra])
        assert res.exit_code != 0 or out.is_file()
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        if res.exit_code:  # status lines (the trtexec probe) may precede it; the failure is one line
            assert not out.exists() and len(errors) == 1 and "Traceback" not in res.output, res.output
        return res.exit_code, errors[0] if errors else res.output

    replay(monkeypatch, "trt8.4.0_xavier_agx.log", "build_engine_built.log")
    assert build(static, "--dla", "2")[1].count("0..1") == 1  # AGX Orin has DLA cores 0 and 1
    code, text = build(static, "--dla", "0", "--precision", "fp32")
    assert code == 1 and "FP16 or INT8 only" in text
    code, text = build(dynamic, "--dla", "0")
    assert code == 1 and "min = opt = max" in text and "--shapes clips:1x2x3x4x4" in text
    code, text = build(static, "--dla", "0", "--precision", "int8")
    assert code == 1 and "calibration cache" in text
    code, text = build(static, "--dla", "0", "--precision", "int8", "--calibration-cache", str(cache))
    assert code == 0, text
    args = json.loads(standin.read_text())
    assert "--useDLACore=0" in args and f"--calib={cache}" in args and {"--int8", "--fp16"} <= set(args)
    replay(monkeypatch, "trt10.16.2_orin_nx_build_start.log")
    code, text = build(static, "--dla", "0", "--precision", "fp16")
    assert code == 1 and "DLA" in text and "10.16" in text
