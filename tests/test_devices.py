"""Device profiles (devices/*.toml, edgefuse.devices) and TensorRT name lists (tests/data/trt_names)."""
from __future__ import annotations

import importlib.util
import logging
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefuse.devices import (
    PRECISIONS,
    check_precision,
    detect_device,
    detect_l4t,
    get_device,
    jetpack_for_l4t,
    list_devices,
    load_profile,
    tensorrt_versions,
)
from edgefuse.errors import EdgefuseError

REPO = Path(__file__).resolve().parents[1]
DEVICES = REPO / "devices"
TRT_NAMES = Path(__file__).parent / "data" / "trt_names"
EXPECTED = {
    "jetson_nano", "jetson_nano_2gb", "jetson_xavier_nx", "jetson_xavier_nx_16gb", "jetson_agx_xavier",
    "jetson_agx_xavier_16gb", "jetson_agx_xavier_64gb", "jetson_orin_nano", "jetson_orin_nano_4gb", "jetson_orin_nx",
    "jetson_orin_nx_8gb", "jetson_agx_orin", "jetson_agx_orin_32gb", "jetson_agx_orin_devkit",
    "jetson_agx_orin_industrial", "jetson_tx2", "jetson_tx2_4gb", "jetson_tx2i", "jetson_tx2_nx", "jetson_thor",
    "rtx3090", "rtx4090", "rtx5090", "rtx_a4000", "rtx_a5000", "rtx_a6000", "rtx_6000_ada", "l4", "a100",
    "a100_80gb_pcie", "a100_40gb_pcie", "a100_40gb_sxm", "h100", "h100_pcie", "h100_nvl", "cpu",
}
FIGURES = ("memory_gb", "memory_bandwidth_gbs", "fp16_tflops", "int8_tops", "int8_tops_sparse", "fp8_tflops",
           "fp4_tflops_sparse", "compute_capability", "dla_cores", "gpu_fp32_tflops", "gpu_fp16_tflops",
           "gpu_int8_tops", "dla_int8_tops")


# --- profiles -------------------------------------------------------------------------------------------------------

def test_every_profile_loads_with_its_fields() -> None:
    devices = {d.name: d for d in list_devices()}
    assert set(devices) == EXPECTED
    for d in devices.values():
        assert d.path.parent == DEVICES and d.path.stem == d.name
        assert d.title and "fp32" in d.precisions and set(d.precisions) <= set(PRECISIONS)
        if d.kind == "cpu":
            assert d.compute_capability is None and d.memory_gb is None  # figures left to be measured
            continue
        assert re.fullmatch(r"\d+\.\d+", d.compute_capability or "")
        assert d.architecture and d.match and d.memory_gb and d.memory_bandwidth_gbs
        # the dense per-unit peaks the estimate reads: fp32 and fp16 always, int8 where it is fast, DLA where there is one
        assert d.gpu_fp32_tflops and d.gpu_fp16_tflops and d.gpu_fp16_tflops >= d.gpu_fp32_tflops
        assert bool(d.gpu_int8_tops) == ("int8" in d.precisions)
        assert bool(d.dla_int8_tops) == bool(d.dla_cores)
        if d.gpu_int8_tops and d.int8_tops and d.dla_cores:  # a Jetson's published total is GPU + DLA, never the GPU's
            assert d.gpu_int8_tops < d.int8_tops
        if d.kind == "jetson":
            assert d.jetpack and d.power_modes
            assert all(j.tensorrt and j.cuda and j.l4t for j in d.jetpack)
        else:
            assert d.min_tensorrt and d.min_cuda and not d.jetpack


def test_every_figure_names_its_source() -> None:
    for path in sorted(DEVICES.glob("*.toml")):
        for line in path.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key in FIGURES and line.strip() != "dla_cores = 0":  # desktop GPUs have no DLA
                assert "# source:" in line or "# derived:" in line, f"{path.name}: {line!r} has no source"


