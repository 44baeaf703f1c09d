"""Device detection on recorded and composed readings (tests/data/device_detect, sources in its SOURCES.md): every
profile is detected as itself, through this machine's path (a fake root and a stand-in nvidia-smi) and the remote one
(the detection script's answer), with the rule that chose it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefuse.backends.remote.detect import device_profile, parse_detection
from edgefuse.cli.render_devices import render_detection
from edgefuse.devices import Readings, decide, detect, get_device, list_devices
from edgefuse.devices.detect import MODULE_BOARDS, compatible_of, gpu_line, mem_total_kb_of
from edgefuse.errors import EdgefuseError

DATA = Path(__file__).parent / "data" / "device_detect"

# sample -> (profile, rule, JetPack release or None)
JETSONS = {
    "orin_nx_16gb_jp62": ("jetson_orin_nx", "part number", "6.2"),
    "orin_nx_8gb_jp511": ("jetson_orin_nx_8gb", "part number", "5.1.1"),
    "orin_nano_8gb_devkit_jp511": ("jetson_orin_nano", "part number", "5.1.1"),
    "orin_nano_8gb_super_dt": ("jetson_orin_nano", "part number", None),
    "orin_nano_4gb_jp512": ("jetson_orin_nano_4gb", "part number", "5.1.2"),
    "orin_nano_super_devkit_jp62": ("jetson_orin_nano", "part number", "6.2"),
    "agx_orin_64gb_devkit": ("jetson_agx_orin", "part number", None),
    "agx_orin_32gb_jp511": ("jetson_agx_orin_32gb", "part number", "5.1.1"),
    "agx_orin_devkit_p3701_0000_jp72": ("jetson_agx_orin_devkit", "part number", "7.2"),
    "agx_orin_industrial_jp512": ("jetson_agx_orin_industrial", "part number", "5.1.2"),
    "xavier_nx_devkit_jp46": ("jetson_xavier_nx", "part number", "4.6"),
    "xavier_nx_boson_carrier": ("jetson_xavier_nx", "part number", None),
    "xavier_nx_16gb_jp515": ("jetson_xavier_nx_16gb", "part number", "5.1.5"),
    "agx_xavier_32gb_jp461": ("jetson_agx_xavier", "part number", "4.6.1"),
    "clara_agx_p2888_0004_r34": ("jetson_agx_xavier", "part number", None),
    "agx_xavier_64gb_jp514": ("jetson_agx_xavier_64gb", "part number", "5.1.4"),
    "agx_xavier_16gb_jp46": ("jetson_agx_xavier_16gb", "part number", "4.6"),
    "tx2_jp441": ("jetson_tx2", "device-tree text", None),
    "tx2_4gb_jp466": ("jetson_tx2_4gb", "part number", "4.6.6"),
    "tx2i_jp46": ("jetson_tx2i", "device-tree text", "4.6"),
    "tx2_nx_jp461": ("jetson_tx2_nx", "part number", "4.6.1"),
    "nano_devkit_jp466": ("jetson_nano", "part number", "4.6.6"),
    "nano_2gb_devkit_jp461": ("jetson_nano_2gb", "part number", "4.6.1"),
    "thor_t5000_devkit_jp70": ("jetson_thor", "part number", "7.0"),
}
GPUS = {f"smi_{name}": profile for name, profile in {
    "h100_sxm": "h100", "h100_pcie": "h100_pcie", "h100_nvl": "h100_nvl", "a100_80gb_sxm": "a100",
    "a100_80gb_pcie": "a100_80gb_pcie", "a100_40gb_pcie": "a100_40gb_pcie", "a100_40gb_sxm": "a100_40gb_sxm",
    "l4": "l4", "rtx3090": "rtx3090", "rtx4090": "rtx4090", "rtx5090": "rtx5090", "rtx_a4000": "rtx_a4000",
    "rtx_a5000": "rtx_a5000", "rtx_a6000": "rtx_a6000", "rtx_6000_ada": "rtx_6000_ada"}.items()}


def sample(name: str) -> dict[str, str]:
    """A sample file's sections (@@model, @@compatible, @@l4t, @@meminfo, @@nvidia_smi)."""
    out: dict[str, list[str]] = {}
    key = None
    for line in (DATA / f"{name}.txt").read_text().splitlines():
        if line.startswith("@@"):
            key = line[2:]
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def fake_root(tmp_path: Path, s: dict[str, str]) -> Path:
    """The files detection reads, as the kernel and L4T write them (device-tree strings NUL-terminated)."""
    root = tmp_path / "root"
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "etc").mkdir()
    if "model" in s:
        (root / "proc" / "device-tree" / "model").write_bytes(s["model"].encode() + b"\x00")
    if "compatible" in s:
        (root / "proc" / "device-tree" / "compatible").write_bytes(
            b"".join(c.encode() + b"\x00" for c in s["compatible"].splitlines()))
    if "l4t" in s:
        (root / "etc" / "nv_tegra_release").write_text(s["l4t"] + "\n")
    if "meminfo" in s:
        (root / "proc" / "meminfo").write_text(s["meminfo"] + "\nMemFree:         1000000 kB\n")
    return root


