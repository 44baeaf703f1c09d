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

Which rail is the board's total is module-specific: :data:`RAIL_RULES` holds one rule per module generation, with its
sources, and docs/power.md explains them. Unknown tokens are ignored.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RailRule:
    """How the total power is read off the rails one module generation's ``tegrastats`` prints.

    ``input_rail`` measures the whole input (of the module, or on Thor of the carrier board); when the line carries it,
    it is the total and every other rail is part of it. A module without such a rail (AGX Xavier, AGX Orin), or a line
    that lacks it (Thor images without the INA238 ``VIN``), gets the sum of ``branches``: rails that are separate
    branches of the input, none inside another. That sum is *partial*: it leaves out whatever no monitor measures
    (regulator losses, unmonitored rails, the carrier board). ``inside`` maps a rail to the rail it is part of (never
    added). ``rails`` is every rail name the generation prints; a line is matched to the rule sharing most of its rails.
    """

    key: str
    modules: tuple[str, ...]
    rails: frozenset[str]
    input_rail: str | None
    input_scope: str
    branches: tuple[str, ...]
    inside: Mapping[str, str]
    sources: tuple[str, ...]


def _inside(parent: str, *rails: str) -> Mapping[str, str]:
    return MappingProxyType(dict.fromkeys(rails, parent))


_DEV_GUIDE_ORIN = ("https://docs.nvidia.com/jetson/archives/r36.3/DeveloperGuide/SD/PlatformPowerAndPerformance/"
                   "JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html (Jetson Linux Developer Guide, "
                   "Platform Power and Performance, power monitors)")
_ENERGYMON = ("https://github.com/energymon/energymon jetson/JetsonPowerRails.md (commit a95cefba, 2022-08-05: INA3221 "
              "channels per module from the L4T 32.6.1 / 34.1 Developer Guides, device trees and design guides)")