def test_device_facts() -> None:
    names = ("jetson_nano", "jetson_orin_nano", "jetson_agx_orin", "jetson_thor")
    nano, orin_nano, agx_orin, thor = (get_device(n) for n in names)
    assert nano.compute_capability == "5.3" and "int8" not in nano.precisions and nano.slow("int8").instead == "fp16"
    assert orin_nano.dla_cores == 0 and agx_orin.dla_cores == 2 and thor.dla_cores == 0
    assert [m.name for m in orin_nano.power_modes] == ["7W", "15W", "25W", "MAXN SUPER"]
    assert {"fp8", "fp4"} <= set(thor.precisions) and thor.compute_capability == "11.0"
    assert tensorrt_versions(nano) == ["8.0.1", "8.2.1"]
    assert "10.3" in tensorrt_versions(orin_nano) and "11.4.1" in tensorrt_versions(agx_orin)
    assert tensorrt_versions(get_device("rtx4090")) == ["8.5+"] and tensorrt_versions(get_device("cpu")) == []
    jp = {j.version: j for j in orin_nano.jetpack}
    assert (jp["5.1.2"].tensorrt, jp["6.1"].tensorrt, jp["6.2"].cuda) == ("8.5.2", "10.3", "12.6")


def test_get_device_normalises_and_rejects_unknown_names() -> None:
    assert get_device("Jetson-Orin-Nano").name == "jetson_orin_nano"
    assert get_device("RTX4090").name == "rtx4090"
    with pytest.raises(EdgefuseError) as e:
        get_device("orin-nanoo")
    msg = str(e.value)
    assert "\n" not in msg and "jetson_orin_nano" in msg and "run 'edgefuse devices'" in msg
    with pytest.raises(EdgefuseError, match="known devices: a100, a100_40gb_pcie, .*, cpu, "):
        get_device("tpu")


def _profile_copy(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / "devices"
    folder.mkdir(exist_ok=True)
    text = edit((DEVICES / f"{name}.toml").read_text())
    (folder / f"{name}.toml").write_text(text)
    return folder / f"{name}.toml"


@pytest.mark.parametrize("name,edit,message", [
    ("jetson_agx_orin", lambda t: re.sub(r"(?m)^memory_bandwidth_gbs = .*$", "", t),
     "missing required key 'memory_bandwidth_gbs'"),
    ("rtx3090", lambda t: re.sub(r"(?m)^min_tensorrt = .*$", "", t), "missing required key 'min_tensorrt'"),
    ("cpu", lambda t: t.replace('kind = "cpu"', ""), "missing required key 'kind'"),
    ("jetson_nano", lambda t: t.replace('instead = "fp16"', ""),
     "slow_precisions.int8 is missing required key 'instead'"),
    ("jetson_thor", lambda t: t.replace('cuda = "13.2"', ""), "jetpack[2] is missing required key 'cuda'"),
    ("h100", lambda t: t.replace("dla_cores = 0", "dla_cores = 0\nfp16_tflop = 1"), "unknown key(s) fp16_tflop"),
    ("a100", lambda t: t.replace('name = "a100"', 'name = "a10"'), "must equal the file name"),
    ("rtx4090", lambda t: t.replace('"fp8"]', '"fp9"]'), "'fp9' is not one of"),
    ("jetson_orin_nx", lambda t: t.replace("memory_gb = 16", "memory_gb = '16'"), "memory_gb must be a number"),
    ("rtx4090", lambda t: re.sub(r"(?m)^gpu_fp32_tflops = .*$", "", t), "missing required key 'gpu_fp32_tflops'"),
    ("jetson_orin_nx", lambda t: re.sub(r"(?m)^dla_int8_tops = .*$", "", t), "missing required key 'dla_int8_tops'"),
    ("jetson_orin_nano", lambda t: t.replace("dla_cores = 0", "dla_cores = 0\ndla_int8_tops = 1"),
     "dla_int8_tops is given but dla_cores is 0"),
    ("jetson_orin_nano", lambda t: re.sub(r"(?m)^gpu_int8_tops = .*$", "", t), "missing required key 'gpu_int8_tops'"),
    ("jetson_orin_nano", lambda t: t.replace('"p3767-0004"', '"P3767-4"').replace('"p3767-0003"', '"3767"'),
     "part_numbers: '3767' must look like"),
    ("jetson_orin_nano", lambda t: t.replace('"jetson_orin_nano_8gb"', '"Orin Nano"'), "aliases: 'Orin Nano'"),
    ("jetson_orin_nano", lambda t: t.replace('"33.5  #', '"33.5"  #').replace("gpu_int8_tops = 33.5", "gpu_int8_tops = -1"),
     "power_modes[3].gpu_int8_tops must be positive"),
    ("cpu", lambda t: t + "\n[oops", "not valid TOML"),
])
def test_invalid_profiles_name_file_and_key(tmp_path: Path, name: str, edit, message: str) -> None:
    path = _profile_copy(tmp_path, name, edit)
    with pytest.raises(EdgefuseError) as e:
        load_profile(path)
    assert str(path) in str(e.value) and message in str(e.value)
    with pytest.raises(EdgefuseError):
        list_devices(path.parent)


# --- precision ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device,asked,got", [
    ("jetson_nano", "auto", "fp16"), ("jetson_nano", "fp16", "fp16"), ("jetson_nano", "fp32", "fp32"),
    ("jetson_orin_nano", "int8", "int8"), ("jetson_orin_nano", "auto", "int8"), ("jetson_agx_orin", "BF16", "bf16"),
    ("jetson_xavier_nx", "auto", "int8"), ("jetson_thor", "fp4", "fp4"), ("jetson_thor", "fp8", "fp8"),
    ("rtx4090", "fp8", "fp8"), ("h100", "fp8", "fp8"), ("cpu", "auto", "int8"), ("cpu", "fp32", "fp32"),
])
def test_check_precision_accepts(device: str, asked: str, got: str) -> None:
    assert check_precision(get_device(device), asked) == got


