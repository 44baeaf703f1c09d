"""A TensorRT engine timed with trtexec over SSH on a device without edgefuse, with energy from tegrastats there
(edgefuse.bench.remote_trtexec), against a REAL OpenSSH server (tests/sshd.py: /usr/sbin/sshd on 127.0.0.1; the
"device" is this machine). Nothing of SSH is mocked.

TensorRT, trtexec and Jetsons cannot exist on this machine or in CI, so the device's ``trtexec`` and ``tegrastats``
are STAND-INS that replay recorded real output: ``tests/data/trtexec/trtexec`` prints a recorded trtexec log and
copies an --exportTimes file written here in trtexec's format; ``tests/data/tegrastats/tegrastats`` writes recorded
real tegrastats lines to its --logfile every --interval; ``nvpmodel`` is a two-line script made here that prints a
recorded ``nvpmodel -q`` output. They sit first on the sshd sessions' PATH (with this interpreter as ``python3``).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sshd import MISSING, SSHD, Sshd, start_sshd

from edgefuse.backends.remote import HostSpec, RemoteDevice, RemoteError, RemoteHost, Timeouts, detect_remote
from edgefuse.backends.sidecar import Sidecar
from edgefuse.backends.trtexec import (
    ExportedTimes,
    command_string,
    failure_reason,
    parse_report,
    read_export_times,
)
from edgefuse.bench.remote_trtexec import clips_run, sample_times, timed_window, trtexec_row_remote
from edgefuse.bench.report import BenchRow, Latency
from edgefuse.bench.trtexec import trtexec_bench_row
from edgefuse.devices.jetson import parse_tegrastats
from edgefuse.errors import EdgefuseError

pytest.importorskip("asyncssh")
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason=MISSING)

DATA = Path(__file__).parent / "data"
TRTEXEC = DATA / "trtexec" / "trtexec"  # the stand-in
TEGRASTATS = DATA / "tegrastats" / "tegrastats"  # the stand-in
TIMING_LOG = DATA / "trtexec" / "trt8.2_xavier_nx.log"  # a real TensorRT 8.2 timing summary (Xavier NX)
FAIL_LOG = DATA / "trtexec" / "fail_build_trt8.5.log"  # a real failed run
TEGRA_LINES = DATA / "tegrastats" / "orin_nano_jp6_beszel.txt"  # two real lines: VDD_IN 12479 mW and 4824 mW
NVPMODEL_Q = DATA / "jetson_tools" / "nvpmodel_q_thor_jp7_jetpack_nixos.txt"  # "NV Power Mode: MAXN", "0"
RAW = [0.571, 0.575, 0.566, 0.602, 0.573, 0.588]
INPUT = [1, 8, 3, 224, 224]
FAST = Timeouts(connect=10, command=30, copy=30, cleanup=10)


def write_times(path: Path, latency: list[float]) -> Path:
    """A file in the format trtexec's --exportTimes writes (sampleReporting.cpp exportJSONTrace); written here."""
    runs, t = [], 0.0
    for ms in latency:
        h2d, d2h = 0.1 * ms, 0.05 * ms
        runs.append({"startEnqMs": t, "endEnqMs": t + 0.01, "startH2dMs": t, "endH2dMs": t + h2d,
                     "startComputeMs": t + h2d, "endComputeMs": t + ms - d2h, "startD2hMs": t + ms - d2h,
                     "endD2hMs": t + ms, "h2dMs": h2d, "computeMs": ms - h2d - d2h, "d2hMs": d2h, "latencyMs": ms})
        t += ms
    path.write_text(json.dumps(runs), encoding="utf-8")
    return path


def sidecar(dynamic: bool) -> Sidecar:
    """A TensorRT 8.2.1 engine's sidecar (the recording's version), its batch dynamic or not."""
    profile = [INPUT, [2, *INPUT[1:]], [4, *INPUT[1:]]] if dynamic else [INPUT, INPUT, INPUT]
    return Sidecar(backend="tensorrt", backend_version="8.2.1", device="jetson_xavier_nx",
                   hardware={"name": "Xavier", "compute_capability": "7.2"}, precision="fp16", engine_sha256="0" * 64,
                   source_onnx="tsm.onnx", source_onnx_sha256="0" * 64, profiles={"clips": profile})


