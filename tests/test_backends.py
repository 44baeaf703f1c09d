"""Engines: build decisions (precision per device and TensorRT version, optimization profiles),
sidecars and their checks, ONNX Runtime engines built and run for real, and the TensorRT adapter
checked without TensorRT: its names against NVIDIA's bindings wheels of each version, its types
with mypy against NVIDIA's stubs. Faked here: only a GPU and the TensorRT runtime (the sidecar
checks take the hardware description as data)."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgefuse.backends import BuildConfig, build_engine, load
from edgefuse.backends.plan import optimization_profiles, parse_shapes, plan_precision, trt_major
from edgefuse.backends.sidecar import Sidecar, check_compatible, read_sidecar, sidecar_path
from edgefuse.devices import get_device
from edgefuse.errors import EdgefuseError

HERE = Path(__file__).parent
NAMES = HERE / "data" / "trt_names"
VERSIONS = {"8.6": "8.6.1", "10.3": "10.3.0", "10.16": "10.16.1.11", "11.4": "11.4.0.106"}


def trt_names(version: str) -> set[str]:
    lines = (NAMES / f"{version}.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# --- build decisions ----------------------------------------------------------------------------

def test_precision_plans_per_device_and_tensorrt_version() -> None:
    cpu, nano, orin = get_device("cpu"), get_device("jetson_nano"), get_device("jetson_agx_orin")
    assert plan_precision("auto", "fp32", cpu).precision == "fp32"
    assert plan_precision("auto", "int8", cpu).precision == "int8"
    fp16_cpu = plan_precision("fp16", "fp32", cpu)
    assert fp16_cpu.precision == "fp32" and "not fast" in fp16_cpu.notes[0]
    with pytest.raises(EdgefuseError, match="needs an INT8 .Q/DQ. graph"):
        plan_precision("int8", "fp32", cpu)
    with pytest.raises(EdgefuseError, match="jetson_nano|Maxwell"):
        plan_precision("auto", "int8", nano)
    with pytest.raises(EdgefuseError, match="graph is INT8"):
        plan_precision("fp32", "int8", orin)
    p86 = plan_precision("auto", "int8", orin, "8.6.2")
    assert p86.flags == ("INT8",) and p86.network_flags == ("EXPLICIT_BATCH",)
    assert plan_precision("fp16", "fp32", orin, "10.3.0").flags == ("FP16",)
    assert plan_precision("auto", "fp16", orin, "10.3.0").network_flags == ("STRONGLY_TYPED",)
    p11 = plan_precision("auto", "int8", orin, "11.4.1")
    assert p11.flags == () and p11.network_flags == ()
    with pytest.raises(EdgefuseError, match="strongly typed"):
        plan_precision("fp16", "fp32", orin, "11.4.1")
    with pytest.raises(EdgefuseError, match="not supported"):
        trt_major("9.3.0")


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "10.16.1", "11.4.1"])
def test_every_planned_flag_exists_in_that_tensorrt(version: str) -> None:
    key = {"8": "8.6", "10": "10.16" if version.startswith("10.16") else "10.3", "11": "11.4"}[version.split(".")[0]]
    names = trt_names(VERSIONS[key])
    orin = get_device("jetson_agx_orin")
    for requested, graph in [("auto", "fp32"), ("auto", "int8"), ("auto", "fp16"), ("fp16", "fp32")]:
        try:
            plan = plan_precision(requested, graph, orin, version)
        except EdgefuseError:
            assert version.startswith("11") and (requested, graph) == ("fp16", "fp32")
            continue
        for flag in plan.flags + plan.network_flags:
            assert flag in names, (version, flag)


def test_shapes_and_optimization_profiles() -> None:
    shapes = parse_shapes(["clips:1x8x3x112x112,2x8x3x112x112,4x16x3x160x160"])
    assert shapes["clips"][2] == [4, 16, 3, 160, 160]
    for bad in ["clips:1x8,2x8", "1x8x3,1x8x3,1x8x3", "clips:2x8,1x8,4x8", "clips:1x8,1x8x3,1x8"]:
        with pytest.raises(EdgefuseError, match="--shapes"):
            parse_shapes([bad])
    inputs = {"clips": ["N", "T", 3, "H", "W"]}
    ranges = {"N": [1, 1, 4], "T": [1, 8, 16], "H": [64, 112, 168], "W": [64, 112, 168]}
    prof = optimization_profiles(inputs, ranges, {})
    assert prof["clips"] == [[1, 1, 3, 64, 64], [1, 8, 3, 112, 112], [4, 16, 3, 168, 168]]
    assert optimization_profiles({"clips": [1, 8, 3, 112, 112]}, {}, {})["clips"] == [[1, 8, 3, 112, 112]] * 3
    with pytest.raises(EdgefuseError, match="no range"):
        optimization_profiles(inputs, {"N": [1, 1, 4]}, {})
    with pytest.raises(EdgefuseError, match="static"):
        optimization_profiles({"clips": [1, 8, 3, 112, 112]}, {}, {"clips": [[1, 8, 3, 112, 112], [2, 8, 3, 112, 112],
                                                                               [2, 8, 3, 112, 112]]})
    with pytest.raises(EdgefuseError, match="inputs are"):
        optimization_profiles(inputs, ranges, {"frames": [[1], [1], [1]]})


def _sidecar(**kw: object) -> Sidecar:
    base: dict[str, object] = dict(backend="tensorrt", backend_version="10.3.0", device="jetson_orin_nano",
                                   hardware={"name": "Orin", "compute_capability": "8.7"}, precision="int8",
                                   engine_sha256="0", source_onnx="m.onnx", source_onnx_sha256="0")
    base.update(kw)
    return Sidecar(**base)  # type: ignore[arg-type]


def test_engines_refuse_another_tensorrt_gpu_ort_or_cpu() -> None:
    """The TensorRT runtime and the GPU cannot exist here: their descriptions are passed as data."""
    side = _sidecar()
    check_compatible("m.engine", side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(EdgefuseError, match=r"built with TensorRT 10.3.0, this machine has TensorRT 8.6.2"):
        check_compatible("m.engine", side, "8.6.2", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(EdgefuseError, match=r"built for Orin \(sm 8.7\), this GPU is NVIDIA GeForce RTX 4090 \(sm 8.9\)"):
        check_compatible("m.engine", side, "10.3.0", {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})
    ort_side = _sidecar(backend="onnxruntime", backend_version="1.32.0", device="cpu",
                        hardware={"name": "AMD EPYC", "isa": ["avx2", "avx512_vnni"]})
    check_compatible("m.engine", ort_side, "1.32.1", {"name": "other", "isa": ["avx2", "avx512_vnni", "amx_int8"]})
    with pytest.raises(EdgefuseError, match="ONNX Runtime 1.32.0, this machine has 1.20.0"):
        check_compatible("m.engine", ort_side, "1.20.0", {"isa": ["avx2", "avx512_vnni"]})
    with pytest.raises(EdgefuseError, match="avx512_vnni"):
        check_compatible("m.engine", ort_side, "1.32.0", {"name": "old", "isa": ["avx2"]})


# --- ONNX Runtime engines, for real ------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory, synth_default) -> dict[str, dict[str, Path]]:  # type: ignore[no-untyped-def]
    """Every zoo model exported (FP32) and calibrated to INT8."""
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.quantize import CalibrateConfig, calibrate
    from edgefuse.zoo import list_zoo

    tmp = tmp_path_factory.mktemp("engines")
    out: dict[str, dict[str, Path]] = {}
    for e in list_zoo():
        fp32 = export(make_config(None, tmp / f"{e['name']}.onnx", model=e["name"])).path
        out[e["name"]] = {"fp32": fp32}
        out[e["name"]]["int8"] = calibrate(CalibrateConfig(
            model=fp32, clips=synth_default / "calib.txt", output=tmp / f"{e['name']}.int8.onnx", num_clips=16,
            holdout=synth_default / "val.txt", num_holdout=8, cache_dir=tmp / "cache", progress=False)).path
    return out


def _clips(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 8, 3, 112, 112)).astype(np.float32)


def test_cpu_engines_for_every_zoo_model_run_like_their_graphs(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = _clips()
    for name, graphs in zoo_onnx.items():
        for precision, graph in graphs.items():
            result = build_engine(BuildConfig(graph, tmp_path / f"{name}.{precision}.engine", device="cpu"))
            side = read_sidecar(result.path)
            assert side.backend == "onnxruntime" and side.precision == precision and side.device == "cpu"
            assert side.metadata["model"] and side.profiles["clips"][1] == [1, 8, 3, 112, 112]
            engine = load(result.path)
            reference = load(graph).run(x)
            got = engine.run(x)
            assert got.shape == (3, 10)
            if precision == "fp32":
                np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
            else:  # the u8 rewrite keeps the calibrated grid: equal to the Q/DQ graph up to rounding
                assert np.abs(got - reference).max() < 0.05, name


def test_cpu_int8_rewrite_equals_qdq_graph_within_one_step(zoo_onnx) -> None:  # type: ignore[no-untyped-def]
    """uint8 with zero point 128 is the int8 grid shifted: every dequantized activation equals the
    int8 graph's (observed on the first quantized tensor, where no earlier rounding differs)."""
    from edgefuse.backends.ort.int8 import activations_to_uint8, cpu_int8_graph
    from edgefuse.backends.ort.runner import OrtRunner
    from edgefuse.quantize import qdq

    graph = onnx.load(str(zoo_onnx["synth_tsm_r18w025"]["int8"]))
    u8 = cpu_int8_graph(graph)
    zps = [i for i in u8.graph.initializer if i.name.endswith("_zero_point_u8")]
    assert zps and all(onnx.numpy_helper.to_array(z).dtype == np.uint8 and (onnx.numpy_helper.to_array(z) == 128).all()
                       for z in zps)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in {i.name for i in u8.graph.initializer}
                   for n in u8.graph.node)  # weights pre-quantized
    scales = qdq.activation_scales(graph)
    u8_scales = qdq.activation_scales(u8)
    assert all(u8_scales[k] == v for k, v in scales.items())  # the same scales (plus the re-quantized Conv outputs)
    first_dq = next(n for n in graph.graph.node if n.op_type == "DequantizeLinear"
                    and n.input[0] not in {i.name for i in graph.graph.initializer})
    x = _clips(2)
    a = OrtRunner(graph, extra_outputs=[first_dq.output[0]]).run_logits_and(x, [first_dq.output[0]])
    u8_dq = next(n.output[0] for n in activations_to_uint8(graph).graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] == first_dq.input[0])
    b = OrtRunner(activations_to_uint8(graph), extra_outputs=[u8_dq]).run_logits_and(x, [u8_dq])
    np.testing.assert_array_equal(a.tensors[first_dq.output[0]], b.tensors[u8_dq])
    step = max(scales.values())
    assert np.abs(a.logits - OrtRunner(u8).run(x)).max() <= 4 * step