@pytest.mark.parametrize("device,asked,message", [
    ("jetson_nano", "int8", "int8 is not fast on jetson_nano: Maxwell (sm_53)"),
    ("jetson_nano", "bf16", "does not support bf16"),
    ("jetson_orin_nano", "fp8", "jetson_orin_nano (Ampere, sm_87) does not support fp8"),
    ("jetson_agx_orin", "fp4", "use --precision int8"),
    ("jetson_agx_xavier", "bf16", ("does not support bf16, which needs bf16 tensor cores (Ampere, sm_80, or later); "
                                   "it has fp32, fp16, int8: use --precision fp16")),
    ("jetson_thor", "int4", "--precision must be auto or one of"),
    ("rtx3090", "fp8", "rtx3090 (Ampere, sm_86) does not support fp8"),
    ("a100", "fp8", "does not support fp8"),
    ("cpu", "fp8", "cpu does not support fp8"),
    ("cpu", "int4", "--precision must be auto or one of"),
])
def test_check_precision_rejects(device: str, asked: str, message: str) -> None:
    with pytest.raises(EdgefuseError) as e:
        check_precision(get_device(device), asked)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_impossible_precision_says_what_to_use() -> None:
    with pytest.raises(EdgefuseError, match=r"use --precision fp16$"):
        check_precision(get_device("jetson_nano"), "int8")


def test_cpu_fp16_falls_back_to_fp32_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="edgefuse.devices"):
        assert check_precision(get_device("cpu"), "fp16") == "fp32"
    assert any(r.levelno == logging.WARNING and "fp16 is not fast on cpu" in r.getMessage() for r in caplog.records)


# --- detection ------------------------------------------------------------------------------------------------------

def _jetson_root(tmp_path: Path, model: str | None, release: str | None = None, compatible: str | None = None) -> Path:
    root = tmp_path / "root"
    dt = root / "proc" / "device-tree"
    dt.mkdir(parents=True)
    (root / "etc").mkdir()
    if model is not None:
        (dt / "model").write_bytes(model.encode() + b"\x00")  # device-tree strings end in NUL
    if compatible is not None:
        (dt / "compatible").write_bytes(compatible.encode())
    if release is not None:
        (root / "etc" / "nv_tegra_release").write_text(release)
    return root


def _release(major: int, revision: str) -> str:
    return (f"# R{major} (release), REVISION: {revision}, GCID: 38968081, BOARD: generic, EABI: aarch64, "
            "DATE: Tue Jan 14 23:35:58 UTC 2025\n# KERNEL_VARIANT: oot\n")


