"""Engines: build decisions (precision per device and TensorRT version, optimization profiles),
sidecars and their checks, ONNX Runtime engines built and run for real, and the TensorRT adapter
checked without TensorRT: its names against NVIDIA's bindings wheels of each version, its types
with mypy against NVIDIA's stubs. Faked here: only a GPU and the TensorRT runtime (the sidecar
checks take the hardware description as data)."""
from __future__ import annotations

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
from edgefuse.backends.ort.build import saved_threads
from edgefuse.backends.plan import optimization_profiles, parse_shapes, plan_precision, trt_major
from edgefuse.backends.sidecar import Sidecar, check_compatible, read_sidecar, sidecar_path
from edgefuse.devices import get_device
from edgefuse.cli.render import render_threads
from edgefuse.errors import EdgefuseError

HERE = Path(__file__).parent

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
    p86 = plan_precision("auto", "int8", orin, "8.6.2")  # FP16 allowed too: Orin is fast in FP16
    assert p86.flags == ("INT8", "FP16") and p86.network_flags == ("EXPLICIT_BATCH",)
    assert plan_precision("fp16", "fp32", orin, "10.3.0").flags == ("FP16",)
    assert plan_precision("auto", "fp16", orin, "10.3.0").network_flags == ("STRONGLY_TYPED",)
    p11 = plan_precision("auto", "int8", orin, "11.4.1")
    assert p11.flags == () and p11.network_flags == ()
    with pytest.raises(EdgefuseError, match="strongly typed"):
        plan_precision("fp16", "fp32", orin, "11.4.1")
    with pytest.raises(EdgefuseError, match="not supported"):
        trt_major("9.3.0")
    assert trt_major("8.2.1") == "8.2.1"  # 8.0 - 8.6, 10.x and 11.x: tests/test_trt_versions.py


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

class _Zoo(dict):  # type: ignore[type-arg]
    """Zoo models exported (FP32) and calibrated to INT8, each made the first time a test asks for it."""

    def __init__(self, tmp: Path, synth: Path) -> None:
        super().__init__()
        self.tmp, self.synth = tmp, synth

    def __missing__(self, name: str) -> dict[str, Path]:
        from edgefuse.export.api import export
        from edgefuse.export.config import make_config
        from edgefuse.quantize import CalibrateConfig, calibrate

        fp32 = export(make_config(None, self.tmp / f"{name}.onnx", model=name)).path
        int8 = calibrate(CalibrateConfig(
            model=fp32, clips=self.synth / "calib.txt", output=self.tmp / f"{name}.int8.onnx", num_clips=16,
            holdout=self.synth / "val.txt", num_holdout=8, cache_dir=self.tmp / "cache", progress=False)).path
        self[name] = {"fp32": fp32, "int8": int8}
        return self[name]

    def every(self) -> dict[str, dict[str, Path]]:
        from edgefuse.models import list_pretrained

        return {e.name: self[e.name] for e in list_pretrained()}


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory, synth_default) -> _Zoo:  # type: ignore[no-untyped-def]
    return _Zoo(tmp_path_factory.mktemp("engines"), synth_default)


def _clips(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 8, 3, 112, 112)).astype(np.float32)


