"""Parsing ``tegrastats`` lines into :class:`TegraSample`.

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

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

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