@pytest.mark.parametrize("model,release,expected,jetpack", [
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", _release(36, "4.3"), "jetson_orin_nano",
     "6.2"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", _release(36, "4.7"), "jetson_orin_nx", "6.2.1"),
    ("NVIDIA Jetson AGX Orin Developer Kit", _release(35, "4.1"), "jetson_agx_orin", "5.1.2"),
    ("NVIDIA Jetson Nano Developer Kit", _release(32, "7.1"), "jetson_nano", "4.6.1"),
    ("Jetson-AGX", _release(35, "6.0"), "jetson_agx_xavier", "5.1.4"),
    ("NVIDIA Jetson Xavier NX Developer Kit", _release(32, "7.4"), "jetson_xavier_nx", "4.6.4"),
    ("NVIDIA Jetson Xavier NX Developer Kit", _release(32, "6.1"), "jetson_xavier_nx", "4.6"),
    ("Jetson-AGX", _release(35, "1.0"), "jetson_agx_xavier", "5.0.2"),
    ("NVIDIA Jetson AGX Thor Developer Kit", _release(38, "2.1"), "jetson_thor", "7.0"),
])
def test_detect_jetson(tmp_path: Path, model: str, release: str, expected: str, jetpack: str) -> None:
    root = _jetson_root(tmp_path, model, release)
    # a Jetson is recognised before any GPU query: a broken nvidia-smi must not matter
    found = detect_device(root=root, nvidia_smi=str(tmp_path / "no-such-nvidia-smi"))
    assert found.name == expected
    assert jetpack_for_l4t(found, detect_l4t(root)).version == jetpack


def test_detect_jetson_from_compatible_only(tmp_path: Path) -> None:
    compatible = "nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00"
    root = _jetson_root(tmp_path, None, None, compatible)
    assert detect_device(root=root, nvidia_smi=None).name == "jetson_orin_nano"
    assert detect_l4t(root) is None


def test_unknown_jetson_is_an_error(tmp_path: Path) -> None:
    root = _jetson_root(tmp_path, "NVIDIA Jetson TX1", _release(32, "7.1"))
    with pytest.raises(EdgefuseError, match=r"this Jetson \(NVIDIA Jetson TX1\) has no device profile; pass --device"):
        detect_device(root=root, nvidia_smi=None)


def _fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for nvidia-smi")
@pytest.mark.parametrize("output,expected", [
    ("NVIDIA GeForce RTX 4090, 8.9\n", "rtx4090"),
    ("NVIDIA A100-SXM4-80GB, 8.0\nNVIDIA A100-SXM4-80GB, 8.0\n", "a100"),
    ("NVIDIA H100 80GB HBM3, 9.0\n", "h100"),
    ("NVIDIA GeForce RTX 3090, 8.6\n", "rtx3090"),
])
def test_detect_gpu_from_nvidia_smi(tmp_path: Path, output: str, expected: str) -> None:
    root = _jetson_root(tmp_path, None)  # no Jetson files
    assert detect_device(root=root, nvidia_smi=_fake_nvidia_smi(tmp_path, output)).name == expected


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for nvidia-smi")
def test_detect_unknown_gpu_is_an_error(tmp_path: Path) -> None:
    smi = _fake_nvidia_smi(tmp_path, "NVIDIA GeForce RTX 3080, 8.6\n")
    expected = (r"compute capability 8.6\) has no device profile \(same compute capability: rtx3090, rtx_a4000, "
                r"rtx_a5000, rtx_a6000\)")
    with pytest.raises(EdgefuseError, match=expected):
        detect_device(root=_jetson_root(tmp_path, None), nvidia_smi=smi)


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stands in for nvidia-smi")
def test_detect_falls_back_to_cpu(tmp_path: Path, caplog) -> None:
    root = _jetson_root(tmp_path, None)
    assert detect_device(root=root, nvidia_smi=str(tmp_path / "missing" / "nvidia-smi")).name == "cpu"
    assert detect_device(root=root, nvidia_smi=None).name == "cpu"
    failing = _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it could not communicate with the driver", 9)
    with caplog.at_level(logging.WARNING, logger="edgefuse.devices"):
        assert detect_device(root=root, nvidia_smi=failing).name == "cpu"
    assert any("could not communicate" in r.getMessage() for r in caplog.records)


# --- TensorRT name lists --------------------------------------------------------------------------------------------

def _names(version: str) -> set[str]:
    lines = (TRT_NAMES / f"{version}.txt").read_text().splitlines()
    return {ln for ln in lines if ln and not ln.startswith("#")}