@dataclass
class Device:
    sshd: Sshd
    bin: Path  # the stand-ins, first on the sessions' PATH
    tmp: Path  # the sessions' TMPDIR (the remote temporary folders go there)
    engine: Path  # a placeholder engine file "on the device"
    argv: Path  # where the trtexec stand-in writes the arguments it got
    times: Path  # the --exportTimes content it copies
    known_hosts: Path

    @property
    def spec(self) -> HostSpec:
        return HostSpec(self.sshd.user, "127.0.0.1", self.sshd.port, name="xnx", identity=self.sshd.user_key)


def standins_running(bin_dir: Path, name: str = "") -> list[int]:
    """Processes (stand-ins ``name*``, or coreutils' timeout around one) started from ``bin_dir``, by /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f"{bin_dir}/{name}" in cmdline:
                out.append(int(d.name))
    return out


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[Callable[..., Device]]:
    """Start a loopback sshd as a device whose sessions get ``env`` over the defaults (a timing that passes);
    every sshd is stopped at the end, and any stand-in left running (a test failed) is killed by its pid."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    started: list[Sshd] = []
    bins: list[Path] = []

    def make(**env: str) -> Device:
        root = tmp_path / f"device{len(started)}"
        bin_dir, tmp = root / "bin", root / "tmp"
        bin_dir.mkdir(parents=True)
        tmp.mkdir()
        bins.append(bin_dir)
        (bin_dir / "python3").symlink_to(sys.executable)
        (bin_dir / "trtexec").symlink_to(TRTEXEC)
        (bin_dir / "tegrastats").symlink_to(TEGRASTATS)
        nvpmodel = bin_dir / "nvpmodel"  # prints a recorded `nvpmodel -q` (without the file's source header)
        nvpmodel.write_text(f"#!/bin/sh\ngrep -v '^#' {NVPMODEL_Q}\n", encoding="utf-8")
        nvpmodel.chmod(0o755)
        engine = root / "tsm.plan"
        engine.write_bytes(b"placeholder: not a TensorRT engine\n")
        argv, times = root / "argv.json", write_times(root / "times.json", RAW)
        session = {"TMPDIR": str(tmp), "EDGEFUSE_TRTEXEC_STANDIN_REPLAY": str(TIMING_LOG),
                   "EDGEFUSE_TRTEXEC_STANDIN_TIMES": str(times), "EDGEFUSE_TRTEXEC_STANDIN_ARGV": str(argv),
                   "EDGEFUSE_TEGRASTATS_STANDIN_REPLAY": str(TEGRA_LINES), **env}
        server = start_sshd(root / "sshd", extra_path=(str(bin_dir),), session_env=session)
        started.append(server)
        known = root / "known_hosts"
        known.write_text(server.known_hosts_line(), encoding="utf-8")
        return Device(server, bin_dir, tmp, engine, argv, times, known)

    try:
        yield make
    finally:
        for s in started:
            s.stop()
        for b in bins:
            for pid in standins_running(b):
                os.kill(pid, signal.SIGKILL)


async def _time(device: Device, calls: list[tuple[Sidecar, bool]],
                timeouts: Timeouts) -> tuple[list[tuple[BenchRow, list[str]]], RemoteDevice]:
    """Each (sidecar, energy) timed in turn on one connection: its row and the argv trtexec got."""
    out = []
    async with RemoteHost(device.spec, known_hosts=device.known_hosts, timeouts=timeouts) as dev:
        found = await detect_remote(dev)
        for side, energy in calls:
            row = await trtexec_row_remote(dev, found, str(device.engine), side, "tsm.plan", batch=1, frames=8,
                                           input_shape=INPUT, iterations=len(RAW), warmup_runs=2, energy=energy)
            out.append((row, json.loads(device.argv.read_text())))
    return out, found


def time_remote(device: Device, *calls: tuple[Sidecar, bool],
                timeouts: Timeouts = FAST) -> tuple[list[tuple[BenchRow, list[str]]], RemoteDevice]:
    return asyncio.run(_time(device, list(calls), timeouts))


def fails(device: Device, side: Sidecar, timeouts: Timeouts = FAST) -> RemoteError:
    with pytest.raises(RemoteError) as err:
        time_remote(device, (side, True), timeouts=timeouts)
    return err.value


