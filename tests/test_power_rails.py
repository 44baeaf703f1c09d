"""The total power a tegrastats line gives, per module generation: the input rail where the line has one, never a rail
inside another, a partial sum of branch rails (marked) where it has none, negative readings listed and not summed,
placeholder readings (PMIC, -256C) kept out of the temperatures; and where an energy figure's total came from.

Every line below is real tegrastats output from tests/data/tegrastats (sources in each file's header and SOURCES.md);
each expected total was added up by hand from the rule of the module (RAIL_RULES, docs/power.md). The only edited lines
are the ones for negative readings, marked as such: no recorded line with a negative rail reading and a source that
could be cited was found."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import pytest

from edgefuse.devices.jetson import (
    RAIL_RULES,
    TegraSample,
    TimedSample,
    energy_per_clip_mj,
    parse_tegrastats,
    rail_rule,
    total_source,
)

TEGRASTATS = Path(__file__).parent / "data" / "tegrastats"
DOCS = Path(__file__).parent.parent / "docs" / "power.md"
RULES = {r.key: r for r in RAIL_RULES}


def line(name: str, index: int = 0) -> str:
    return [ln for ln in (TEGRASTATS / name).read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")][index]


def sample(name: str, index: int = 0) -> TegraSample:
    return parse_tegrastats(line(name, index))


class Case(NamedTuple):
    module: str
    file: str
    line_no: int  # which line of the file
    rule: str
    total: tuple[int, int]  # (current, average) mW, computed by hand
    rails: tuple[str, ...]  # the rails the total came from
    partial: bool


CASES = [
    # Nano: POM_5V_IN is the module's 5 V input; POM_5V_GPU and POM_5V_CPU are inside it
    Case("Nano (JetPack 4)", "nano_jp4_effex.txt", 0, "nano", (2746, 2911), ("POM_5V_IN",), False),
    Case("Nano (JetPack 4)", "nano_jp4_effex.txt", 1, "nano", (2980, 2911), ("POM_5V_IN",), False),
    Case("Nano (JetPack 4.6.1)", "nano_jp461_waggle.txt", 0, "nano", (1750, 1628), ("POM_5V_IN",), False),
    Case("Nano (L4T r32, -20 C chamber)", "nano_jp4_jetson_stats_35.txt", 0, "nano", (1828, 1886), ("POM_5V_IN",),
         False),
    # TX2: VDD_IN is the module input; VDD_SYS_* / VDD_CPU, VDD_GPU, ... are inside it
    Case("TX2 (L4T r28)", "tx2_gustavz.txt", 0, "tx1-tx2", (1931, 1931), ("VDD_IN",), False),
    Case("TX2 (L4T r28)", "tx2_gustavz.txt", 1, "tx1-tx2", (1776, 1853), ("VDD_IN",), False),
    Case("TX2 (L4T r32)", "tx2_jp42_tx_utils.txt", 0, "tx1-tx2", (3140, 3208), ("VDD_IN",), False),
    Case("TX2 (JetPack 4)", "tx2_jp4_beszel.txt", 0, "tx1-tx2", (5297, 5297), ("VDD_IN",), False),
    # Xavier NX, Orin NX, Orin Nano: VDD_IN is the module input; VDD_CPU_GPU_CV and VDD_SOC are inside it
    Case("Xavier NX (JetPack 4)", "xavier_nx_jp4_waggle.txt", 0, "xavier-nx/orin-nx/orin-nano", (6140, 5510),
         ("VDD_IN",), False),
    Case("Xavier NX (JetPack 5.1.2)", "xavier_nx_jp512_waggle.txt", 0, "xavier-nx/orin-nx/orin-nano", (2763, 2846),
         ("VDD_IN",), False),
    Case("Orin Nano (JetPack 6)", "orin_nano_jp6_beszel.txt", 0, "xavier-nx/orin-nx/orin-nano", (12479, 12479),
         ("VDD_IN",), False),
    Case("Orin Nano (JetPack 6)", "orin_nano_jp6_beszel.txt", 1, "xavier-nx/orin-nx/orin-nano", (4824, 4824),
         ("VDD_IN",), False),
    Case("Orin NX (JetPack 5.1.1)", "orin_nx_jp511_datadog.txt", 0, "xavier-nx/orin-nx/orin-nano", (5299, 5299),
         ("VDD_IN",), False),
    # AGX Xavier: no input monitor; six branches of SYS_VIN_HV / SYS_VIN_MV: 463 + 618 + 2936 + 0 + 309 + 3306
    Case("AGX Xavier (JetPack 4.2)", "xavier_agx_jp42_gtop.txt", 0, "agx-xavier", (7632, 7632),
         ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"), True),
    # AGX Orin: no input monitor; VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0, never VDDQ_VDD2_1V8AO (inside VIN_SYS_5V0)
    Case("AGX Orin (JetPack 5)", "orin_agx_jp5_gdwr.txt", 0, "agx-orin", (2340 + 390 + 4025, 2340 + 390 + 4025),
         ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    Case("AGX Orin (JetPack 5.1)", "orin_agx_jp51_catid.txt", 0, "agx-orin", (2399 + 400 + 4032, 2399 + 400 + 4032),
         ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    Case("AGX Orin (JetPack 6.2.1)", "orin_agx_jp6_tegra_exporter.txt", 0, "agx-orin", (8726, 8726),
         ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    Case("AGX Orin (JetPack 6.2.1)", "orin_agx_jp6_tegra_exporter.txt", 1, "agx-orin",
         (2412 + 1607 + 4607, 2412 + 1607 + 4657), ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    Case("AGX Orin (JetPack 7.2)", "orin_agx_jp72_jetson_stats.txt", 0, "agx-orin",
         (5139 + 3268 + 5500, 5139 + 3268 + 5500),
         ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    Case("AGX Orin (JetPack 7.2)", "orin_agx_jp72_tegra_exporter.txt", 0, "agx-orin",
         (2265 + 2643 + 4722, 2265 + 2643 + 4722),
         ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), True),
    # Thor: VIN (INA238 on the carrier) where printed; else VDD_GPU + VDD_CPU_SOC_MSS + VIN_SYS_5V0, partial
    Case("Thor with VIN (JetPack 7.2)", "thor_jp72_wendyos.txt", 0, "thor", (87426, 43713), ("VIN",), False),
    Case("Thor without VIN (JetPack 7.1)", "thor_jp71_tegra_exporter.txt", 0, "thor",
         (0 + 4165 + 4126, 0 + 4165 + 4126),
         ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"), True),
    Case("Thor without VIN (JetPack 7.1)", "thor_jp71_tegra_exporter.txt", 1, "thor",
         (0 + 4923 + 4327, 0 + 4544 + 4227), ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"), True),
    Case("Thor without VIN (JetPack 7.2)", "thor_jp72_tegra_exporter.txt", 1, "thor",
         (4925 + 7953 + 6667, 4925 + 8332 + 6717), ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"), True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.module}: {c.file}[{c.line_no}]" for c in CASES])
def test_total_follows_the_rule_of_the_module(case: Case) -> None:
    s = sample(case.file, case.line_no)
    assert s.power_rule == case.rule
    assert (s.total_power_mw, s.total_power_avg_mw) == case.total
    assert s.power_rails == case.rails
    assert s.power_partial is case.partial
    assert s.power_rail == (case.rails[0] if len(case.rails) == 1 and not case.partial
                            else f"sum({','.join(case.rails)})")
    assert s.negative_rails == ()
    rule = RULES[case.rule]
    # never a rail that is part of another: the total is the input rail alone, or branches none of which is inside
    # another summed rail
    assert all(rule.inside.get(r) not in case.rails for r in case.rails)


def test_every_generation_is_covered() -> None:
    covered = {c.module.split(" (")[0] for c in CASES}
    assert covered >= {"Nano", "TX2", "Xavier NX", "AGX Xavier", "Orin Nano", "Orin NX", "AGX Orin", "Thor with VIN",
                       "Thor without VIN"}
    agx_orin = {c.module for c in CASES if c.rule == "agx-orin"}
    assert any("JetPack 5" in m for m in agx_orin) and any("JetPack 6" in m for m in agx_orin)
    assert {c.rule for c in CASES} == set(RULES) - {"tx2-nx"}  # no TX2 NX line was found


def test_rules_are_data_with_sources() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for rule in RAIL_RULES:
        assert rule.modules and rule.sources and rule.input_scope, rule.key
        assert rule.input_rail is None or rule.input_rail in rule.rails
        assert set(rule.branches) <= rule.rails and set(rule.inside) <= rule.rails
        # a branch is never inside another branch: only inside the input rail it stands in for
        assert all(rule.inside.get(b) in (None, rule.input_rail) for b in rule.branches), rule.key
        assert rule.input_rail is not None or rule.branches, rule.key  # no input rail: something to sum
        assert f"`{rule.key}`" in doc, rule.key  # docs/power.md has the same table
    assert RULES["agx-orin"].inside == {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0"}
    assert "VDDQ_VDD2_1V8AO" not in RULES["agx-orin"].branches
    assert RULES["thor"].input_rail == "VIN" and RULES["agx-orin"].input_rail is None


def test_agx_orin_no_longer_adds_vddq_inside_vin_sys_5v0() -> None:
    """Before, the AGX Orin total added VDDQ_VDD2_1V8AO (301 mW here), already inside VIN_SYS_5V0."""
    s = sample("orin_agx_jp5_gdwr.txt")
    assert s.rails["VDDQ_VDD2_1V8AO"] == (301, 301)
    assert s.total_power_mw == sum(s.rails[r][0] for r in s.rails if r != "NC") - 301
    assert s.rails["NC"] == (0, 0) and "NC" not in s.power_rails


def test_thor_partial_sum_is_well_under_vin() -> None:
    """On the Thor line that prints both, the branch rails add up to 86% of VIN: a partial total from an image without
    VIN is a different quantity, which is why it is marked."""
    s = sample("thor_jp72_wendyos.txt")
    branches = sum(s.rails[r][0] for r in RULES["thor"].branches)
    assert branches == 37528 + 18961 + 18331 == 74820
    assert s.total_power_mw == 87426 and branches / s.total_power_mw == pytest.approx(0.856, abs=0.001)


def test_rule_matching() -> None:
    assert rail_rule(["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"]) is RULES["thor"]  # not AGX Orin (VIN_SYS_5V0)
    assert rail_rule(["VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR"]) is RULES["tx1-tx2"]  # not Thor
    assert rail_rule(["VDD_IN", "VDD_CPU_GPU", "VDD_SOC"]) is RULES["tx2-nx"]
    assert rail_rule(["NC"]) is None and rail_rule(["SOMETHING_NEW"]) is None


def test_unknown_board() -> None:
    """Rails no rule knows: an input rail if one is there, else every rail summed and marked partial."""
    s = parse_tegrastats("RAM 100/200MB FUTURE_A 100mW/90mW FUTURE_B 50mW/40mW")
    assert (s.total_power_mw, s.total_power_avg_mw, s.power_partial, s.power_rule) == (150, 130, True, None)
    assert s.power_rail == "sum(FUTURE_A,FUTURE_B)"
    s = parse_tegrastats("RAM 100/200MB FUTURE_A 100mW/90mW VIN 5000mW/4000mW")
    assert (s.total_power_mw, s.power_rail, s.power_partial) == (5000, "VIN", False)


def test_a_sub_rail_alone_is_no_total() -> None:
    """A Nano line cut after its GPU rail has no POM_5V_IN: POM_5V_GPU alone is part of the input, not a total."""
    s = parse_tegrastats(line("nano_jp4_effex.txt").split(" POM_5V_IN ")[0] + " POM_5V_GPU 159/161")
    assert s.power_rule == "nano" and s.total_power_mw is None and s.power_rail is None


# ------------------------------------------------------------------------------------------------ negative readings

def test_negative_branch_reading_is_reported_not_summed() -> None:
    """EDITED real line (Thor, JetPack 7.1): its "VDD_GPU 0mW/0mW" replaced by a reading below zero."""
    real = line("thor_jp71_tegra_exporter.txt")
    assert "VDD_GPU 0mW/0mW" in real
    s = parse_tegrastats(real.replace("VDD_GPU 0mW/0mW", "VDD_GPU -392mW/-392mW"))
    assert s.rails["VDD_GPU"] == (-392, -392)
    assert s.negative_rails == ("VDD_GPU",)
    assert (s.total_power_mw, s.total_power_avg_mw) == (4165 + 4126, 4165 + 4126)  # not 4165 + 4126 - 392
    assert s.power_rails == ("VDD_CPU_SOC_MSS", "VIN_SYS_5V0") and s.power_partial


def test_negative_average_only() -> None:
    """EDITED real line (AGX Orin, JetPack 6): a negative average leaves the current reading in the sum."""
    real = line("orin_agx_jp6_tegra_exporter.txt")
    s = parse_tegrastats(real.replace("VDD_CPU_CV 1607mW/1607mW", "VDD_CPU_CV 1607mW/-5mW"))
    assert s.negative_rails == ("VDD_CPU_CV",)
    assert (s.total_power_mw, s.total_power_avg_mw) == (2412 + 1607 + 4707, 2412 + 4707)


def test_negative_input_rail_gives_no_total() -> None:
    """EDITED real line (Thor with VIN): an input rail below zero is no total, and no branch sum stands in for it."""
    real = line("thor_jp72_wendyos.txt")
    s = parse_tegrastats(real.replace("VIN 87426mW/43713mW/87426mW", "VIN -12mW/43713mW/87426mW"))
    assert s.negative_rails == ("VIN",)
    assert (s.total_power_mw, s.total_power_avg_mw, s.power_rail, s.power_partial) == (None, 43713, "VIN", False)


# ----------------------------------------------------------------------------------------------------- placeholders

@pytest.mark.parametrize("name,value", [("xavier_agx_jp42_gtop.txt", 100.0), ("tx2_gustavz.txt", 100.0),
                                        ("xavier_nx_jp4_waggle.txt", 100.0), ("nano_jp4_jetson_stats_35.txt", 100.0),
                                        ("tx2_jp4_beszel.txt", 50.0), ("xavier_nx_jp512_waggle.txt", 50.0)])
def test_pmic_is_not_a_temperature(name: str, value: float) -> None:
    s = sample(name)
    assert f"PMIC@{value:g}C" in line(name)
    assert "PMIC" not in s.temperatures and s.placeholders["PMIC"] == value


def test_powered_off_zones_are_placeholders() -> None:
    s = sample("orin_agx_jp51_catid.txt")
    assert {k: v for k, v in s.placeholders.items()} == {"CV0": -256.0, "CV1": -256.0, "GPU": -256.0, "CV2": -256.0}
    assert s.temperatures["CPU"] == 42.593 and "GPU" not in s.temperatures


def test_a_real_negative_temperature_is_kept() -> None:
    """EDITED real Nano line (it was recorded in a -20 C chamber just before the zones went below zero): only the
    -256 C sentinel is a placeholder, a temperature below zero is a temperature."""
    s = parse_tegrastats(line("nano_jp4_jetson_stats_35.txt").replace("PLL@15.5C", "PLL@-3.5C"))
    assert s.temperatures["PLL"] == -3.5 and "PLL" not in s.placeholders


# ------------------------------------------------------------------------------------------ where the energy came from

def timed(*names: tuple[str, int]) -> list[TimedSample]:
    return [TimedSample(float(i), sample(n, k)) for i, (n, k) in enumerate(names)]


def test_total_source_input_rail() -> None:
    src = total_source(timed(("orin_nano_jp6_beszel.txt", 0), ("orin_nano_jp6_beszel.txt", 1)))
    assert src is not None
    assert (src.rail, src.rule, src.partial, src.mixed, src.samples) == ("VDD_IN", "xavier-nx/orin-nx/orin-nano",
                                                                          False, False, 2)
    assert src.describe() == "total from VDD_IN, module input" and src.short() == "VDD_IN"


def test_total_source_partial_warns(caplog: pytest.LogCaptureFixture) -> None:
    samples = timed(*[("thor_jp71_tegra_exporter.txt", k) for k in range(3)])
    src = total_source(samples)
    assert src is not None and src.partial and not src.mixed
    assert src.rail == "sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)"
    assert "PARTIAL" in src.describe() and "not comparable" in src.describe()
    assert src.short() == "partial sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)"
    with caplog.at_level(logging.WARNING, logger="edgefuse.devices.jetson"):
        # 8291 and 9250 mW for 1 s, then 9250 and 8972 for 1 s: (8770.5 + 9111) mJ over 2 clips
        assert energy_per_clip_mj(samples, 0.0, 2.0, clips=2) == pytest.approx((8770.5 + 9111) / 2)
    assert "PARTIAL total sum(VDD_GPU,VDD_CPU_SOC_MSS,VIN_SYS_5V0)" in caplog.text


def test_total_source_mixed_and_negative(caplog: pytest.LogCaptureFixture) -> None:
    vin = sample("thor_jp72_wendyos.txt")
    edited = parse_tegrastats(line("thor_jp71_tegra_exporter.txt").replace("VDD_GPU 0mW/0mW", "VDD_GPU -392mW/-392mW"))
    samples = [TimedSample(0.0, vin), TimedSample(1.0, edited)]
    src = total_source(samples)
    assert src is not None and src.partial and src.mixed and src.rule == "thor"
    assert src.negative_rails == (("VDD_GPU", 1),)
    assert src.rail == "VIN / sum(VDD_CPU_SOC_MSS,VIN_SYS_5V0)"
    assert src.short() == "partial VIN / sum(VDD_CPU_SOC_MSS,VIN_SYS_5V0) (mixed) (below zero: VDD_GPU)"
    with caplog.at_level(logging.WARNING, logger="edgefuse.devices.jetson"):
        energy_per_clip_mj(samples, 0.0, 1.0, clips=1)
    assert "mixed in one window" in caplog.text and "VDD_GPU in 1 samples" in caplog.text
    assert total_source(samples, 5.0, 6.0) is None  # no sample in the window