#: One rule per module generation (docs/power.md has the same table with the sources spelled out).
RAIL_RULES: tuple[RailRule, ...] = (
    RailRule(
        key="nano", modules=("Jetson Nano 4GB (P3448-0000/0002)",),
        rails=frozenset({"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}),
        input_rail="POM_5V_IN", input_scope="module 5 V input", branches=(),
        inside=_inside("POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"),
        sources=(("https://forums.developer.nvidia.com/t/power-consumption-monitoring/73608/8 (NVIDIA: POM_5V_IN "
                  "\"measures the overall 5V input to the board, it represents the total power consumption. You don't "
                  "need to add POM_5V_GPU and POM_5V_CPU\"; quoted in "
                  "https://github.com/rbonghi/jetson_stats/issues/51)"),
                 _ENERGYMON)),
    RailRule(
        key="tx1-tx2", modules=("Jetson TX1 (P2180)", "Jetson TX2 / TX2i / TX2 4GB (P3310, P3489)"),
        rails=frozenset({"VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_DDR", "VDD_WIFI", "VDD_SYS_CPU", "VDD_SYS_GPU",
                         "VDD_SYS_SOC", "VDD_SYS_DDR", "VDD_4V0_WIFI"}),
        input_rail="VDD_IN", input_scope="module input", branches=(),
        inside=_inside("VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_DDR", "VDD_WIFI", "VDD_SYS_CPU", "VDD_SYS_GPU",
                       "VDD_SYS_SOC", "VDD_SYS_DDR", "VDD_4V0_WIFI"),
        sources=(_ENERGYMON + ": \"VDD_IN supplies the main module\", the carrier's VDD_MUX is not in tegrastats",
                 "https://forums.developer.nvidia.com/t/tx2-power-rail-relationships/201037 (cited there)",
                 ("Jetson TX2/TX2i OEM Product Design Guide, 3.0 Power: VDD_IN pins are the module's main power "
                  "supply"))),
    RailRule(
        key="tx2-nx", modules=("Jetson TX2 NX (P3636)",),
        rails=frozenset({"VDD_IN", "VDD_CPU_GPU", "VDD_SOC"}),
        input_rail="VDD_IN", input_scope="module input", branches=(),
        inside=_inside("VDD_IN", "VDD_CPU_GPU", "VDD_SOC"),
        sources=(_ENERGYMON, ("Jetson TX2 NX Product Design Guide DG-10141-001, chapter 5: power for the module is "
                              "supplied on the VDD_IN pins"))),
    RailRule(
        key="xavier-nx/orin-nx/orin-nano",
        modules=("Jetson Xavier NX (P3668)", "Jetson Orin NX (P3767-0000/0001)", "Jetson Orin Nano (P3767-0003/4/5)"),
        rails=frozenset({"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}),
        input_rail="VDD_IN", input_scope="module input", branches=(),
        inside=_inside("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"),
        sources=(("https://forums.developer.nvidia.com/t/interpretation-of-jetson-nx-power-rail/200883 (NVIDIA: "
                  "\"VDD_IN is the total power of module\", DDR and interface rails are inside it)"),
                 _DEV_GUIDE_ORIN + ": the Orin NX / Nano INA3221 at 0x40 carries VDD_IN, VDD_CPU_GPU_CV, VDD_SOC",
                 ("https://github.com/ARK-Electronics/ark_jetson_kernel docs/power.md (Orin NX: \"Power read from the "
                  "module's own INA3221 on the VDD_IN rail\", in1 = VDD_IN)"), _ENERGYMON)),
    RailRule(
        key="agx-xavier", modules=("Jetson AGX Xavier / AGX Xavier Industrial (P2888)",),
        rails=frozenset({"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}),
        input_rail=None, input_scope="no input monitor: GPU, CPU, SOC, CV, VDDRQ on SYS_VIN_HV, SYS5V is SYS_VIN_MV",
        branches=("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"), inside=MappingProxyType({}),
        sources=(("Jetson AGX Xavier Series Product Design Guide DG-09840-001 v2.5, 5.6.2 Power Monitor (monitors on "
                  "VDD_GPU, VDD_CPU, VDD_SOC, VDD_CV, VDD_DDRQ inputs from SYS_VIN_HV and on SYS_VIN_MV; no monitor on "
                  "the module input), https://www.easymanua.ls/nvidia/jetson-agx-xavier-series/manual?p=46"),
                 ("https://forums.developer.nvidia.com/t/what-does-sys5v-power-mean-in-tegrastats/75574 (NVIDIA: SYS5V "
                  "\"includes all parts power except DDR, CPU, GPU and CV\")"), _ENERGYMON)),
    RailRule(
        key="agx-orin", modules=("Jetson AGX Orin 32GB / 64GB / Industrial (P3701)",),
        rails=frozenset({"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO", "NC"}),
        input_rail=None,
        input_scope="no input monitor: VDD_GPU_SOC, VDD_CPU_CV on SYS_VIN_HV, VIN_SYS_5V0 on SYS_VIN_MV",
        branches=("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), inside=_inside("VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
        sources=(_DEV_GUIDE_ORIN + ": AGX Orin INA3221 at 0x40 VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; at 0x41 NC, "
                 "VDDQ_VDD2_1V8AO, NC (NC = no connection)",
                 "https://forums.developer.nvidia.com/t/jetson-agx-orin-ina3221-power-monitor-layout/223111 as "
                 "summarised in " + _ENERGYMON + " and energymon jetson/energymon-jetson.c (\"MV input is VIN_SYS_5V0, "
                 "which then supplies VDDQ_VDD2_1V8AO\")",
                 ("https://github.com/rbonghi/jetson_stats/issues/344 (VIN_SYS_5V0 is not the total: NVIDIA, "
                  "https://forums.developer.nvidia.com/t/tegrastats-monitoring/217088/5)"))),
    RailRule(
        key="thor", modules=("Jetson AGX Thor (P3834) on the developer-kit carrier (P4071)",),
        rails=frozenset({"VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"}),
        input_rail="VIN", input_scope="carrier-board input (module + carrier), INA238 on the carrier",
        branches=("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"),
        inside=_inside("VIN", "VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"),
        sources=(("https://forums.developer.nvidia.com/t/question-about-power-monitor-with-additional-load-on-jetson-"
                  "thor/366461 (NVIDIA: the INA238 gives \"total VIN monitoring\"; without it the system \"still runs "
                  "with INA3221\")"),
                 ("https://github.com/rbonghi/jetson_stats/pull/900 (report the Thor carrier-board INA238 VIN rail as "
                  "the total system input power)"))),
)

#: Rails that measure a whole input, for lines no rule matches.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
OFFLINE_C = -256.0  # what tegrastats prints for a thermal zone that is powered off (jetson_stats TEMPERATURE_OFFLINE)
# The PMIC "temperature" is not measured: the PMIC has no register for it, only 120 C / 140 C threshold flags, and reads
# 100 C while neither is crossed (NVIDIA, https://forums.developer.nvidia.com/t/what-does-each-temperature-zone-mean-ao-
# pll-thermal/121300/8); jetson_stats drops it too (jtop/core/temperature.py). Some BSPs print PMIC@50C instead.
PLACEHOLDER_ZONES = frozenset({"PMIC"})
_NOT_CONNECTED = {"NC"}  # AGX Orin prints unused INA3221 channels as "NC 0mW/0mW"


def rail_rule(rails: Iterable[str]) -> RailRule | None:
    """The rule of :data:`RAIL_RULES` sharing most rail names with ``rails`` (the first on a tie); None when none
    shares any."""
    names = set(rails) - _NOT_CONNECTED
    best, score = None, 0
    for rule in RAIL_RULES:
        n = len(names & rule.rails)
        if n > score:
            best, score = rule, n
    return best


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
    since it started. ``total_power_mw`` is the total the module's :class:`RailRule` gives (see
    :func:`parse_tegrastats`): ``power_rail`` names where it came from (a rail, or ``"sum(A,B,...)"``),
    ``power_rails`` lists those rails, ``power_rule`` is the rule's key and ``power_partial`` is True when the line has
    no input rail, so the total is a sum of branch rails that leaves out what no monitor measures. ``negative_rails``
    are rails that read below zero (never summed). ``temperatures`` holds measured temperatures only;
    ``placeholders`` the readings tegrastats prints in the same form that are not temperatures (the PMIC status,
    ``-256C`` for a powered-off zone).
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
    power_rails: tuple[str, ...] = ()
    power_rule: str | None = None
    power_partial: bool = False
    negative_rails: tuple[str, ...] = ()
    placeholders: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True)
class _Total:
    cur: int | None = None
    avg: int | None = None
    label: str | None = None
    rails: tuple[str, ...] = ()
    rule: str | None = None
    partial: bool = False


def _sum(rails: Mapping[str, tuple[int, int]], names: Iterable[str], rule: str | None) -> _Total:
    """The partial total of ``names``: a rail reading below zero is left out (of the current or the average sum)."""
    names = list(names)
    summed = [n for n in names if rails[n][0] >= 0]
    avg = [rails[n][1] for n in names if rails[n][1] >= 0]
    if not summed and not avg:
        return _Total(rule=rule, partial=True)
    shown = summed or names
    return _Total(sum(rails[n][0] for n in summed) if summed else None, sum(avg) if avg else None,
                  f"sum({','.join(shown)})", tuple(summed), rule, True)


def _total_power(rails: Mapping[str, tuple[int, int]]) -> _Total:
    usable = {n: v for n, v in rails.items() if n not in _NOT_CONNECTED}
    if not usable:
        return _Total()
    rule = rail_rule(usable)
    if rule is None:  # a board no rule knows: an input rail if there is one, else everything, marked partial
        name = next((n for n in INPUT_RAILS if n in usable), None)
        if name is None:
            log.debug("no rail rule for rails %s: summing them all (partial)", ",".join(usable))
            return _sum(usable, usable, None)
        cur, avg = usable[name]
        return _Total(cur if cur >= 0 else None, avg if avg >= 0 else None, name, (name,))
    if rule.input_rail is not None and rule.input_rail in usable:
        cur, avg = usable[rule.input_rail]
        return _Total(cur if cur >= 0 else None, avg if avg >= 0 else None, rule.input_rail, (rule.input_rail,),
                      rule.key)
    return _sum(usable, [n for n in rule.branches if n in usable], rule.key)


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one line of ``tegrastats`` output (any Jetson from TX1 to Thor, JetPack 3 to 7).

    Power rails are ``NAME cur/avg`` in mW, with or without the ``mW`` unit; JetPack 7's third (peak) figure is
    dropped. The total, ``total_power_mw``, follows the :class:`RailRule` whose rails the line shares most
    (:data:`RAIL_RULES`): the input rail where the line has one (``POM_5V_IN`` on Nano, ``VDD_IN`` on TX1/TX2, TX2 NX,
    Xavier NX, Orin NX and Orin Nano, ``VIN`` on Thor), never a rail inside another; where it has none (AGX Xavier,
    AGX Orin, Thor images without ``VIN``) the sum of the rule's branch rails, marked ``power_partial``. A rail that
    reads below zero is listed in ``negative_rails`` and not summed (an input rail below zero gives no total). PMIC
    readings and zones at -256 C go to ``placeholders``, not ``temperatures``. Unknown tokens are ignored; a line
    with no recognisable field raises :class:`EdgefuseError`.
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
    placeholders: dict[str, float] = {}
    for name, value in _TEMP.findall(line):
        if float(value) <= OFFLINE_C or name.upper() in PLACEHOLDER_ZONES:
            placeholders.setdefault(name, float(value))
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

    total = _total_power(rails)
    negative = tuple(n for n, (cur, avg) in rails.items() if cur < 0 or avg < 0)
    if negative:
        log.debug("tegrastats rails read below zero (not summed): %s", ", ".join(negative))
    return TegraSample(timestamp=ts, ram_used_mb=ram_used, ram_total_mb=ram_total, cpus=tuple(cpus),
                       gpu_load_pct=gpu_load, gpu_freq_mhz=gpu_freq, emc_load_pct=emc_load, emc_freq_mhz=emc_freq,
                       temperatures=MappingProxyType(temps), rails=MappingProxyType(rails), total_power_mw=total.cur,
                       total_power_avg_mw=total.avg, power_rail=total.label, power_rails=total.rails,
                       power_rule=total.rule, power_partial=total.partial, negative_rails=negative,
                       placeholders=MappingProxyType(placeholders))