def test_bad_engines_devices_and_precisions_fail_with_one_line(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli import cli

    graphs = zoo_onnx["synth_tsm_r18w025"]
    engine = build_engine(BuildConfig(graphs["fp32"], tmp_path / "m.engine", device="cpu")).path
    runner = CliRunner()

    def fails(args: list[str], match: str) -> None:
        res = runner.invoke(cli, args)
        assert res.exit_code == 1 and res.output.count("\n") == 1 and res.output.startswith("error: "), res.output
        assert match in res.output, res.output

    fails(["build-engine", str(graphs["fp32"]), "--device", "jetson_nanoo", "-o", str(tmp_path / "x")], "unknown device")
    fails(["build-engine", str(graphs["int8"]), "--device", "jetson_nano", "-o", str(tmp_path / "x")], "int8")
    fails(["build-engine", str(graphs["fp32"]), "--device", "cpu", "--precision", "int8", "-o", str(tmp_path / "x")],
          "edgefuse calibrate")
    fails(["build-engine", str(graphs["fp32"]), "--device", "jetson_orin_nano", "--dla", "0", "-o",
           str(tmp_path / "x")], "DLA")
    fails(["build-engine", str(graphs["fp32"]), "--device", "rtx4090", "-o", str(tmp_path / "x")],
          "TensorRT's Python package is not installed")
    assert not (tmp_path / "x").exists()
    # a corrupt engine, a missing sidecar, a garbled sidecar, an engine from another ONNX Runtime
    data = engine.read_bytes()
    broken = tmp_path / "broken.engine"
    broken.write_bytes(data[: len(data) // 2])
    shutil.copy(sidecar_path(engine), sidecar_path(broken))
    with pytest.raises(EdgefuseError, match="corrupt or was replaced"):
        load(broken)
    lone = tmp_path / "lone.engine"
    lone.write_bytes(data)
    with pytest.raises(EdgefuseError, match="no sidecar"):
        load(lone)
    sidecar_path(lone).write_text("{not json")
    with pytest.raises(EdgefuseError, match="not a valid engine sidecar"):
        load(lone)
    foreign = json.loads(sidecar_path(engine).read_text())
    foreign["backend_version"] = "1.16.3"
    sidecar_path(lone).write_text(json.dumps(foreign))
    with pytest.raises(EdgefuseError, match="ONNX Runtime 1.16.3"):
        load(lone)
    foreign.update(backend="tensorrt", backend_version="10.3.0")
    sidecar_path(lone).write_text(json.dumps(foreign))
    with pytest.raises(EdgefuseError, match="TensorRT's Python package is not installed"):
        load(lone)


# --- the TensorRT adapter, without TensorRT ------------------------------------------------------

ADAPTER = HERE.parent / "edgefuse" / "backends" / "trt" / "adapter.py"
TRT_OBJECTS = {"trt", "builder", "network", "parser", "config", "profile", "layer", "error", "runtime", "cache", "tensor",
               "engine", "context"}
SELF_OBJECTS = {"engine", "context"}


def _chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """(root variable, attribute names) of an expression like ``parser.get_error(i).desc``."""
    names: list[str] = []
    cur = node
    while True:
        if isinstance(cur, ast.Attribute):
            names.append(cur.attr)
            cur = cur.value
        elif isinstance(cur, ast.Call):
            cur = cur.func
        elif isinstance(cur, ast.Subscript):
            cur = cur.value
        else:
            break
    names.reverse()
    root = cur.id if isinstance(cur, ast.Name) else None
    if root == "self" and names and names[0] in SELF_OBJECTS:
        return "self." + names[0], names[1:]
    return root, names


def adapter_trt_names() -> dict[str, set[str]]:
    """TensorRT names the adapter uses, per function: attributes reached from TensorRT objects."""
    tree = ast.parse(ADAPTER.read_text())
    used: dict[str, set[str]] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        names: set[str] = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute):
                root, chain = _chain(node)
                if root in TRT_OBJECTS or (root or "").startswith("self."):
                    names |= set(chain)
        used[fn.name] = names - {"__version__"}
    return used


def test_adapter_uses_only_names_every_supported_tensorrt_exports() -> None:
    used = adapter_trt_names()
    assert {"build_serialized_network", "execute_async_v3", "set_tensor_address"} <= set().union(*used.values())
    assert "node_name" in used["_parser_errors_trt10plus"] and "device_memory_size" in used["_device_memory_trt86"]
    for fn, names in used.items():
        versions = (["10.3", "10.16", "11.4"] if fn.endswith("_trt10plus") else ["8.6"] if fn.endswith("_trt86")
                    else list(VERSIONS))
        for key in versions:
            missing = names - trt_names(VERSIONS[key])
            assert not missing, f"{fn} uses {sorted(missing)}, absent from TensorRT {VERSIONS[key]}"
    # the name lists do tell versions apart (a check against them can fail)
    assert "get_binding_shape" in trt_names("8.6.1") and "get_binding_shape" not in trt_names("10.3.0")
    assert "IInt8EntropyCalibrator2" in trt_names("10.16.1.11") and "IInt8EntropyCalibrator2" not in trt_names("11.4.0.106")


def test_adapter_type_checks_against_nvidia_stubs(tmp_path: Path) -> None:
    """mypy with the tensorrt-stubs package (installed with --no-deps: it requires the real TensorRT),
    made readable by tools/trt_stubs.py."""
    sys.path.insert(0, str(HERE.parent / "tools"))
    import trt_stubs

    stubs = trt_stubs.prepare(tmp_path / "stubs")
    cfg = tmp_path / "mypy.ini"
    cfg.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\ncache_dir = "
                   f"{tmp_path / 'cache'}\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n"
                   "[mypy-tensorrt.*]\nignore_errors = True\n")
    env = {**os.environ, "MYPYPATH": str(stubs)}
    bad = tmp_path / "probe.py"  # the stubs are really read: a removed API is caught
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tensorrt as trt\nelse:\n    trt = None\n"
                   "def f() -> None:\n    trt.Builder(trt.Logger()).build_engine(None, None)\n")
    probe = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(cfg), str(bad)], env=env,
                           capture_output=True, text=True)
    assert probe.returncode == 1 and "build_engine" in probe.stdout, probe.stdout
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(cfg), str(ADAPTER)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_and_help_work_without_tensorrt() -> None:
    code = ("import sys, edgefuse.cli, edgefuse.backends, edgefuse.backends.trt\n"
            "from click.testing import CliRunner\n"
            "r = CliRunner().invoke(edgefuse.cli.cli, ['--help'])\n"
            "assert r.exit_code == 0 and 'build-engine' in r.output, r.output\n"
            "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs an NVIDIA GPU with TensorRT: none exists here")