def totals(path: Path) -> list[int]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    return [p for p in (parse_tegrastats(ln).total_power_mw for ln in lines) if p is not None]


# -- pure: the energy window ----------------------------------------------------------------------------------
def test_samples_spread_over_the_run_and_the_window_ends_with_trtexec() -> None:
    lines = [ln for ln in TEGRA_LINES.read_text().splitlines() if not ln.startswith("#")]
    samples = sample_times([*lines, "not tegrastats", ""], 100.0, 101.0)
    assert [s.t for s in samples] == [100.25, 100.75] and [s.sample.total_power_mw for s in samples] == totals(
        TEGRA_LINES)
    assert sample_times(["", "# nothing"], 0.0, 1.0) == []
    report = parse_report(TIMING_LOG.read_text())  # Throughput 27207 qps, Total Host Walltime 3.00158 s
    times = ExportedTimes(RAW, RAW, RAW, RAW)
    assert timed_window(10.0, 20.0, report, times, 200) == (20.0 - 3.00158 - 0.2, 20.0)
    assert timed_window(19.0, 20.0, report, times, 200) == (19.0, 20.0)  # never before trtexec started
    assert clips_run(report, times, 2, 200) == (len(RAW) + round(27207 * 0.2)) * 2
    bare = dataclasses.replace(report, throughput_qps=None, total_host_walltime_s=None)
    assert clips_run(bare, times, 1, 100) == len(RAW) + round(100 / (sum(RAW) / len(RAW)))
    assert timed_window(0.0, 20.0, bare, times, 100) == pytest.approx((20.0 - sum(RAW) / 1000 - 0.1, 20.0))


# -- against a real sshd --------------------------------------------------------------------------------------
@needs_sshd
def test_remote_trtexec_row_matches_local_parsing_with_energy(devices: Callable[..., Device]) -> None:
    device = devices()
    side = sidecar(dynamic=True)
    # twice with energy on one connection (each timing its own files), then without, on a static engine
    timed, found = time_remote(device, (side, True), (side, True), (sidecar(dynamic=False), False))
    assert found.trtexec == str(device.bin / "trtexec") and found.tegrastats == str(device.bin / "tegrastats")
    assert found.edgefuse is not None  # this interpreter is the device's python3; the trtexec path does not use it
    assert not any(device.tmp.iterdir())  # the remote temporary folder was removed
    assert standins_running(device.bin, "tegrastats") == []  # tegrastats was stopped after each timing
    (row, argv), (again, argv2), (plain, argv3) = timed

    # the argv the device's trtexec got: the local builder's, with the device's paths
    assert argv[0] == f"--loadEngine={device.engine}"
    assert "--shapes=clips:1x8x3x224x224" in argv and f"--iterations={len(RAW)}" in argv
    assert "--warmUp=200" in argv and "--percentile=99" in argv  # TensorRT 8.2: one percentile
    export = [a for a in argv if a.startswith("--exportTimes=")]
    assert len(export) == 1 and export[0].startswith(f"--exportTimes={device.tmp}/edgefuse.")
    assert argv2 != argv and [a for a in argv2 if not a.startswith("--exportTimes=")] == argv[:-1]

    # the row is what local parsing of the same output and times gives, the command the one that ran
    command = command_string([str(device.bin / "trtexec"), *argv])
    local = trtexec_bench_row("tsm.plan", side, parse_report(TIMING_LOG.read_text()), read_export_times(device.times),
                              command, 1, 8)
    assert dataclasses.replace(row, power=None) == local
    assert row.latency == Latency.of(RAW, 1, 8) and row.raw_ms == RAW and row.command == command
    assert row.backend == "tensorrt (trtexec)" and row.timings["throughput_qps"] == 27207.0
    assert BenchRow.from_dict(json.loads(json.dumps(row.to_dict()))) == row

    # power from the recorded tegrastats lines sampled on the device during each run
    lo, hi = min(totals(TEGRA_LINES)), max(totals(TEGRA_LINES))
    for r in (row, again):
        assert r.power is not None and r.power.power_mode == "MAXN" and r.power.clocks_pinned is None
        assert r.power.mean_power_mw is not None and lo <= r.power.mean_power_mw <= hi
        assert r.power.energy_mj_per_clip is not None and r.power.energy_mj_per_clip > 0

    # without energy: no power; a static engine gets no --shapes
    assert plain.power is None and not any(a.startswith("--shapes") for a in argv3)
    assert plain.latency == Latency.of(RAW, 1, 8)


