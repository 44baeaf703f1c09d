"""Jetson telemetry: parse ``tegrastats``, sample it around a workload, integrate energy, read nvpmodel / jetson_clocks.

``tegrastats`` prints one line per interval. Its format changed with every Jetson generation (and JetPack):

* Nano (JetPack 4): ``RAM 1464/3964MB ... CPU [90%@1479,...] EMC_FREQ 6%@1600 GR3D_FREQ 7%@768 ... PLL@28C ...
  POM_5V_IN 2746/2911 POM_5V_GPU 159/161 POM_5V_CPU 796/989`` -- power in mW without a unit, ``current/average``.
* Xavier NX (JetPack 4): ``... VDD_IN 6140/5510 VDD_CPU_GPU_CV 2706/2119 VDD_SOC 1074/1051``; JetPack 5 adds the unit
  (``VDD_IN 2763mW/2846mW``), a leading timestamp and ``GR3D_FREQ 0%@[114]``.
* AGX Xavier: ``GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306`` -- no input rail.
* Orin (JetPack 5/6): ``VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW ...`` (AGX) or
  ``VDD_IN 12479mW/12479mW VDD_CPU_GPU_CV ... VDD_SOC ...`` (Orin NX / Nano); the JetPack 6 lines seen write
  temperatures in lower case (``cpu@53.968C``).
* JetPack 7 (AGX Orin, Thor): rails print ``current/average/peak`` (``VIN 87426mW/43713mW/87426mW``), temperatures may
  print ``current/max`` (``cpu@52.968C/52.968C``), ``GR3D_FREQ`` may print ``12%@[1300,1300]`` or nothing at all.

Which rail is the board's total is board-specific; see :func:`parse_tegrastats`. Unknown tokens are ignored.
"""
from __future__ import annotations

import itertools
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Self

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

# Input rails that measure the whole module (or board) input, best first:
#  VDD_IN     Xavier NX, Orin NX / Nano, TX2 -- "the total power of the module" (NVIDIA, forum thread 200883)
#  POM_5V_IN  Nano -- "measures the overall 5V input to the board" (NVIDIA, thread 73608; jetson_stats issue #51)
#  VIN        Thor -- the INA238 on the module input ("total VIN monitoring", NVIDIA, thread 366461)
# AGX Xavier and AGX Orin have no such rail: the total is the sum of the rails, as jetson_stats computes it
# (jtop/core/power.py total_power(); issue #344). On AGX Orin VIN_SYS_5V0 is only the 5 V system rail, not the total.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
OFFLINE_C = -256.0  # what tegrastats prints for a thermal zone that is powered off (jetson_stats TEMPERATURE_OFFLINE)
_NOT_CONNECTED = {"NC"}  # AGX Orin prints unused INA3221 channels as "NC 0mW/0mW"

_TIMESTAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\b")
_RAM = re.compile(r"(?<!\S)RAM (\d+)/(\d+)([kMG])B")
_CPU = re.compile(r"(?<!\S)CPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_CPU_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"(?<!\S)GR3D(?:_FREQ)? (?:(\d+)%)?(?:@(?:\[([\d,]*)\]|(\d+)))?(?=\s|$)")
_EMC = re.compile(r"(?<!\S)EMC(?:_FREQ)? (\d+)%(?:@(\d+))?(?=\s|$)")
_TEMP = re.compile(r"(?<!\S)([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)?(?=\s|$)")
_RAIL = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (-?\d+)(mW)?/(-?\d+)(mW)?(?:/(-?\d+)(mW)?)?(?=\s|$)")
_UNIT_MB = {"k": 1 / 1024, "M": 1.0, "G": 1024.0}


@dataclass(frozen=True)
class CpuCore:
    """One core of ``CPU [...]``: load in % and clock in MHz; both None when tegrastats prints ``off``."""

    load_pct: int | None
    freq_mhz: int | None

    @property
    def online(self) -> bool:
        return self.load_pct is not None


@dataclass(frozen=True)
class TegraSample:
    """One parsed tegrastats line. Fields the line does not carry are None (or empty).

    ``rails`` maps each power rail to ``(current mW, average mW)``, the average being tegrastats' own running mean
    since it started. ``total_power_mw`` is the board total chosen as :func:`parse_tegrastats` explains, and
    ``power_rail`` says where it came from: a rail name, or ``"sum(A,B,...)"``.
    """

    timestamp: datetime | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    cpus: tuple[CpuCore, ...] = ()
    gpu_load_pct: int | None = None
    gpu_freq_mhz: int | None = None
    emc_load_pct: int | None = None
    emc_freq_mhz: int | None = None
    temperatures: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    rails: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    total_power_mw: int | None = None
    total_power_avg_mw: int | None = None
    power_rail: str | None = None


def _total_power(rails: Mapping[str, tuple[int, int]]) -> tuple[int | None, int | None, str | None]:
    for name in INPUT_RAILS:
        if name in rails:
            cur, avg = rails[name]
            return cur, avg, name
    summed = [n for n in rails if n not in _NOT_CONNECTED]
    if not summed:
        return None, None, None
    return (sum(rails[n][0] for n in summed), sum(rails[n][1] for n in summed), f"sum({','.join(summed)})")


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one line of ``tegrastats`` output (any Jetson from TX1 to Thor, JetPack 3 to 7).

    Power rails are ``NAME cur/avg`` in mW, with or without the ``mW`` unit; JetPack 7's third (peak) figure is
    dropped. The board total, ``total_power_mw``, is the first input rail present of ``VDD_IN`` (Xavier NX, Orin
    NX / Nano), ``POM_5V_IN`` (Nano) and ``VIN`` (Thor); otherwise (AGX Xavier, AGX Orin, which have no input rail)
    the sum of all rails, as jetson_stats does. Thermal zones that read -256 C (powered off) are left out. Unknown
    tokens are ignored; a line with no recognisable field raises :class:`EdgefuseError`.
    """
    ts = None
    m = _TIMESTAMP.match(line)
    if m:
        try:
            ts = datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S")
        except ValueError:
            log.debug("tegrastats timestamp %r is not a date; ignored", m.group(1))

    ram_used = ram_total = None
    m = _RAM.search(line)
    if m:
        scale = _UNIT_MB[m.group(3)]
        ram_used, ram_total = int(m.group(1)) * scale, int(m.group(2)) * scale

    cpus: list[CpuCore] = []
    m = _CPU.search(line)
    if m:
        shared = int(m.group(2)) if m.group(2) else None  # old form: CPU [17%,13%,29%,5%]@408
        for entry in m.group(1).split(","):
            core = _CPU_CORE.fullmatch(entry.strip())
            if core is None:  # "off" (or a blank slot)
                cpus.append(CpuCore(None, None))
            else:
                freq = core.group(2) or shared
                cpus.append(CpuCore(int(core.group(1)), int(freq) if freq is not None else None))

    gpu_load = gpu_freq = None
    m = _GR3D.search(line)
    if m and (m.group(1) or m.group(2) or m.group(3)):
        gpu_load = int(m.group(1)) if m.group(1) else None
        if m.group(2):  # per-GPC clocks, e.g. @[1300,1300]; report the highest, as jetson_stats does
            gpu_freq = max(int(f) for f in m.group(2).split(",") if f)
        elif m.group(3):
            gpu_freq = int(m.group(3))

    emc_load = emc_freq = None
    m = _EMC.search(line)
    if m:
        emc_load = int(m.group(1))
        emc_freq = int(m.group(2)) if m.group(2) else None

    temps: dict[str, float] = {}
    for name, value in _TEMP.findall(line):
        if float(value) <= OFFLINE_C:
            continue
        temps.setdefault(name, float(value))

    rails: dict[str, tuple[int, int]] = {}
    for name, cur, _u1, avg, _u2, _peak, _u3 in _RAIL.findall(line):
        rails.setdefault(name, (int(cur), int(avg)))

    if not (ram_total is not None or cpus or gpu_load is not None or gpu_freq is not None or emc_load is not None
            or temps or rails):
        shown = line.strip()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise EdgefuseError(f"not a tegrastats line: {shown!r}; pass one line of the output of `tegrastats`")

    total, total_avg, rail = _total_power(rails)
    return TegraSample(timestamp=ts, ram_used_mb=ram_used, ram_total_mb=ram_total, cpus=tuple(cpus),
                       gpu_load_pct=gpu_load, gpu_freq_mhz=gpu_freq, emc_load_pct=emc_load, emc_freq_mhz=emc_freq,
                       temperatures=MappingProxyType(temps), rails=MappingProxyType(rails), total_power_mw=total,
                       total_power_avg_mw=total_avg, power_rail=rail)


@dataclass(frozen=True)
class TimedSample:
    """A tegrastats sample and the ``time.monotonic()`` second its line arrived."""

    t: float
    sample: TegraSample


class TegrastatsSampler:
    """Run ``tegrastats --interval MS`` for the duration of a ``with`` block and keep every line it prints.

    ::

        with TegrastatsSampler(interval_ms=50) as ts:
            start = time.monotonic(); run_clips(); end = time.monotonic()
        joules = energy_mj(ts.samples, start, end) / 1000

    Each line is stamped with ``time.monotonic()`` when it is read (tegrastats' own timestamp has one-second
    resolution), so compare against ``time.monotonic()`` readings of the workload. tegrastats flushes each line,
    which is also what jetson_stats relies on when it reads the same pipe. ``command`` replaces the whole command
    line (tests use a script that prints recorded lines); on some JetPack 4 boards the GPU clock and rails need
    ``command=["sudo", "tegrastats", "--interval", "50"]``.
    """

    def __init__(self, interval_ms: int = 100, command: Sequence[str] | None = None, *,
                 stop_timeout_s: float = 5.0) -> None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise EdgefuseError(f"tegrastats interval must be a positive whole number of milliseconds, "
                                f"not {interval_ms!r}")
        self.interval_ms = interval_ms
        self.command = list(command) if command is not None else ["tegrastats", "--interval", str(interval_ms)]
        self.stop_timeout_s = stop_timeout_s
        self.skipped = 0  # lines that were not tegrastats lines
        self.returncode: int | None = None
        self._samples: list[TimedSample] = []
        self._stderr: deque[str] = deque(maxlen=20)
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def samples(self) -> tuple[TimedSample, ...]:
        """The samples read so far, oldest first."""
        with self._cond:
            return tuple(self._samples)

    def start(self) -> Self:
        if self._proc is not None:
            raise EdgefuseError("this TegrastatsSampler was already started; create a new one for each run")
        exe = self.command[0]
        if shutil.which(exe) is None:
            if exe == "tegrastats":
                raise EdgefuseError("tegrastats not found: it ships with JetPack (package nvidia-l4t-tools) and "
                                    "exists only on a Jetson; run this on the Jetson, or install nvidia-l4t-tools")
            raise EdgefuseError(f"{exe}: command not found; give the full path of the tegrastats command")
        log.debug("starting %s", " ".join(self.command))
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          bufsize=1, errors="replace")
        except OSError as e:
            raise EdgefuseError(f"cannot run {exe}: {e}; check that it is executable") from e
        self._threads = [threading.Thread(target=self._read_stdout, name="tegrastats-stdout", daemon=True),
                         threading.Thread(target=self._read_stderr, name="tegrastats-stderr", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            t = time.monotonic()
            line = raw.strip()
            if not line:
                continue
            try:
                sample = parse_tegrastats(line)
            except EdgefuseError:
                log.debug("skipping a line that is not tegrastats output: %r", line[:80])
                with self._cond:
                    self.skipped += 1
                continue
            with self._cond:
                self._samples.append(TimedSample(t, sample))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            if raw.strip():
                self._stderr.append(raw.rstrip())

    def wait_for_samples(self, n: int, timeout_s: float = 10.0) -> bool:
        """Block until at least ``n`` samples have arrived (True) or ``timeout_s`` passed or tegrastats ended (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._samples) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc is None or (self._proc.poll() is not None
                                                        and not self._threads[0].is_alive()):
                    return len(self._samples) >= n
                self._cond.wait(min(left, 0.1))
            return True

    def stop(self) -> tuple[TimedSample, ...]:
        """Stop tegrastats (SIGTERM, then SIGKILL) and return every sample read."""
        proc = self._proc
        if proc is None or self._stopping:
            return self.samples
        self._stopping = True
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.command[0], self.stop_timeout_s)
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(self.stop_timeout_s)
        self.returncode = proc.returncode
        samples = self.samples
        failed = self.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)
        if failed:
            detail = self._stderr[-1] if self._stderr else f"exit status {self.returncode}"
            if not samples:
                raise EdgefuseError(f"{self.command[0]} failed before printing a sample ({detail}); run "
                                    f"`{' '.join(self.command)}` by hand to see why (it may need sudo)")
            log.warning("%s ended early (%s) after %d samples", self.command[0], detail, len(samples))
        if self.skipped:
            log.info("%d lines from %s were not tegrastats output and were skipped", self.skipped, self.command[0])
        log.debug("%d tegrastats samples", len(samples))
        return samples

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        except EdgefuseError:
            if exc is None:
                raise
            log.warning("tegrastats also failed while handling another error", exc_info=True)