def test_tensorrt_engine_builds_and_matches_onnx_runtime(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    graph = zoo_onnx["synth_tsm_r18w025"]["int8"]
    engine = build_engine(BuildConfig(graph, tmp_path / "m.plan", device="auto")).path
    x = _clips(1)
    assert np.abs(load(engine).run(x) - load(graph).run(x)).max() < 0.1


def test_requantizing_before_relu_keeps_the_grid_within_one_step(zoo_onnx) -> None:  # type: ignore[no-untyped-def]
    """Conv -> Q -> DQ -> Relu -> Q on the Relu's own grid: ONNX Runtime then runs the Conv as an integer
    QLinearConv; each re-quantized activation stays within one quantization step of the Q/DQ graph's."""
    from edgefuse.backends.ort.int8 import cpu_int8_graph
    from edgefuse.backends.ort.runner import OrtRunner

    graph = onnx.load(str(zoo_onnx["synth_tsm_r18w025"]["int8"]))
    fast = cpu_int8_graph(graph)
    requant = [n for n in fast.graph.node if n.name.endswith("_requant_Q")]
    assert len(requant) == 8  # conv1 of every ResNet-18 block feeds Relu -> Q
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in fast.graph.initializer}
    producer = {o: n for n in graph.graph.node for o in n.output}
    consumers = {i: n for n in graph.graph.node for i in n.input}
    watched = []
    for q in requant:
        conv_out = q.input[0]
        relu = consumers[conv_out]  # in the Q/DQ graph, the Relu reads the Conv directly
        after_q = consumers[relu.output[0]]
        dq = consumers[after_q.output[0]]
        watched.append((dq.output[0], float(inits[q.input[1]])))
    assert producer  # the Q/DQ graph is the reference
    x = _clips(2)
    names = [w[0] for w in watched]
    a = OrtRunner(graph, extra_outputs=names).run_logits_and(x, names)
    b = OrtRunner(fast, extra_outputs=names).run_logits_and(x, names)
    for name, scale in watched:
        assert np.abs(a.tensors[name] - b.tensors[name]).max() <= scale * 1.001, name