@needs_sshd
def test_no_tegrastats_line_gives_no_power_not_a_failure(devices: Callable[..., Device], tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "no_lines.txt"
    empty.write_text("# a tegrastats that prints nothing (no line recorded)\n", encoding="utf-8")
    device = devices(EDGEFUSE_TEGRASTATS_STANDIN_REPLAY=str(empty))
    with caplog.at_level(logging.WARNING, logger="edgefuse.bench.remote_trtexec"):
        [(row, _)], _ = time_remote(device, (sidecar(dynamic=True), True))
    assert row.power is None and row.latency == Latency.of(RAW, 1, 8)
    assert any("tegrastats wrote no line" in r.getMessage() and "xnx" in r.getMessage() for r in caplog.records)
    assert standins_running(device.bin, "tegrastats") == []


@needs_sshd
def test_failing_trtexec_is_one_line_with_its_reason(devices: Callable[..., Device]) -> None:
    device = devices(EDGEFUSE_TRTEXEC_STANDIN_REPLAY=str(FAIL_LOG), EDGEFUSE_TRTEXEC_STANDIN_EXIT="1")
    err = fails(device, sidecar(dynamic=True))
    reason = failure_reason(parse_report(FAIL_LOG.read_text()))
    assert reason is not None and "Could not find any implementation for node ConvTranspose_56" in reason
    assert err.kind == "command-failed" and err.step == "trtexec timing" and err.host == device.spec.label
    text = str(err)
    assert "\n" not in text and text.startswith(f"xnx ({device.spec.address}): trtexec timing: trtexec failed "
                                                "(exit 1): ")
    assert reason in text and "TensorRT" in text.split(reason)[1]  # then what to check
    assert standins_running(device.bin, "tegrastats") == []  # tegrastats stopped on the failure too


@needs_sshd
def test_hanging_trtexec_times_out(devices: Callable[..., Device]) -> None:
    device = devices(EDGEFUSE_TRTEXEC_STANDIN_SLEEP="60")
    err = fails(device, sidecar(dynamic=True), Timeouts(connect=10, command=3, copy=10, cleanup=10))
    assert err.kind == "timeout" and err.step == "trtexec timing" and "\n" not in str(err)
    assert str(err).startswith(f"xnx ({device.spec.address}): trtexec timing: no end within 3 s")
    # tegrastats is stopped here; stopping the timed-out trtexec is RemoteHost.run's part (tests/test_remote.py)
    assert standins_running(device.bin, "tegrastats") == []


@needs_sshd
def test_refusals_before_running_name_the_host(devices: Callable[..., Device]) -> None:
    """No trtexec on the device, or an engine of a TensorRT trtexec cannot be driven for: one line each, nothing
    run."""
    device = devices()

    async def go() -> tuple[RemoteError, EdgefuseError]:
        async with RemoteHost(device.spec, known_hosts=device.known_hosts, timeouts=FAST) as dev:
            found = await detect_remote(dev)
            kw = {"batch": 1, "frames": 8, "input_shape": INPUT, "iterations": 2, "warmup_runs": 1}
            with pytest.raises(RemoteError) as missing:
                await trtexec_row_remote(dev, dataclasses.replace(found, trtexec=None), str(device.engine),
                                         sidecar(True), "a", **kw)  # type: ignore[arg-type]
            old = dataclasses.replace(sidecar(True), backend_version="7.2.1")
            with pytest.raises(EdgefuseError) as refused:
                await trtexec_row_remote(dev, found, str(device.engine), old, "a", **kw)  # type: ignore[arg-type]
            return missing.value, refused.value

    missing, refused = asyncio.run(go())
    assert missing.kind == "missing-tool" and str(missing).startswith(f"xnx ({device.spec.address}): trtexec timing: "
                                                                      "trtexec not found on the device")
    assert str(refused).startswith(f"xnx ({device.spec.address}): trtexec timing: trtexec of TensorRT 7.2.1")
    assert "\n" not in str(missing) + str(refused) and not device.argv.exists()  # trtexec never ran