def _power_points(samples: Sequence[TimedSample]) -> list[tuple[float, float]]:
    pts = sorted((s.t, float(s.sample.total_power_mw)) for s in samples if s.sample.total_power_mw is not None)
    if not pts:
        raise EdgefuseError("no tegrastats sample carries a power reading; tegrastats prints the power rails "
                            "only on boards with an INA power monitor (and on some only under sudo)")
    return pts


def _power_at(pts: list[tuple[float, float]], t: float) -> float:
    """Power at ``t``: linear between samples, held constant before the first and after the last."""
    if t <= pts[0][0]:
        return pts[0][1]
    if t >= pts[-1][0]:
        return pts[-1][1]
    lo, hi = 0, len(pts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, p0), (t1, p1) = pts[lo], pts[hi]
    return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)


def energy_mj(samples: Sequence[TimedSample], start: float, end: float) -> float:
    """Energy in mJ (mW x s) drawn between ``start`` and ``end`` (``time.monotonic()`` seconds).

    The trapezoid rule over each sample's instantaneous total power (:attr:`TegraSample.total_power_mw`), with the
    power interpolated linearly at the window's edges; outside the sampled span the nearest sample's power is held
    (and logged), so sample for a little longer than the workload runs.
    """
    if end < start:
        raise EdgefuseError(f"energy window ends ({end}) before it starts ({start}); pass start <= end")
    pts = _power_points(samples)
    uncovered = max(0.0, pts[0][0] - start) + max(0.0, end - pts[-1][0])
    if end > start and uncovered > 0:
        log.warning("tegrastats samples cover %.0f%% of the %.3f s window; holding the edge readings for the rest",
                    100 * (1 - min(uncovered, end - start) / (end - start)), end - start)
    inner = [p for p in pts if start < p[0] < end]
    knots = [(start, _power_at(pts, start)), *inner, (end, _power_at(pts, end))]
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(knots))