def fake_smi(tmp_path: Path, text: str) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n")
    script.chmod(0o755)
    return str(script)


def remote_answer(s: dict[str, str]) -> str:
    """The remote detection script's answer for the same readings."""
    sections = {"l4t": s.get("l4t", ""), "model": s.get("model", ""), "compatible": s.get("compatible", ""),
                "nvidia_smi": s.get("nvidia_smi", ""), "meminfo": s.get("meminfo", "")}
    return "".join(f"\n@@edgefuse:{k}\n{v}" for k, v in sections.items()) + "\n@@edgefuse:end\n"


@pytest.mark.parametrize("name", sorted(JETSONS))
def test_every_jetson_detects_as_itself(tmp_path: Path, name: str) -> None:
    profile, rule, jetpack = JETSONS[name]
    s = sample(name)
    # a Jetson is recognised before any GPU query: a broken nvidia-smi must not matter
    found = detect(root=fake_root(tmp_path, s), nvidia_smi=str(tmp_path / "no-such-nvidia-smi"))
    assert (found.profile.name, found.rule) == (profile, rule), found.reason
    assert (found.jetpack.version if found.jetpack else None) == jetpack
    assert found.readings.compatible == compatible_of(s.get("compatible"))
    # the remote path (detection script over SSH) decides the same
    assert device_profile(parse_detection(remote_answer(s))).name == profile


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for nvidia-smi")
@pytest.mark.parametrize("name", sorted(GPUS))
def test_every_gpu_detects_as_itself(tmp_path: Path, name: str) -> None:
    s = sample(name)
    found = detect(root=fake_root(tmp_path, {}), nvidia_smi=fake_smi(tmp_path, s["nvidia_smi"]))
    assert (found.profile.name, found.rule) == (GPUS[name], "nvidia-smi name"), found.reason
    assert found.readings.gpus == (s["nvidia_smi"],)
    assert device_profile(parse_detection(remote_answer(s))).name == GPUS[name]


def test_every_profile_has_a_sample() -> None:
    covered = {p for p, _, _ in JETSONS.values()} | set(GPUS.values()) | {"cpu"}
    assert {d.name for d in list_devices()} == covered


def test_part_numbers_and_aliases_are_unique() -> None:
    devices = list_devices()
    parts = [part for d in devices for part in d.part_numbers]
    assert len(parts) == len(set(parts)) and all(part[1:5] in MODULE_BOARDS for part in parts)
    names = [d.name for d in devices] + [a for d in devices for a in d.aliases]
    assert len(names) == len(set(names))
    for d in devices:
        for alias in d.aliases:
            assert get_device(alias.replace("_", "-").upper()).name == d.name


def test_the_old_names_keep_their_variant() -> None:
    # existing profile names describe the variant they always did; the new variants have their own names
    assert get_device("jetson_orin_nx").title == "Jetson Orin NX 16GB" and get_device("jetson_orin_nx").dla_cores == 2
    assert get_device("jetson_orin_nx_8gb").dla_cores == 1
    assert get_device("jetson_orin_nano").memory_gb == 8 and get_device("jetson_orin_nano_4gb").memory_gb == 4
    assert get_device("jetson_agx_orin").memory_gb == 64 and get_device("jetson_agx_orin_32gb").memory_gb == 32
    assert get_device("h100").title == "H100 80GB SXM" and get_device("a100").title == "A100 80GB SXM"
    assert get_device("jetson_orin_nx_16gb").name == "jetson_orin_nx"


def test_super_device_tree_is_noted(tmp_path: Path) -> None:
    found = detect(root=fake_root(tmp_path, sample("orin_nano_super_devkit_jp62")), nvidia_smi=None)
    assert found.profile.name == "jetson_orin_nano" and any("Super" in n for n in found.notes)
    super_mode = next(m for m in found.profile.power_modes if m.name == "MAXN SUPER")
    assert super_mode.gpu_int8_tops == 33.5 and super_mode.memory_bandwidth_gbs == 102


def test_a_module_without_a_profile_is_an_error(tmp_path: Path) -> None:
    # the T4000's module (p3834-0000) must not fall back to the T5000 profile by its "tegra264" compatible
    with pytest.raises(EdgefuseError, match=r"module p3834-0000 \(Jetson Thor family\) has no device profile"):
        detect(root=fake_root(tmp_path, sample("thor_t4000_jp71")), nvidia_smi=None)


