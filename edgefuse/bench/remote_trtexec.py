"""A TensorRT engine timed on a remote device WITHOUT edgefuse there: NVIDIA's trtexec run over SSH, its output
parsed here, and (on a Jetson) the energy from tegrastats sampled there during the run.

The argv is the local bench's (:func:`edgefuse.bench.trtexec.trtexec_timing_spec` and
:func:`edgefuse.backends.trtexec.timing_argv`, with the device's trtexec), the per-run times come back from
``--exportTimes`` and the row is made by the same pure function as a local trtexec row
(:func:`edgefuse.bench.trtexec.trtexec_bench_row`). Nothing but trtexec, tegrastats, nvpmodel and a POSIX shell
(with GNU ``date``) is needed on the device.

Energy: ``tegrastats --interval 50 --logfile FILE`` runs in the background on the device (its pid in the remote
temporary folder, under ``timeout`` where the device has it, so a lost connection cannot leave it running for
ever) from before trtexec starts until after it ends, and the device's clock is read when it starts, around
trtexec, and when it is stopped. See :func:`sample_times`, :func:`timed_window` and :func:`clips_run` for what is
approximated.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import shlex
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from edgefuse.backends.remote import RemoteDevice, RemoteError, RemoteHost
from edgefuse.backends.sidecar import Sidecar
from edgefuse.backends.trtexec import (
    ExportedTimes,
    TrtexecReport,
    check_report,
    command_string,
    failure_reason,
    parse_report,
    read_export_times,
    timing_argv,
)
from edgefuse.bench.report import BenchRow, JetsonPower
from edgefuse.bench.trtexec import trtexec_bench_row, trtexec_timing_spec
from edgefuse.devices.jetson import (
    TimedSample,
    energy_per_clip_mj,
    mean_power_mw,
    parse_nvpmodel,
    parse_tegrastats,
    total_source,
)
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

STEP = "trtexec timing"
TEGRASTATS_INTERVAL_MS = 50
FIRST_SAMPLE_WAIT_S = 2.0  # how long the start waits for tegrastats' first line
STOP_WAIT_S = 2.0  # how long the stop waits for tegrastats to end on SIGTERM before SIGKILL
NOW = "date +%s.%N"  # the device's clock, in seconds (GNU date: Ubuntu / JetPack)
_STAMP = re.compile(r"^\d+(?:\.\d+)?$")


def _stamps(text: str) -> list[float]:
    """The ``date +%s.%N`` readings in ``text`` (other lines, such as shell errors, are left out)."""
    return [float(ln.strip()) for ln in text.splitlines() if _STAMP.match(ln.strip())]


def sample_times(lines: Sequence[str], started: float, stopped: float) -> list[TimedSample]:
    """tegrastats log lines as samples on the device's clock (pure).

    A log file has no arrival times (tegrastats' own timestamp, JetPack 5 on, has one-second resolution), so the
    samples are spread evenly over ``[started, stopped]``, the device clock read just before tegrastats started and
    just before it was stopped: the i-th of n at ``started + (i + 0.5) * (stopped - started) / n``. tegrastats keeps
    its interval closely, so this is off by about its start-up time at most. Lines that are not tegrastats output
    are skipped."""
    samples = []
    for line in lines:
        if not line.strip():
            continue
        try:
            samples.append(parse_tegrastats(line.strip()))
        except EdgefuseError:
            log.debug("skipping a line that is not tegrastats output: %r", line[:80])
    if not samples:
        return []
    step = max(stopped - started, 0.0) / len(samples)
    return [TimedSample(started + (i + 0.5) * step, s) for i, s in enumerate(samples)]


def timed_window(run_started: float, run_ended: float, report: TrtexecReport, times: ExportedTimes,
                 warmup_ms: int) -> tuple[float, float]:
    """The part of the trtexec run that inferred, on the device's clock (pure): the warm-up and the timed runs,
    which end when trtexec ends (it only prints its summary and frees the engine after them). Their length is
    trtexec's ``Total Host Walltime`` (else the sum of the exported latencies) plus the warm-up; engine loading
    before them is left out. The window never starts before trtexec did."""
    busy_s = (report.total_host_walltime_s or sum(times.latency_ms) / 1000.0) + warmup_ms / 1000.0
    return max(run_started, run_ended - busy_s), run_ended


def clips_run(report: TrtexecReport, times: ExportedTimes, batch: int, warmup_ms: int) -> int:
    """The clips inferred in :func:`timed_window` (pure): the exported runs plus the warm-up's, each run one batch.
    trtexec does not count its warm-up runs; they are estimated as its throughput (queries/s, else one over the
    mean latency) times the warm-up time."""
    runs = len(times.latency_ms)
    mean_ms = sum(times.latency_ms) / runs if runs else 0.0
    per_s = report.throughput_qps or (1000.0 / mean_ms if mean_ms > 0 else 0.0)
    return (runs + round(per_s * warmup_ms / 1000.0)) * batch


async def remote_power_mode(dev: RemoteHost) -> str | None:
    """The device's nvpmodel power mode name (``MAXN``, ``15W``), or None where nvpmodel is missing or says
    nothing readable."""
    result = await dev.run("n=$(command -v nvpmodel || { [ -x /usr/sbin/nvpmodel ] && echo /usr/sbin/nvpmodel; }) "
                           '&& "$n" -q 2>/dev/null', step="read the power mode (nvpmodel -q)", check=False)
    if not result.stdout.strip():
        log.debug("%s: no nvpmodel power mode (exit %s)", dev.spec.label, result.exit_status)
        return None
    try:
        return parse_nvpmodel(result.stdout)[0]
    except EdgefuseError as e:
        log.warning("%s: %s", dev.spec.label, e)
        return None


class _Tegrastats:
    """tegrastats in the background on the device, its log and pid in the remote temporary folder."""

    def __init__(self, dev: RemoteHost, exe: str, prefix: str) -> None:
        self.dev, self.exe = dev, exe
        self.log_path, self.pid_path = f"{prefix}.tegrastats.log", f"{prefix}.tegrastats.pid"
        self.started: float | None = None  # the device clock just before tegrastats started
        self.stopped: float | None = None  # and just before it was stopped
        self.running = False

    async def start(self) -> None:
        q_log, q_pid = shlex.quote(self.log_path), shlex.quote(self.pid_path)
        limit = int(self.dev.timeouts.command + 120)  # where the device has coreutils' timeout: never left running
        tries = int(FIRST_SAMPLE_WAIT_S / 0.05)
        self.running = True  # from here on, stop() is owed (the command may fail after starting it)
        done = await self.dev.run(
            f"{NOW}\n"
            f"if command -v timeout >/dev/null 2>&1; then set -- timeout -s TERM {limit} {shlex.quote(self.exe)}; "
            f"else set -- {shlex.quote(self.exe)}; fi\n"
            f'"$@" --interval {TEGRASTATS_INTERVAL_MS} --logfile {q_log} </dev/null >/dev/null 2>&1 &\n'
            f"echo $! > {q_pid}\n"
            f"i=0; while [ ! -s {q_log} ] && [ $i -lt {tries} ]; do sleep 0.05; i=$((i + 1)); done",
            step="start tegrastats", timeout=self.dev.timeouts.command)
        stamps = _stamps(done.stdout)
        self.started = stamps[0] if stamps else None

    async def stop(self) -> None:
        """SIGTERM, SIGKILL when it has not ended after a while; the device clock is read just before."""
        if not self.running:
            return
        self.running = False
        q_pid = shlex.quote(self.pid_path)
        tries = int(STOP_WAIT_S / 0.05)
        done = await self.dev.run(
            f"{NOW}\n"
            f"p=$(cat {q_pid} 2>/dev/null) || exit 0\n"
            # alive: not ended, and not a zombie waiting for init to reap it (ended too)
            'alive() { kill -0 "$p" 2>/dev/null && ! grep -qs "^State:.*Z" "/proc/$p/status"; }\n'
            'kill -TERM "$p" 2>/dev/null\n'
            f"i=0; while alive && [ $i -lt {tries} ]; do sleep 0.05; i=$((i + 1)); done\n"
            # still there: SIGKILL, to timeout's process group too (it leads one; SIGKILL is not passed on)
            'alive && { kill -s KILL -- "-$p" 2>/dev/null; kill -s KILL "$p" 2>/dev/null; }\n'
            f"rm -f {q_pid}; exit 0",
            step="stop tegrastats", check=False, timeout=self.dev.timeouts.cleanup)
        stamps = _stamps(done.stdout)
        self.stopped = stamps[0] if stamps else None

    async def stop_quietly(self) -> None:
        """stop(), its own failure logged: a failed timing's error is the one raised, and a missing stop time only
        means no power figures."""
        try:
            await self.stop()
        except RemoteError as e:
            log.warning("%s: could not stop tegrastats (%s)", self.dev.spec.label, e)

    async def fetch(self, local: Path) -> list[str]:
        try:
            await self.dev.get(self.log_path, local)
        except RemoteError as e:
            if e.kind != "command-failed":
                raise
            return []  # no log file: tegrastats did not start
        return local.read_text(encoding="utf-8", errors="replace").splitlines()


def _version(host: str, sidecar: Sidecar, found: RemoteDevice) -> str:
    """The TensorRT version whose trtexec flags to use: the engine's (its sidecar), else the device's."""
    version = sidecar.backend_version or found.tensorrt
    if not version:
        raise EdgefuseError(f"{host}: {STEP}: the TensorRT version is unknown (none in the engine's sidecar, none "
                            "found on the device); rebuild the engine with edgefuse so its sidecar records it")
    if found.tensorrt and sidecar.backend_version and \
            found.tensorrt.split(".")[:2] != sidecar.backend_version.split(".")[:2]:
        log.warning("%s: the engine was built with TensorRT %s but the device has %s; trtexec will likely refuse "
                    "to load it (rebuild it on the device)", host, sidecar.backend_version, found.tensorrt)
    return version


def _failed(host: str, status: int | None, output: str, hint: str) -> RemoteError:
    report = parse_report(output)
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    reason = failure_reason(report) or (lines[-1] if lines else "no output")
    version = f", TensorRT {report.version}" if report.version else ""
    return RemoteError(host, STEP, "command-failed", f"trtexec failed (exit {status}{version}): {reason}; {hint}")


async def trtexec_row_remote(dev: RemoteHost, found: RemoteDevice, engine: str, sidecar: Sidecar, name: str, *,
                             batch: int, frames: int, input_shape: list[int], iterations: int, warmup_runs: int,
                             energy: bool = True) -> BenchRow:
    """Time ``engine`` (its path ON the device) with the device's trtexec over ``dev`` and return its bench row,
    with the power mode, mean power and energy per clip when ``energy`` and the device has tegrastats.

    ``sidecar`` is the engine's, read here: its profiles give ``--shapes`` for dynamic inputs, its settings the DLA
    core, its backend version the trtexec flags (as a local trtexec row). ``found``: what :func:`detect_remote`
    reported (trtexec's path, tegrastats'). A failure is one line naming the host and the step: a
    :class:`RemoteError` (``trtexec timing`` with trtexec's own reason when it exits non-zero, kind ``timeout`` when it
    outlives ``dev.timeouts.command``), or an :class:`EdgefuseError` for an argument trtexec cannot take.

    Energy is approximate: the samples are spread over tegrastats' run (:func:`sample_times`), the window is the
    warm-up and the timed runs at the end of trtexec's run (:func:`timed_window`), and the clips are the exported
    runs plus the warm-up's estimated count, times ``batch`` (:func:`clips_run`). No power reading (no tegrastats
    line, no power rail, no device clock) gives ``power=None`` and a warning, not a failure.
    """
    host = dev.spec.label
    if dev.tmpdir is None:
        raise EdgefuseError(f"{host}: not connected; use 'async with RemoteHost(...)'")
    if not found.trtexec:
        raise RemoteError(host, STEP, "missing-tool", "trtexec not found on the device (neither on PATH nor at "
                          "/usr/src/tensorrt/bin/trtexec); install TensorRT there (JetPack ships it)")
    if (engine == "~" or engine.startswith("~/")) and dev.home:
        engine = f"{dev.home}/{engine[2:]}"
    prefix = f"{dev.tmpdir}/trtexec.{uuid.uuid4().hex[:8]}"  # this timing's files: none left from another
    remote_times = f"{prefix}.times.json"
    try:
        spec = trtexec_timing_spec(Path(engine), sidecar, input_shape, iterations, warmup_runs,
                                   version=_version(host, sidecar, found), export_times=Path(remote_times))
        argv = timing_argv(spec, exe=found.trtexec)
    except EdgefuseError as e:  # an argument this trtexec cannot take: named with the host
        line = " ".join(str(e).split())
        raise EdgefuseError(line if line.startswith(host) else f"{host}: {STEP}: {line}") from None
    command = command_string(argv)
    sampler = _Tegrastats(dev, found.tegrastats, prefix) if energy and found.tegrastats else None
    if energy and sampler is None:
        log.info("%s: no tegrastats on the device: no power figures", host)
    mode = await remote_power_mode(dev) if sampler is not None else None

    log.info("%s: %s: %s", host, STEP, command)
    try:
        if sampler is not None:
            await sampler.start()
        done = await dev.run(f"{NOW} >&2\n{command} 2>&1\nrc=$?\n{NOW} >&2\nexit $rc", step=STEP, check=False,
                             timeout=dev.timeouts.command)
    finally:  # also on a failure or a timeout: tegrastats never outlives the timing
        if sampler is not None:
            await sampler.stop_quietly()
    output = done.stdout
    if done.exit_status != 0:
        raise _failed(host, done.exit_status, output, f"check that the engine was built for this device's TensorRT "
                      f"({found.tensorrt or 'version unknown'}) and GPU, and run the command there by hand")
    report = parse_report(output)
    try:
        check_report(report, "timing")
    except EdgefuseError as e:
        raise RemoteError(host, STEP, "command-failed", str(e)) from None

    with tempfile.TemporaryDirectory(prefix="edgefuse-remote-trtexec-") as tmp:
        local = Path(tmp) / "times.json"
        try:
            await dev.get(remote_times, local)
        except RemoteError as e:
            if e.kind != "command-failed":
                raise
            raise RemoteError(host, STEP, "command-failed", f"trtexec wrote no --exportTimes file ({remote_times}); "
                              "rerun the timing") from None
        try:
            times = read_export_times(local)
        except EdgefuseError as e:
            raise RemoteError(host, STEP, "command-failed", str(e).replace(str(local), remote_times)) from None
        lines = await sampler.fetch(Path(tmp) / "tegrastats.log") if sampler is not None else []

    row = trtexec_bench_row(name, sidecar, report, times, command, batch, frames)
    if sampler is None:
        return row
    stamps = _stamps(done.stderr)
    power = _power(host, mode, lines, sampler, stamps, report, times, batch, spec.warmup_ms)
    return dataclasses.replace(row, power=power)


def _power(host: str, mode: str | None, lines: list[str], sampler: _Tegrastats, stamps: list[float],
           report: TrtexecReport, times: ExportedTimes, batch: int, warmup_ms: int) -> JetsonPower | None:
    if sampler.started is None or sampler.stopped is None or len(stamps) < 2:
        log.warning("%s: the device's clock did not read as seconds (date +%%s.%%N): no power figures", host)
        return None
    samples = sample_times(lines, sampler.started, sampler.stopped)
    if not samples:
        log.warning("%s: tegrastats wrote no line during the timing: no power figures (run tegrastats there by "
                    "hand; some boards need sudo)", host)
        return None
    start, end = timed_window(stamps[0], stamps[-1], report, times, warmup_ms)
    clips = clips_run(report, times, batch, warmup_ms)
    try:
        if end <= start:
            raise EdgefuseError(f"the timed window is empty ({start} to {end})")
        src = total_source(samples, start, end)
        return JetsonPower(mode, None, mean_power_mw(samples, start, end),
                           energy_per_clip_mj(samples, start, end, clips), src.short() if src else None)
    except EdgefuseError as e:
        log.warning("%s: no power figures: %s", host, e)
        return None