@pytest.mark.slow
def test_cpu_engines_for_every_zoo_model_run_like_their_graphs(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = _clips()
    for name, graphs in zoo_onnx.every().items():
        for precision, graph in graphs.items():
            result = build_engine(BuildConfig(graph, tmp_path / f"{name}.{precision}.engine", device="cpu",
                                                  backend="onnxruntime"))
            side = read_sidecar(result.path)
            assert side.backend == "onnxruntime" and side.precision == precision and side.device == "cpu"
            assert side.metadata["model"] and side.profiles["clips"][1] == [1, 8, 3, 112, 112]
            engine = load(result.path)
            reference = load(graph).run(x)
            got = engine.run(x)
            assert got.shape == (3, 10)
            if precision == "fp32":
                np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
            else:  # the CPU rewrite: the calibrated grid, plus the residual convolutions on their own grids
                assert np.abs(got - reference).max() < 0.05 * np.abs(reference).max(), name
                assert (got.argmax(1) == reference.argmax(1)).all(), name


@pytest.mark.slow  # builds three engines (~15 s)
def test_cpu_engine_threads_default_to_onnx_runtime_pinned_pool_explicit_count_kept(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No --threads: the session leaves the count to ONNX Runtime (0: one per physical core, pinned);
    --threads N is kept in the sidecar and used when the engine loads."""
    graph = zoo_onnx["synth_tsn_r18w025"]["fp32"]
    default = build_engine(BuildConfig(graph, tmp_path / "default.engine", device="cpu", backend="onnxruntime")).path
    one = build_engine(BuildConfig(graph, tmp_path / "one.engine", device="cpu", backend="onnxruntime",
                                   threads=1)).path
    assert read_sidecar(default).settings["intra_op_num_threads"] is None  # typed: null is ONNX Runtime's default
    assert "pinned" in render_threads(read_sidecar(default).settings["intra_op_num_threads"])  # as the CLI says it
    assert read_sidecar(one).settings["intra_op_num_threads"] == 1
    assert load(default).session.get_session_options().intra_op_num_threads == 0  # type: ignore[attr-defined]
    assert load(one).session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert load(default, threads=1).session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]


def test_sidecar_thread_count_is_typed_and_old_sentences_still_read() -> None:
    assert saved_threads({"intra_op_num_threads": None}) is None and saved_threads({}) is None
    assert saved_threads({"intra_op_num_threads": 4}) == 4
    old = "ONNX Runtime's default: one per physical core, pinned"  # what sidecars stored before the field was typed
    assert saved_threads({"intra_op_num_threads": old}) is None
    assert render_threads(None) == old and render_threads(4) == "4" and render_threads(old) == old


@pytest.mark.slow  # waits on thread states (~13 s)
def test_sessions_stop_spinning_after_each_run(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every edgefuse session stops its threads spinning when a run ends (ONNX Runtime's default keeps
    them spinning, which slowed another session of the process 1.5-2.5x); outputs do not change."""
    from edgefuse.graph.ort import session_options

    graph = zoo_onnx["synth_tsm_r18w025"]["int8"]
    engine = build_engine(BuildConfig(graph, tmp_path / "tsm.int8.engine", device="cpu", backend="onnxruntime")).path
    a, b = load(engine), load(engine)
    for runner in (a, b):
        opts = runner.session.get_session_options()  # type: ignore[attr-defined]
        assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
    assert session_options(stop_spinning=False).get_session_config_entry("session.force_spinning_stop") == "0"
    x = _clips(2)
    np.testing.assert_array_equal(a.run(x), b.run(x))


def _activation_dqs(graph: onnx.ModelProto) -> list[tuple[str, float]]:
    """(output, scale) of every activation DequantizeLinear (per-tensor scale, non-constant input)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    return [(n.output[0], float(inits[n.input[1]])) for n in graph.graph.node if n.op_type == "DequantizeLinear"
            and n.input[0] not in inits and inits[n.input[1]].size == 1]


@pytest.mark.parametrize("name", ["synth_tsm_r18w025", pytest.param("synth_gsf_r18w025", marks=pytest.mark.slow)])
def test_cpu_int8_rewrite_keeps_every_quantized_tensor_within_one_step(zoo_onnx, name) -> None:  # type: ignore[no-untyped-def]
    """The exact rewrite (uint8 zero point 128; QuantizeLinear moved after each convolution through
    Relu as a uint8 Clip, max pooling and the temporal shift; DequantizeLinear -> QuantizeLinear on
    one grid cancelled) computes the same values: run without ONNX Runtime's fusions, every
    activation the Q/DQ graph quantizes is bit-identical. With the fusions (the engine's integer
    convolutions round their accumulator once where the float path rounds twice) each quantized
    tensor whose inputs are still identical stays within one quantization step, and with the
    residual convolutions quantized too (auto) the top-1 class does not change."""
    from edgefuse.backends.ort.int8 import cpu_int8_graph
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.runner import OrtRunner

    x = _clips(2)
    graph = onnx.load(str(zoo_onnx[name]["int8"]))
    exact = cpu_int8_graph(graph)
    zps = [onnx.numpy_helper.to_array(i) for i in exact.graph.initializer if i.name.endswith("_zero_point_u8")]
    assert zps and all(z.dtype == np.uint8 and (z == 128).all() for z in zps)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in {i.name for i in exact.graph.initializer}
                   for n in exact.graph.node)  # weights pre-quantized
    produced = {o for n in exact.graph.node for o in n.output}
    watched = [(t, s) for t, s in _activation_dqs(graph) if t in produced]
    assert len(watched) >= 0.8 * len(_activation_dqs(graph)), name
    names = [t for t, _ in watched]
    a = OrtRunner(graph, extra_outputs=names, optimize=False).run_logits_and(x, names)
    b = OrtRunner(exact, extra_outputs=names, optimize=False).run_logits_and(x, names)
    for t, _ in watched:
        np.testing.assert_array_equal(a.tensors[t], b.tensors[t], err_msg=f"{name} {t}")
    np.testing.assert_array_equal(a.logits, b.logits)
    # the integer kernels: the first convolution's quantized output (same input in both) within one step
    first_conv = next(n for n in graph.graph.node if n.op_type == "Conv")
    after = next(t for t, _ in watched if t.startswith(first_conv.output[0].rsplit("/", 2)[0]))
    fused = OrtRunner(exact, extra_outputs=[after]).run_logits_and(x, [after])
    step = dict(watched)[after]
    assert np.abs(fused.tensors[after] - a.tensors[after]).max() <= step * 1.0001, name
    ranges = read_metadata(graph)["cpu_int8_ranges"]
    fast = OrtRunner(cpu_int8_graph(graph, ranges)).run(x)
    assert (fast.argmax(1) == a.logits.argmax(1)).all(), name


def test_cpu_int8_engine_runs_every_convolution_in_integers(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What makes the CPU engine fast, checked on the engine ONNX Runtime saved: every convolution is
    a QLinearConv (none falls back to FP32), the shift runs without layout Transposes around its
    Reshapes (none left), and residual Adds run as QLinearAdd. Without the calibrated residual grids
    (--cpu-int8 exact) the convolutions feeding the Adds stay FP32: that is the price of exactness."""
    graph = zoo_onnx["synth_tsm_r18w025"]["int8"]
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(graph)).graph.node)
    ops = {}
    for mode in ("auto", "exact"):
        engine = build_engine(BuildConfig(graph, tmp_path / f"{mode}.engine", device="cpu", cpu_int8=mode,
                                              backend="onnxruntime")).path
        kinds = [n.op_type for n in onnx.load(str(engine)).graph.node]
        ops[mode] = {k: kinds.count(k) for k in set(kinds)}
    auto, exact = ops["auto"], ops["exact"]
    assert auto.get("QLinearConv") == convs and not auto.get("Conv") and not auto.get("FusedConv"), auto
    assert auto.get("QLinearAdd") == 7, auto  # 8 blocks: the last Add feeds the FP32 head
    assert auto.get("Reshape") == 2 and auto.get("Transpose", 0) <= 3, auto  # clips <-> frames only; no shift Reshape
    assert exact.get("QLinearConv", 0) + exact.get("FusedConv", 0) + exact.get("Conv", 0) == convs, exact
    assert exact.get("FusedConv", 0) + exact.get("Conv", 0) == 11, exact  # 8 residual + 3 downsample convolutions