def test_memory_overrides_a_device_tree_part_number_of_another_size(tmp_path: Path) -> None:
    # JetPack 7's AGX Orin device tree names p3701-0000 (32GB) whatever the module (recorded: jetson_stats issue 864,
    # a p3701-0001 module); a 64GB module's MemTotal must then pick a 64GB profile, a 32GB one keeps the devkit profile
    s = sample("agx_orin_devkit_p3701_0000_jp72")
    found = detect(root=fake_root(tmp_path, {**s, "meminfo": "MemTotal:       64335836 kB"}), nvidia_smi=None)
    assert (found.profile.name, found.rule) == ("jetson_agx_orin", "part number"), found.reason
    assert "p3701-0000" in found.reason and "by memory" in found.reason and "ambiguous between" in found.reason
    readings = Readings(model=s["model"], compatible=compatible_of(s["compatible"]), mem_total_kb=31_970_000)
    assert decide(readings).profile.name == "jetson_agx_orin_devkit"


def test_memory_variants_without_meminfo_pick_the_base_profile_and_say_so() -> None:
    # a device tree that names no module (the AGX Xavier developer kit's carrier as Jetson.GPIO lists it)
    found = decide(Readings(model="Jetson-AGX", compatible=("nvidia,p2972-0000", "nvidia,tegra194"), l4t="35.6.0"))
    assert found.profile.name == "jetson_agx_xavier" and "ambiguous between" in found.reason
    assert "pass --device" in found.reason


def test_gpu_names_must_end_with_a_profile_name() -> None:
    # an RTX 3090 Ti or an L40S is not an RTX 3090 or an L4
    for line in ("NVIDIA GeForce RTX 3090 Ti, 24564 MiB, 8.6", "NVIDIA L40S, 46068 MiB, 8.9"):
        with pytest.raises(EdgefuseError, match="has no device profile"):
            decide(Readings(gpus=(line,)))
    # a bare family name: its memory narrows it to the 40GB parts, the rest is said to be ambiguous
    found = decide(Readings(gpus=("NVIDIA A100, 40960 MiB",)))
    assert found.profile.name in ("a100_40gb_pcie", "a100_40gb_sxm") and "ambiguous between" in found.reason


@pytest.mark.parametrize("line,parsed", [
    ("NVIDIA L4, 23034 MiB", ("NVIDIA L4", 23034, "")),
    ("NVIDIA GeForce RTX 4090, 8.9", ("NVIDIA GeForce RTX 4090", None, "8.9")),
    ("NVIDIA A100-SXM4-80GB, 81920 MiB, 8.0", ("NVIDIA A100-SXM4-80GB", 81920, "8.0")),
    ("NVIDIA H100 NVL, 95830 MiB, 580.178.04", ("NVIDIA H100 NVL", 95830, "")),
    ("NVIDIA Thor", ("NVIDIA Thor", None, "")),
])
def test_gpu_line(line: str, parsed: tuple[str, int | None, str]) -> None:
    assert gpu_line(line) == parsed


def test_meminfo_and_compatible_parsing() -> None:
    assert mem_total_kb_of("MemTotal:       32504624 kB\nMemFree: 1 kB") == 32504624 and mem_total_kb_of("") is None
    assert compatible_of("a\x00b\x00") == ("a", "b") == compatible_of("a\nb\n") and compatible_of(None) == ()


def test_detect_report_says_what_was_read_and_why(tmp_path: Path) -> None:
    found = detect(root=fake_root(tmp_path, sample("agx_xavier_32gb_jp461")), nvidia_smi=None)
    text = render_detection(found)
    for expected in ("device-tree model       Jetson-AGX", "nvidia,p2822-0000+p2888-0001, nvidia,tegra194",
                     "L4T release", "32.7.1", "31.0 GiB", "profile: jetson_agx_xavier", "rule: part number", "by memory",
                     "JetPack 4.6.1 (L4T 32.7.1): TensorRT 8.2.1, CUDA 10.2"):
        assert expected in text, text
    d = found.to_dict()
    assert d["profile"] == "jetson_agx_xavier" and d["rule"] == "part number"
    assert d["readings"]["compatible"] == ["nvidia,galen", "nvidia,jetson-xavier", "nvidia,p2822-0000+p2888-0001",
                                           "nvidia,tegra194"]


def test_devices_cli_table_and_detect() -> None:
    from edgefuse.cli import cli

    res = CliRunner().invoke(cli, ["devices"])
    assert res.exit_code == 0, res.output
    assert "GPU INT8 TOPS" in res.output and "jetson_orin_nx_8gb" in res.output
    res = CliRunner().invoke(cli, ["devices", "--json"])
    assert res.exit_code == 0 and '"dla_int8_tops": "9.9"' in res.output
    res = CliRunner().invoke(cli, ["devices", "--detect"])  # this machine: whatever it is, it says why
    assert res.exit_code == 0, res.output
    assert "read:" in res.output and "profile:" in res.output and "rule:" in res.output
