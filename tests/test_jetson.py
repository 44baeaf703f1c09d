"""edgefuse.devices.jetson: tegrastats parsing on real lines from every Jetson generation, the sampler, energy, nvpmodel and
jetson_clocks parsing. Every line under tests/data/tegrastats and tests/data/jetson_tools is real output quoted in a
public source named in the file's header; the expected values below were read off those lines by hand."""
from __future__ import annotations

import itertools
import sys
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from edgefuse.devices.jetson import (
    CpuCore,
    TegraSample,
    TegrastatsSampler,
    TimedSample,
    clocks_pinned,
    energy_mj,
    energy_per_clip_mj,
    mean_power_mw,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats,
    power_mode,
)
from edgefuse.errors import EdgefuseError

DATA = Path(__file__).parent / "data"
TEGRASTATS = DATA / "tegrastats"
TOOLS = DATA / "jetson_tools"


def lines_of(path: Path) -> list[str]:
    """The raw lines of a data file, without its '#' header."""
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def text_of(path: Path) -> str:
    return "".join(ln + "\n" for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#"))


class Want(NamedTuple):
    ram: tuple[int, int]
    cpu: tuple[int, int, int]
    gpu: tuple[int | None, int | None]
    emc: int | None
    power: tuple[int, int]
    rail: str
    temp: tuple[str, float]


# For each file: per line, the values read off the line by hand (RAM used/total MB, (core index, load %, MHz),
# GPU load % and MHz, EMC load %, board power mW (current, average), the rail it comes from, and a temperature).
EXPECTED = {
    "nano_jp4_effex.txt": [
        Want(ram=(1464, 3964), cpu=(0, 90, 1479), gpu=(7, 768), emc=6, power=(2746, 2911), rail="POM_5V_IN",
             temp=("PLL", 28.0)),  # PMIC@50C is not a temperature (see test_power_rails.py)
        Want(ram=(1464, 3964), cpu=(2, 80, 1479), gpu=(0, 768), emc=6, power=(2980, 2911), rail="POM_5V_IN",
             temp=("GPU", 29.0)),
    ],
    "nano_jp461_waggle.txt": [
        Want(ram=(1923, 3964), cpu=(3, 6, 1224), gpu=(0, 76), emc=0, power=(1750, 1628), rail="POM_5V_IN",
             temp=("AO", 45.0)),
    ],
    "xavier_agx_jp42_gtop.txt": [  # no input rail: GPU+CPU+SOC+CV+VDDRQ+SYS5V = 463+618+2936+0+309+3306
        Want(ram=(14700, 15692), cpu=(7, 0, 1190), gpu=(0, None), emc=0, power=(7632, 7632),
             rail="sum(GPU,CPU,SOC,CV,VDDRQ,SYS5V)", temp=("thermal", 30.8)),
    ],
    "xavier_nx_jp4_waggle.txt": [
        Want(ram=(5246, 7771), cpu=(5, 96, 1420), gpu=(0, 1109), emc=2, power=(6140, 5510), rail="VDD_IN",
             temp=("thermal", 31.35)),
    ],
    "xavier_nx_jp512_waggle.txt": [
        Want(ram=(3168, 6851), cpu=(0, 23, 1397), gpu=(0, 114), emc=2, power=(2763, 2846), rail="VDD_IN",
             temp=("GPU", 45.5)),
    ],
    "orin_agx_jp5_gdwr.txt": [  # 2340 + 390 + 4025; VDDQ_VDD2_1V8AO (301) is inside VIN_SYS_5V0, NC not connected
        Want(ram=(4321, 62801), cpu=(11, 0, 729), gpu=(0, 0), emc=0, power=(6755, 6755),
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("tj", 44.343)),
    ],
    "orin_agx_jp51_catid.txt": [  # 2399 + 400 + 4032 (VDDQ_VDD2_1V8AO 301 left out)
        Want(ram=(1282, 62795), cpu=(0, 0, 729), gpu=(0, 0), emc=0, power=(6831, 6831),
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("CPU", 42.593)),
    ],
    "orin_agx_jp6_tegra_exporter.txt": [  # JetPack 6 prints three rails: 2412 + 1607 + VIN_SYS_5V0
        Want(ram=(18207, 62841), cpu=(3, 14, 2201), gpu=(0, 0), emc=3, power=(8726, 8726),
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("soc2", 48.437)),
        Want(ram=(18202, 62841), cpu=(0, 16, 1949), gpu=(0, 0), emc=3, power=(8626, 8676),  # 4607 now, 4657 average
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("tj", 52.343)),
        Want(ram=(18203, 62841), cpu=(7, 70, 1113), gpu=(0, 0), emc=2, power=(8726, 8693),  # 4707 now, 4674 average
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("soc1", 49.625)),
    ],
    "orin_agx_jp72_tegra_exporter.txt": [  # 2265 + 2643 + 4722; cores 8-11 off
        Want(ram=(4714, 62878), cpu=(0, 78, 1728), gpu=(0, 0), emc=2, power=(9630, 9630),
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("soc1", 49.0)),
    ],
    "orin_nx_jp511_datadog.txt": [
        Want(ram=(6334, 15388), cpu=(3, 16, 729), gpu=(0, 611), emc=0, power=(5299, 5299), rail="VDD_IN",
             temp=("CV2", 45.75)),
    ],
    "nano_jp4_jetson_stats_35.txt": [
        Want(ram=(417, 3964), cpu=(0, 0, 1428), gpu=(0, 921), emc=0, power=(1828, 1886), rail="POM_5V_IN",
             temp=("PLL", 15.5)),
        Want(ram=(417, 3964), cpu=(3, 0, 1428), gpu=(0, 921), emc=0, power=(1828, 1880), rail="POM_5V_IN",
             temp=("thermal", 18.5)),
    ],
    "tx2_jp42_tx_utils.txt": [  # printed without sudo: no clocks for GR3D / EMC
        Want(ram=(2020, 7852), cpu=(1, 21, 345), gpu=(0, None), emc=0, power=(3140, 3208), rail="VDD_IN",
             temp=("Tdiode", 41.25)),
    ],
    "tx2_jp4_beszel.txt": [
        Want(ram=(3276, 7859), cpu=(2, 67, 2034), gpu=(0, 114), emc=1, power=(5297, 5297), rail="VDD_IN",
             temp=("BCPU", 42.5)),
    ],
    "thor_jp71_tegra_exporter.txt": [  # no VIN on this image: VDD_GPU + VDD_CPU_SOC_MSS + VIN_SYS_5V0, partial
        Want(ram=(4208, 125773), cpu=(10, 3, 972), gpu=(None, 0), emc=0, power=(8291, 8291),
             rail="sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)", temp=("soc012", 33.781)),
        Want(ram=(4280, 125773), cpu=(9, 17, 2601), gpu=(None, 0), emc=0, power=(9250, 8771),
             rail="sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)", temp=("tj", 36.031)),
        Want(ram=(4309, 125773), cpu=(7, 17, 972), gpu=(None, 0), emc=1, power=(8972, 8838),
             rail="sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)", temp=("soc345", 34.468)),
    ],
    "thor_jp72_tegra_exporter.txt": [  # no VIN: 4925 + 8710 + 6767; then 4925 + 7953 + 6667 (averages 8332, 6717)
        Want(ram=(9101, 125811), cpu=(8, 13, 2430), gpu=(None, 314), emc=7, power=(20402, 20402),
             rail="sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)", temp=("gpu", 35.906)),
        Want(ram=(9091, 125811), cpu=(10, 28, 972), gpu=(None, 314), emc=7, power=(19545, 19974),
             rail="sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)", temp=("cpu", 34.312)),
    ],
    "orin_nano_jp6_beszel.txt": [
        Want(ram=(6185, 7620), cpu=(0, 15, 729), gpu=(63, 621), emc=43, power=(12479, 12479), rail="VDD_IN",
             temp=("cpu", 53.968)),
        Want(ram=(3452, 7620), cpu=(4, 2, 729), gpu=(0, None), emc=None, power=(4824, 4824), rail="VDD_IN",
             temp=("tj", 50.25)),
    ],
    "orin_agx_jp72_jetson_stats.txt": [  # 5139 + 3268 + 5500 (partial: AGX Orin has no input rail); peak dropped
        Want(ram=(20642, 62817), cpu=(8, 33, 2201), gpu=(12, 1300), emc=3, power=(13907, 13907),
             rail="sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)", temp=("cpu", 52.968)),
    ],
    "thor_jp72_wendyos.txt": [  # VIN is the module input: current 87426, average 43713 (peak 87426)
        Want(ram=(36529, 125749), cpu=(13, 2, 972), gpu=(None, None), emc=None, power=(87426, 43713), rail="VIN",
             temp=("gpu", 62.906)),
    ],
    "tx2_gustavz.txt": [
        Want(ram=(1685, 7854), cpu=(0, 0, 1303), gpu=(0, 140), emc=0, power=(1931, 1931), rail="VDD_IN",
             temp=("Tdiode", 37.25)),
        Want(ram=(1685, 7854), cpu=(4, 0, 345), gpu=(0, 140), emc=16, power=(1776, 1853), rail="VDD_IN",
             temp=("thermal", 39.9)),
    ],
}


def test_every_data_file_has_expectations_and_a_source() -> None:
    files = sorted(p.name for p in TEGRASTATS.glob("*.txt"))
    assert files == sorted(EXPECTED)
    for name in files:
        text = (TEGRASTATS / name).read_text(encoding="utf-8")
        assert text.startswith("# source: "), name
        assert len(lines_of(TEGRASTATS / name)) == len(EXPECTED[name]), name
    generations = {name.split("_")[0] for name in files}
    assert {"nano", "tx2", "xavier", "orin", "thor"} <= generations
    listed = (TEGRASTATS / "SOURCES.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in listed for name in files)  # each file in the SOURCES.md table


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_real_lines(name: str) -> None:
    for line, want in zip(lines_of(TEGRASTATS / name), EXPECTED[name], strict=True):
        s = parse_tegrastats(line)
        assert (s.ram_used_mb, s.ram_total_mb) == want.ram
        core, load, mhz = want.cpu
        assert s.cpus[core] == CpuCore(load, mhz)
        assert (s.gpu_load_pct, s.gpu_freq_mhz) == want.gpu
        assert s.emc_load_pct == want.emc
        assert (s.total_power_mw, s.total_power_avg_mw) == want.power
        assert s.power_rail == want.rail
        tname, celsius = want.temp
        assert s.temperatures[tname] == pytest.approx(celsius)
        assert all(t > -256 for t in s.temperatures.values())  # powered-off zones (CV0@-256C) are dropped
        assert "PMIC" not in s.temperatures  # a status, not a temperature


def test_details_of_specific_lines() -> None:
    nano = parse_tegrastats(lines_of(TEGRASTATS / "nano_jp4_effex.txt")[0])
    assert nano.timestamp is None
    assert len(nano.cpus) == 4 and all(c.online for c in nano.cpus)
    assert nano.rails == {"POM_5V_IN": (2746, 2911), "POM_5V_GPU": (159, 161), "POM_5V_CPU": (796, 989)}
    assert nano.emc_freq_mhz == 1600

    xavier = parse_tegrastats(lines_of(TEGRASTATS / "xavier_agx_jp42_gtop.txt")[0])
    assert xavier.rails["CPU"] == (618, 618) and xavier.temperatures["CPU"] == 31.5  # rail and zone share a name
    assert xavier.emc_freq_mhz is None  # printed without sudo: no clocks

    nx5 = parse_tegrastats(lines_of(TEGRASTATS / "xavier_nx_jp512_waggle.txt")[0])
    assert nx5.timestamp == datetime(2024, 7, 9, 13, 31, 31)
    assert nx5.rails["VDD_SOC"] == (650, 711)

    orin = parse_tegrastats(lines_of(TEGRASTATS / "orin_agx_jp5_gdwr.txt")[0])
    assert "CV0" not in orin.temperatures and "GPU" not in orin.temperatures  # -256C: zone powered off
    assert orin.rails["VIN_SYS_5V0"] == (4025, 4025) and orin.rails["NC"] == (0, 0)
    assert len(orin.cpus) == 12

    thor = parse_tegrastats(lines_of(TEGRASTATS / "thor_jp72_wendyos.txt")[0])
    assert thor.timestamp == datetime(2026, 7, 2, 13, 45, 44)
    assert len(thor.cpus) == 14
    assert thor.rails["VDD_GPU"] == (37528, 37528) and thor.rails["VIN_SYS_5V0"] == (18331, 18331)

    jp7 = parse_tegrastats(lines_of(TEGRASTATS / "orin_agx_jp72_jetson_stats.txt")[0])
    assert jp7.temperatures["soc2"] == 48.406  # "soc2@48.406C/48.406C": the current reading


def test_sample_is_frozen_and_comparable() -> None:
    line = lines_of(TEGRASTATS / "orin_nano_jp6_beszel.txt")[0]
    a, b = parse_tegrastats(line), parse_tegrastats(line)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.total_power_mw = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.rails["VDD_IN"] = (0, 0)  # type: ignore[index]


def test_minimal_and_odd_forms() -> None:
    off = parse_tegrastats("CPU [12%@1479,off,off,5%@1479]")
    assert off.cpus == (CpuCore(12, 1479), CpuCore(None, None), CpuCore(None, None), CpuCore(5, 1479))
    assert not off.cpus[1].online and off.total_power_mw is None and off.power_rail is None
    # the L4T 28 form (Jetson TX1, quoted in hordiales/jetson-tx1-dev SCRIPTS.md): one clock for all cores
    tx1 = parse_tegrastats("RAM 3607/3983MB (lfb 47x4MB) SWAP 873/8192MB (cached 281MB) cpu [17%,11%,65%,0%]@1734 "
                           "EMC 1%@1600 APE 25 GR3D 39%@76")
    assert tx1.cpus[2] == CpuCore(65, 1734) and (tx1.gpu_load_pct, tx1.gpu_freq_mhz) == (39, 76)
    assert tx1.emc_freq_mhz == 1600 and tx1.ram_used_mb == 3607
    # Thor's per-GPC clocks without a load (jetson_stats test_06_tegra_parse.py TEGRASTATS_THOR)
    thor = parse_tegrastats("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000] APE 150")
    assert (thor.gpu_load_pct, thor.gpu_freq_mhz) == (None, 1000)


@pytest.mark.parametrize("line", ["", "hello world", "NVPM WARN: fan mode is not set!", "Error: tegrastats needs root",
                                  "RAM lots", "SWAP 0/1982MB (cached 0MB)"])
def test_not_a_tegrastats_line(line: str) -> None:
    with pytest.raises(EdgefuseError, match="not a tegrastats line"):
        parse_tegrastats(line)


# ------------------------------------------------------------------------------------------------------ the sampler

def fake_tegrastats(path: Path, interval_s: float = 0.02) -> list[str]:
    """A stand-in for the tegrastats binary, which cannot exist off a Jetson: a Python one-liner that prints the real
    lines of ``path`` over and over at a fixed interval until it is killed. Only the binary is faked; the pipe, the
    reader thread and the parser are the real ones."""
    code = ("import sys, time\n"
            "lines = [l for l in open(sys.argv[1], encoding='utf-8').read().splitlines() "
            "if l.strip() and not l.startswith('#')]\n"
            "print('a banner line tegrastats never prints', flush=True)\n"
            "while True:\n"
            "    for l in lines:\n"
            "        print(l, flush=True)\n"
            "        time.sleep(float(sys.argv[2]))\n")
    return [sys.executable, "-u", "-c", code, str(path), str(interval_s)]


def test_sampler_reads_lines_in_order() -> None:
    path = TEGRASTATS / "tx2_gustavz.txt"
    want = [parse_tegrastats(ln) for ln in lines_of(path)]
    with TegrastatsSampler(interval_ms=20, command=fake_tegrastats(path)) as sampler:
        assert sampler.wait_for_samples(5, timeout_s=60)
    samples = sampler.samples
    assert len(samples) >= 5
    assert [s.sample for s in samples[:4]] == [want[0], want[1], want[0], want[1]]
    assert all(a.t <= b.t for a, b in itertools.pairwise(samples))  # monotonic arrival times
    assert sampler.skipped == 1  # the banner
    assert sampler.returncode is not None
    assert energy_mj(samples, samples[0].t, samples[-1].t) >= 0


def test_sampler_stop_is_idempotent_and_single_use() -> None:
    path = TEGRASTATS / "orin_nano_jp6_beszel.txt"
    sampler = TegrastatsSampler(interval_ms=20, command=fake_tegrastats(path))
    sampler.start()
    assert sampler.wait_for_samples(1, timeout_s=60)
    first = sampler.stop()
    assert sampler.stop() == first
    with pytest.raises(EdgefuseError, match="already started"):
        sampler.start()


def test_sampler_missing_tegrastats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgefuseError, match="tegrastats not found.*nvidia-l4t-tools"), TegrastatsSampler():
        pass
    with pytest.raises(EdgefuseError, match="command not found"):
        TegrastatsSampler(command=[str(tmp_path / "no-such-tegrastats")]).start()


def test_sampler_reports_a_failing_command() -> None:
    cmd = [sys.executable, "-c", "import sys; print('tegrastats: permission denied', file=sys.stderr); sys.exit(3)"]
    sampler = TegrastatsSampler(command=cmd)
    sampler.start()
    assert not sampler.wait_for_samples(1, timeout_s=60)
    with pytest.raises(EdgefuseError, match="failed before printing a sample.*permission denied"):
        sampler.stop()


@pytest.mark.parametrize("interval", [0, -5, 1.5, True])
def test_sampler_interval_must_be_positive_int(interval: object) -> None:
    with pytest.raises(EdgefuseError, match="interval"):
        TegrastatsSampler(interval_ms=interval)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------ energy

def synthetic(points: list[tuple[float, int | None]]) -> list[TimedSample]:
    return [TimedSample(t, TegraSample(total_power_mw=p, power_rail=None if p is None else "VDD_IN"))
            for t, p in points]


def test_energy_trapezoid_known_answers() -> None:
    s = synthetic([(10.0, 1000), (11.0, 2000), (12.0, 2000), (13.0, 0)])
    assert energy_mj(s, 10.0, 13.0) == pytest.approx(1500 + 2000 + 1000)
    # edges interpolated: 0.5 s from 1500 to 2000 mW, 1 s at 2000, 0.5 s from 2000 to 1000 mW
    assert energy_mj(s, 10.5, 12.5) == pytest.approx(875 + 2000 + 750)
    assert energy_mj(s, 11.2, 11.7) == pytest.approx(1000)  # inside one flat segment
    assert energy_mj(s, 12.0, 12.0) == 0
    assert mean_power_mw(s, 10.0, 13.0) == pytest.approx(1500)
    assert energy_mj(list(reversed(s)), 10.0, 13.0) == pytest.approx(4500)  # order does not matter


def test_energy_constant_power_and_holding_edges(caplog: pytest.LogCaptureFixture) -> None:
    s = synthetic([(0.0, 5000), (0.25, 5000), (0.5, None), (1.0, 5000), (2.0, 5000)])  # None: no rails that line
    assert energy_mj(s, 0.0, 2.0) == pytest.approx(10000)
    with caplog.at_level("WARNING", logger="edgefuse.devices.jetson"):
        assert energy_mj(s, -1.0, 3.0) == pytest.approx(20000)  # held at 5 W outside the samples
    assert "cover" in caplog.text


def test_energy_per_clip() -> None:
    s = synthetic([(0.0, 4000), (4.0, 4000)])
    assert energy_per_clip_mj(s, 0.0, 4.0, clips=8) == pytest.approx(2000)
    assert energy_per_clip_mj(s, 0.0, 4.0, clips=8, idle_mw=1500) == pytest.approx(1250)
    with pytest.raises(EdgefuseError, match="clips"):
        energy_per_clip_mj(s, 0.0, 4.0, clips=0)


def test_energy_errors() -> None:
    with pytest.raises(EdgefuseError, match="no tegrastats sample carries a power reading"):
        energy_mj(synthetic([(0.0, None), (1.0, None)]), 0.0, 1.0)
    with pytest.raises(EdgefuseError, match="before it starts"):
        energy_mj(synthetic([(0.0, 1000)]), 2.0, 1.0)
    with pytest.raises(EdgefuseError, match="empty"):
        mean_power_mw(synthetic([(0.0, 1000)]), 1.0, 1.0)


def test_energy_on_real_lines() -> None:
    """Two real Nano lines one second apart: (2746 + 2980) / 2 mW for 1 s."""
    lines = lines_of(TEGRASTATS / "nano_jp4_effex.txt")
    s = [TimedSample(100.0, parse_tegrastats(lines[0])), TimedSample(101.0, parse_tegrastats(lines[1]))]
    assert energy_mj(s, 100.0, 101.0) == pytest.approx(2863)


# -------------------------------------------------------------------------------------------- nvpmodel, jetson_clocks

def test_parse_nvpmodel_real_output() -> None:
    assert parse_nvpmodel(text_of(TOOLS / "nvpmodel_q_thor_jp7_jetpack_nixos.txt")) == ("MAXN", 0)
    assert parse_nvpmodel(text_of(TOOLS / "nvpmodel_q_xavier_agx_jp4_orne_box.txt")) == ("MAXN", None)
    # without sudo: the mode and id, then NVPM ERROR lines
    assert parse_nvpmodel(text_of(TOOLS / "nvpmodel_q_nano_jp4_jetbot.txt")) == ("5W", 1)
    # --verbose: "NVPM VERB: Current mode: NV Power Mode: <name>", the id, then NVPM VERB PARAM lines
    assert parse_nvpmodel(text_of(TOOLS / "nvpmodel_q_verbose_tx2_mids.txt")) == ("MAXP_CORE_ARM", 3)
    assert parse_nvpmodel(text_of(TOOLS / "nvpmodel_q_verbose_xavier_nx_mids.txt")) == ("MODE_15W_6CORE", 2)
    # the older --verbose layout names the id on an ACTIVE= line when no id line follows
    assert parse_nvpmodel("NVPM VERB: Current mode: NV Power Mode: MAXN\nNVPM VERB: PM_CONFIG: DEFAULT=MAXP_CORE_ARM(3)\n"
                          "NVPM VERB: ACTIVE=MAXN(0)\n") == ("MAXN", 0)
    assert parse_nvpmodel("NV Power Mode: MAXN SUPER\n2\n") == ("MAXN SUPER", 2)
    # jetson_clocks --show ends with the power mode too
    assert parse_nvpmodel(text_of(TOOLS / "jetson_clocks_show_orin_agx_jp51_catid.txt")) == ("MAXN", None)
    with pytest.raises(EdgefuseError, match="NV Power Mode"):
        parse_nvpmodel("nvpmodel: command not found\n")


def test_every_tool_output_has_a_source() -> None:
    files = sorted(p.name for p in TOOLS.glob("*.txt"))
    listed = (TOOLS / "SOURCES.md").read_text(encoding="utf-8")
    for name in files:
        assert (TOOLS / name).read_text(encoding="utf-8").startswith("# source: "), name
        assert f"`{name}`" in listed, name


def test_parse_jetson_clocks_real_output() -> None:
    orin = parse_jetson_clocks(text_of(TOOLS / "jetson_clocks_show_orin_agx_jp51_catid.txt"))
    assert (orin.cpu_pinned, orin.gpu_pinned, orin.emc_pinned) == (False, False, False)  # GPU 306 of 1300.5 MHz
    assert orin.pinned is False
    tx1 = parse_jetson_clocks(text_of(TOOLS / "jetson_clocks_show_tx1_l4t281_hordiales.txt"))
    assert (tx1.cpu_pinned, tx1.gpu_pinned, tx1.emc_pinned) == (True, True, True)
    assert tx1.pinned is True
    with pytest.raises(EdgefuseError, match="jetson_clocks"):
        parse_jetson_clocks("Error: Run this script(/usr/bin/jetson_clocks) as a root user\n")


def cat(path: Path) -> list[str]:
    """A command printing a recorded tool output (the real nvpmodel / jetson_clocks exist only on a Jetson)."""
    code = "import sys; sys.stdout.write(open(sys.argv[1], encoding='utf-8').read())"
    return [sys.executable, "-c", code, str(path)]


def test_power_mode_and_clocks_pinned(tmp_path: Path) -> None:
    thor = tmp_path / "nvpmodel.txt"
    thor.write_text(text_of(TOOLS / "nvpmodel_q_thor_jp7_jetpack_nixos.txt"), encoding="utf-8")
    assert power_mode(cat(thor)) == ("MAXN", 0)
    verbose = tmp_path / "nvpmodel_verbose.txt"
    verbose.write_text(text_of(TOOLS / "nvpmodel_q_verbose_xavier_nx_mids.txt"), encoding="utf-8")
    assert power_mode(cat(verbose)) == ("MODE_15W_6CORE", 2)
    tx1 = tmp_path / "tx1.txt"
    tx1.write_text(text_of(TOOLS / "jetson_clocks_show_tx1_l4t281_hordiales.txt"), encoding="utf-8")
    assert clocks_pinned(cat(tx1)) is True
    orin = tmp_path / "orin.txt"
    orin.write_text(text_of(TOOLS / "jetson_clocks_show_orin_agx_jp51_catid.txt"), encoding="utf-8")
    assert clocks_pinned(cat(orin)) is False


def test_tools_missing_or_failing(tmp_path: Path) -> None:
    assert power_mode([str(tmp_path / "nvpmodel")]) is None
    assert clocks_pinned([str(tmp_path / "jetson_clocks"), "--show"]) is None
    fail = [sys.executable, "-c", "import sys; print('Error: Run this script as a root user'); sys.exit(1)"]
    assert clocks_pinned(fail) is None
    assert power_mode([sys.executable, "-c", "print('nothing useful')"]) is None