def mean_power_mw(samples: Sequence[TimedSample], start: float, end: float) -> float:
    """Mean total power in mW over ``[start, end]`` (the energy divided by the duration)."""
    if end <= start:
        raise EdgefuseError(f"power window is empty ({start} to {end}); pass start < end")
    return energy_mj(samples, start, end) / (end - start)


def energy_per_clip_mj(samples: Sequence[TimedSample], start: float, end: float, clips: int, *,
                       idle_mw: float = 0.0) -> float:
    """Energy per clip in mJ over a window in which ``clips`` clips ran; ``idle_mw`` (the board's idle power,
    measured beforehand) is subtracted over the window to count only what the workload added."""
    if isinstance(clips, bool) or not isinstance(clips, int) or clips <= 0:
        raise EdgefuseError(f"clips must be a positive whole number, not {clips!r}")
    return (energy_mj(samples, start, end) - idle_mw * (end - start)) / clips


# --------------------------------------------------------------------------------------------------- nvpmodel / clocks

_NV_POWER_MODE = re.compile(r"^\s*NV Power Mode:\s*(\S.*?)\s*$", re.MULTILINE)
_CLOCK_LINE = re.compile(r"^\s*(cpu\d+|GPU|EMC)\b:?(.*)$", re.MULTILINE)
_KV = re.compile(r"(\w+)=(\S+)")