def _newest(major: int) -> str:
    versions = [p.stem for p in TRT_NAMES.glob(f"{major}.*.txt")]
    assert versions, f"no TensorRT {major}.x name list in {TRT_NAMES}"
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def test_name_lists_exist_with_provenance() -> None:
    for version in ("8.6.1", "10.3.0", _newest(10), _newest(11)):
        path = TRT_NAMES / f"{version}.txt"
        assert path.stat().st_size < 200_000
        text = path.read_text()
        assert re.search(r"^# wheel: tensorrt\S*bindings-" + re.escape(version) + r"-\S+\.whl$", text, re.MULTILINE)
        assert re.search(r"^# sha256: [0-9a-f]{64}$", text, re.MULTILINE)
        names = [ln for ln in text.splitlines() if not ln.startswith("#")]
        assert names == sorted(set(names)) and len(names) > 900
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]+", n) for n in names)


ALWAYS = ("Builder", "IBuilderConfig", "BuilderFlag", "OnnxParser", "Runtime", "ICudaEngine", "IExecutionContext",
          "Logger", "build_serialized_network", "set_flag", "create_optimization_profile", "set_shape",
          "num_io_tensors",
          "get_tensor_name", "set_tensor_address", "execute_async_v3", "execute_v2", "INT8", "DeviceType", "DLA", "GPU",
          "default_device_type", "DLA_core", "GPU_FALLBACK", "create_network", "NetworkDefinitionCreationFlag",
          "get_timing_cache", "create_timing_cache", "set_timing_cache", "set_memory_pool_limit", "MemoryPoolType",
          "WORKSPACE", "num_DLA_cores", "set_input_shape", "add_quantize", "add_dequantize", "volume", "nptype")


def test_name_lists_record_the_api_changes() -> None:
    v8, v10, v10_new, v11 = (_names(v) for v in ("8.6.1", "10.3.0", _newest(10), _newest(11)))
    for names in (v8, v10, v10_new, v11):
        assert set(ALWAYS) <= names, sorted(set(ALWAYS) - names)
    # removed in 10.0: binding-index API, implicit-batch execution, build_engine, max_workspace_size
    for gone in ("get_binding_shape", "num_bindings", "execute_async_v2", "build_engine", "max_workspace_size"):
        assert gone in v8 and gone not in v10 and gone not in v10_new and gone not in v11, gone
    # added in 10.0: strongly typed networks, bf16
    assert "STRONGLY_TYPED" not in v8 and {"STRONGLY_TYPED", "BF16"} <= v10 & v11
    # removed in 11.0: implicit int8 calibration, weak-typing precision flags, EXPLICIT_BATCH, fast-precision queries
    for gone in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "int8_calibrator", "FP16", "EXPLICIT_BATCH",
                 "platform_has_fast_int8", "platform_has_fast_fp16"):
        assert gone in v8 and gone in v10 and gone in v10_new and gone not in v11, gone
    assert "FP4" in v10_new and "FP4" in v11 and "FP4" not in v10  # FP4 data type arrived after 10.3


def _trt_names_module():
    spec = importlib.util.spec_from_file_location("trt_names", REPO / "tools" / "trt_names.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which("cc") is None,
                    reason="needs an x86-64 C compiler")
def test_so_names_reads_referenced_and_tail_merged_strings(tmp_path: Path) -> None:
    trt_names = _trt_names_module()
    src = tmp_path / "m.c"
    src.write_text('const char *volatile sink[4];\n'
                   'void f(void) { sink[0] = "IBuilder"; sink[1] = "Builder"; sink[2] = "execute_async_v3";'
                   ' sink[3] = "not an identifier"; }\n')
    so = tmp_path / "m.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(so), str(src)], check=True, capture_output=True)
    data = so.read_bytes()
    assert b"\0Builder\0" not in data  # the linker kept "Builder" only as the tail of "IBuilder"
    names = trt_names.so_names(data)
    assert {"IBuilder", "Builder", "execute_async_v3"} <= names and "not an identifier" not in names


def test_init_names_reads_module_level_names() -> None:
    trt_names = _trt_names_module()
    src = ("import os\nfrom .tensorrt import *\n__version__ = '1'\n_private = 1\n"
           "def volume(it):\n    vol = 1\n    return vol\n"
           "DataType.itemsize = property(lambda this: 1)\n"
           "if True:\n    def nptype(t):\n        return t\n")
    assert trt_names.init_names(src) == {"volume", "itemsize", "nptype"}