def test_cpu_int8_engine_agrees_with_fp32_on_val_clips(zoo_onnx, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The issue's accuracy bar on the trained zoo TSM: the INT8 CPU engine agrees with FP32 on
    >= 98% of 64 val clips."""
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.graph.metadata import read_metadata

    graphs = zoo_onnx["synth_tsm_r18w025"]
    meta = read_metadata(graphs["fp32"])
    clips = open_clips(synth_default / "val.txt", Preprocess.from_metadata(meta), Sampling(num_segments=8),
                       num_clips=64, progress=False).stack()[0].numpy()
    engine = build_engine(BuildConfig(graphs["int8"], tmp_path / "m.engine", device="cpu", backend="onnxruntime")).path
    ref, got = load(graphs["fp32"]).run(clips), load(engine).run(clips)
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.98


def test_unit_batch_dropped_around_the_shift_changes_no_value(zoo_onnx) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.backends.ort.layout import drop_unit_batch
    from edgefuse.graph.runner import OrtRunner

    graph = onnx.load(str(zoo_onnx["synth_tsm_r18w025"]["fp32"]))
    dropped = drop_unit_batch(graph)
    reshapes = [n for n in graph.graph.node if n.op_type == "Reshape"]
    assert len(reshapes) - sum(n.op_type == "Reshape" for n in dropped.graph.node) == 16  # 2 per shift, 8 shifts
    x = _clips(1)
    np.testing.assert_allclose(OrtRunner(dropped).run(x), OrtRunner(graph).run(x), rtol=0, atol=1e-6)


def test_calibration_ties_the_shift_to_its_input_grid(zoo_onnx) -> None:  # type: ignore[no-untyped-def]
    """The shift only moves values: its output is quantized on its input's grid, so the CPU engine
    (and TensorRT) move integers instead of requantizing; the CPU rewrite then leaves no
    DequantizeLinear -> QuantizeLinear pair."""
    from edgefuse.backends.ort.int8 import cpu_int8_graph

    graph = onnx.load(str(zoo_onnx["synth_tsm_r18w025"]["int8"]))
    producer = {o: n for n in graph.graph.node for o in n.output}
    scales = dict(_activation_dqs(graph))
    dq_of = {n.input[0]: n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    q_of = {n.input[0]: n.output[0] for n in graph.graph.node if n.op_type == "QuantizeLinear"}
    tied = 0
    for n in graph.graph.node:
        if n.op_type == "Reshape" and n.name.endswith("shift/Reshape_1"):
            source = n
            while source.op_type in ("Reshape", "Slice", "Concat"):
                source = producer[next(i for i in source.input if i in producer and producer[i].op_type != "Constant")]
            own = scales[dq_of[q_of[n.output[0]]]]
            assert own == (scales[source.output[0]] if source.op_type == "DequantizeLinear"
                           else scales[dq_of[q_of[source.output[0]]]]), n.name
            tied += 1
    assert tied == 8
    fast = cpu_int8_graph(graph)
    producer = {o: n for n in fast.graph.node for o in n.output}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in producer
                   and producer[n.input[0]].op_type == "DequantizeLinear" for n in fast.graph.node)


def test_bad_engines_devices_and_precisions_fail_with_one_line(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli import cli

    graphs = zoo_onnx["synth_tsm_r18w025"]
    engine = build_engine(BuildConfig(graphs["fp32"], tmp_path / "m.engine", device="cpu", backend="onnxruntime")).path
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


@pytest.mark.slow  # .ci/run type-checks all of edgefuse against the same stubs; this adds the probe that they bite
def test_adapter_type_checks_against_nvidia_stubs(tmp_path: Path) -> None:
    """mypy with the tensorrt-stubs package (installed with --no-deps: it requires the real TensorRT),
    made readable by tools/trt_stubs.py, over every module of edgefuse/backends/trt/ (the name check of
    each function against each TensorRT version it serves is in tests/test_trt_versions.py)."""
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
    modules = [str(p) for p in sorted(ADAPTER.parent.glob("*.py"))]
    assert str(ADAPTER) in modules and len(modules) > 2
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(cfg), *modules], check=False, env=env,
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


# --- OpenVINO, the optional second CPU backend (installed with the test extra) --------------------

def test_openvino_engines_build_load_and_match_onnx_runtime(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("openvino", reason="OpenVINO is optional: pip install 'edgefuse[openvino]'")
    graphs = zoo_onnx["synth_tsm_r18w025"]
    x = _clips(2)
    reference = load(graphs["fp32"]).run(x)
    fp32 = build_engine(BuildConfig(graphs["fp32"], tmp_path / "ov.engine", device="cpu", backend="openvino"))
    side = read_sidecar(fp32.path)
    assert side.backend == "openvino" and side.precision == "fp32"
    assert side.settings["INFERENCE_PRECISION_HINT"] == "f32"  # pinned: OpenVINO would pick bf16 on such CPUs
    runner = load(fp32.path)
    assert runner.backend == "openvino"
    np.testing.assert_allclose(runner.run(x), reference, rtol=1e-3, atol=1e-3)
    int8 = build_engine(BuildConfig(graphs["int8"], tmp_path / "ov8.engine", device="cpu", backend="openvino"))
    assert read_sidecar(int8.path).precision == "int8"
    got = load(int8.path).run(x)
    assert (got.argmax(1) == reference.argmax(1)).all()
    bf16 = build_engine(BuildConfig(graphs["fp32"], tmp_path / "bf.engine", device="cpu", backend="openvino",
                                    precision="bf16"))
    assert read_sidecar(bf16.path).settings["INFERENCE_PRECISION_HINT"] == "bf16"
    assert np.abs(load(bf16.path).run(x) - reference).max() < 0.1 * np.abs(reference).max()
    with pytest.raises(EdgefuseError, match="bf16.*FP32 graph"):
        build_engine(BuildConfig(graphs["int8"], tmp_path / "x.engine", device="cpu", backend="openvino",
                                 precision="bf16"))


def test_openvino_backend_errors_are_one_line(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli import cli

    graph = zoo_onnx["synth_tsm_r18w025"]["fp32"]
    res = CliRunner().invoke(cli, ["build-engine", str(graph), "--device", "jetson_agx_orin", "--backend", "openvino",
                                   "-o", str(tmp_path / "m.engine")])
    assert res.exit_code == 1 and "--backend openvino builds for the CPU" in res.output
    assert len(res.output.strip().splitlines()) == 1
    if not _has_openvino():
        res = CliRunner().invoke(cli, ["build-engine", str(graph), "--device", "cpu", "--backend", "openvino",
                                       "-o", str(tmp_path / "m.engine")])
        assert res.exit_code == 1 and "pip install 'edgefuse[openvino]'" in res.output


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


# --- --backend auto: the CPU backend chosen by timing both on this machine ------------------------

def test_decide_keeps_onnx_runtime_unless_openvino_is_clearly_faster() -> None:
    from edgefuse.backends.choose import MARGIN, decide, timing_input

    ort_ms = [10.0, 10.2, 9.8]
    assert decide({"onnxruntime": ort_ms, "openvino": [9.5] * 3}).backend == "onnxruntime"  # within the margin
    won = decide({"onnxruntime": ort_ms, "openvino": [10 * (1 - MARGIN) - 0.01] * 3})
    assert won.backend == "openvino" and won.median_ms == {"onnxruntime": 10.0, "openvino": 8.99}
    assert decide({"onnxruntime": ort_ms, "openvino": [30.0]}).backend == "onnxruntime"
    shape = [[1, 8, 3, 112, 112]] * 3
    assert timing_input({"clips": shape}, {}).shape == (1, 8, 3, 112, 112)
    assert timing_input({"clips": shape}, {"stream_states": [{"name": "s"}]}) is None  # OpenVINO's runner: no states
    assert timing_input({"clips": shape, "state": [[1, 4]] * 3}, {}) is None


def test_backend_auto_times_both_and_keeps_the_faster(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The default on the CPU: both engines built, timed on this machine, the faster kept (OpenVINO
    only 10 % faster or more); the sidecar records the timings, no loser or temporary file stays."""
    pytest.importorskip("openvino", reason="OpenVINO is optional: pip install 'edgefuse[openvino]'")
    from edgefuse.cli import cli

    graphs = zoo_onnx["synth_tsm_r18w025"]
    x = _clips(2)
    for precision in ("fp32", "int8"):
        out = tmp_path / f"auto.{precision}.engine"
        res = CliRunner().invoke(cli, ["build-engine", str(graphs[precision]), "--device", "cpu", "-o", str(out)])
        assert res.exit_code == 0, res.output
        side = read_sidecar(out)
        choice = side.settings["backend_choice"]
        med = choice["median_ms"]
        assert set(med) == {"onnxruntime", "openvino"} and min(med.values()) > 0 and min(choice["runs"].values()) >= 9
        expected = "openvino" if med["openvino"] <= 0.9 * med["onnxruntime"] else "onnxruntime"
        assert choice["chosen"] == side.backend == expected and f"backend: {choice['reason']}" in res.output
        runner = load(out)
        assert runner.backend == expected
        assert (runner.run(x).argmax(1) == load(graphs["fp32"]).run(x).argmax(1)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.fp32.engine", "auto.fp32.engine.json",
                                                          "auto.int8.engine", "auto.int8.engine.json"]
    bf16 = build_engine(BuildConfig(graphs["fp32"], tmp_path / "bf.engine", device="cpu", precision="bf16"))
    assert bf16.sidecar.backend == "openvino" and bf16.sidecar.precision == "bf16"  # only OpenVINO has bf16
    with pytest.raises(EdgefuseError, match="bf16 is OpenVINO's"):
        build_engine(BuildConfig(graphs["fp32"], tmp_path / "x.engine", device="cpu", precision="bf16",
                                 backend="onnxruntime"))


def test_backend_auto_without_openvino_builds_onnx_runtime_and_says_why(zoo_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OpenVINO absent (hidden from the import system in a subprocess: the package is installed here)."""
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from pathlib import Path\nfrom edgefuse.backends import BuildConfig, build_engine\n"
            f"r = build_engine(BuildConfig(Path({str(zoo_onnx['synth_tsm_r18w025']['fp32'])!r}), "
            f"Path({str(tmp_path / 'm.engine')!r}), device='cpu'))\n"
            "c = r.sidecar.settings['backend_choice']\n"
            "assert r.sidecar.backend == 'onnxruntime' and 'not installed' in c['reason'] and not c['median_ms'], c\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_u8s8_kernels_are_used_only_where_they_are_exact() -> None:
    """x86 without VNNI/AMX saturates u8 x s8 pair sums in 16 bits (measured: 94 steps off on an AVX2 EPYC), so
    the CPU engine takes uint8 weights there; VNNI, AMX and Arm keep int8 weights."""
    from edgefuse.backends.ort.int8 import exact_u8s8

    assert not exact_u8s8(["avx", "avx2", "fma"], "x86_64")
    assert not exact_u8s8(["avx2", "avx512f", "avx512bw"], "x86_64")  # AVX-512 without VNNI: vpmaddubsw too
    assert exact_u8s8(["avx2", "avx512f", "avx512_vnni"], "x86_64")
    assert exact_u8s8(["avx2", "avx_vnni"], "x86_64") and exact_u8s8(["amx_int8"], "x86_64")
    assert exact_u8s8([], "aarch64")


def test_uint8_weights_hold_the_same_values_and_run_exactly(tmp_path: Path) -> None:
    """A Q/DQ convolution with extreme int8 weights and uint8 inputs: as uint8 weights (zero point 128) the
    dequantized weights are identical, and ONNX Runtime's fused integer convolution stays within one output step
    of the unfused float path on this CPU, whatever its ISA."""
    from onnx import TensorProto, helper, numpy_helper

    from edgefuse.backends.ort.int8 import weights_to_uint8
    from edgefuse.graph.ort import ort_session

    rng = np.random.default_rng(0)
    c = 64
    w = rng.integers(-127, 128, size=(c, c, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "wq"), numpy_helper.from_array(np.full(c, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(c, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.05, np.float32), "xs"), numpy_helper.from_array(np.array(128, np.uint8), "xz"),
             numpy_helper.from_array(np.array(0.5, np.float32), "ys"), numpy_helper.from_array(np.array(128, np.uint8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 14, 14])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, c, 14, 14])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    u8 = weights_to_uint8(model)
    consts = {i.name: numpy_helper.to_array(i) for i in u8.graph.initializer}
    dq = next(n for n in u8.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts)
    assert consts[dq.input[0]].dtype == np.uint8 and (consts[dq.input[2]] == 128).all()
    np.testing.assert_array_equal(consts[dq.input[0]].astype(np.int16) - 128, w)
    x = (rng.random((1, c, 14, 14)) * 12.7 - 6.35).astype(np.float32)
    plain = ort_session(u8, optimize=False).run(None, {"x": x})[0]
    fused = ort_session(u8, optimize=True).run(None, {"x": x})[0]
    assert np.abs(plain - fused).max() <= 0.5 * 1.0001