def parse_nvpmodel(text: str) -> tuple[str, int | None]:
    """``(mode name, mode id)`` from ``nvpmodel -q`` output ("NV Power Mode: MAXN" then the id on the next line);
    the id is None when the output has none (some quotes of it, and ``jetson_clocks --show``)."""
    m = _NV_POWER_MODE.search(text)
    if m is None:
        raise EdgefuseError("no 'NV Power Mode:' line in the nvpmodel output; pass the output of `nvpmodel -q`")
    rest = text[m.end():].split("\n")
    following = next((ln.strip() for ln in rest if ln.strip()), "")
    return m.group(1), int(following) if following.isdigit() else None


@dataclass(frozen=True)
class ClockState:
    """What ``jetson_clocks --show`` says of the CPU, GPU and EMC clocks; a field is None when not shown.

    A clock counts as pinned when it runs at its maximum, or when its minimum has been raised to the maximum (what
    ``jetson_clocks`` does; the CPU frequency counters on Orin can read a few MHz under the maximum even then).
    """

    cpu_pinned: bool | None
    gpu_pinned: bool | None
    emc_pinned: bool | None

    @property
    def pinned(self) -> bool:
        return all(v for v in (self.cpu_pinned, self.gpu_pinned, self.emc_pinned) if v is not None)


def parse_jetson_clocks(text: str) -> ClockState:
    """Parse ``jetson_clocks --show`` (JetPack 3 to 6 layout: ``cpuN: ... MinFreq= MaxFreq= CurrentFreq=``,
    ``GPU MinFreq= ...``, ``EMC MinFreq= ...``). Offline cores are ignored."""
    cpu: list[bool] = []
    gpu = emc = None
    for name, rest in _CLOCK_LINE.findall(text):
        kv = dict(_KV.findall(rest))
        if kv.get("Online") == "0" or "MaxFreq" not in kv or "CurrentFreq" not in kv:
            continue
        try:
            lo, hi, cur = int(kv.get("MinFreq", "-1")), int(kv["MaxFreq"]), int(kv["CurrentFreq"])
        except ValueError:
            continue
        pinned = cur >= hi or lo == hi
        if name.startswith("cpu"):
            cpu.append(pinned)
        elif name == "GPU":
            gpu = pinned
        else:
            emc = pinned
    if not cpu and gpu is None and emc is None:
        raise EdgefuseError("no cpu/GPU/EMC clock lines in the jetson_clocks output; pass the output of "
                            "`sudo jetson_clocks --show`")
    return ClockState(all(cpu) if cpu else None, gpu, emc)


def _run_tool(command: Sequence[str], what: str) -> str | None:
    cmd = list(command)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (FileNotFoundError, PermissionError):
        log.info("%s not available (%s not found); not a Jetson?", what, cmd[0])
        return None
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer in 30 s", " ".join(cmd))
        return None
    if out.returncode != 0:
        detail = (out.stderr or out.stdout or "").strip().splitlines()
        log.warning("%s failed (%s)%s", " ".join(cmd), detail[-1] if detail else f"exit {out.returncode}",
                    "; it may need sudo" if what == "jetson_clocks" else "")
        return None
    return out.stdout


def power_mode(command: Sequence[str] = ("nvpmodel", "-q")) -> tuple[str, int | None] | None:
    """The active nvpmodel power mode as ``(name, id)``, e.g. ``("MAXN", 0)``; None when nvpmodel is missing or
    fails."""
    text = _run_tool(command, "nvpmodel")
    if text is None:
        return None
    try:
        return parse_nvpmodel(text)
    except EdgefuseError as e:
        log.warning("%s", e)
        return None


def clocks_pinned(command: Sequence[str] = ("jetson_clocks", "--show")) -> bool | None:
    """Whether ``jetson_clocks`` has pinned the CPU, GPU and EMC clocks at their maximum; None when the tool is
    missing, fails (it needs root) or prints nothing recognisable."""
    text = _run_tool(command, "jetson_clocks")
    if text is None:
        return None
    try:
        return parse_jetson_clocks(text).pinned
    except EdgefuseError as e:
        log.warning("%s", e)
        return None
