"""The estimate's fitted constants and its published points: the fit reproduces fitted.toml from published.toml and
the recorded kernel tables, docs/estimates.md shows that fit's errors, published.toml's fallback figures agree with
the profiles, every profile gets an estimate (or one clear error) for a mixed-precision graph, on the GPU and on its
DLA, and the CLI prints the uncertainty. Fast: small graphs and the recorded ResNet tables (no ResNet-50 export; the
tables are rebuilt by the slow case)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from edgefuse.devices import get_device, list_devices
from edgefuse.errors import EdgefuseError
from edgefuse.estimate import estimate, fit
from edgefuse.estimate.device import CLASSES, FIELDS, figures_for_profile, published
from edgefuse.estimate.kernels import Kernel
from edgefuse.estimate.model import ClassConstants, load_fitted, predict_ms

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "estimate_fit.json"
DOC = ROOT / "docs" / "estimates.md"


@pytest.fixture(scope="module")
def tables() -> dict:
    return json.loads(RESULTS.read_text())["kernel_tables"]


@pytest.fixture(scope="module")
def result(tables):
    return fit.fit(fit.load_points(), tables)


def mixed_graph() -> onnx.ModelProto:
    """X (1, 3, 16, 16) -> Q/DQ -> INT8 Conv -> Relu -> Cast fp16 -> FP16 Conv -> Cast fp32 -> GlobalAveragePool ->
    Flatten -> FP32 Gemm (10 classes): all three precisions in one graph, as a default INT8 graph with an FP32
    classifier and an FP16 block."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.int8(0), "xz"),
             numpy_helper.from_array(rng.integers(-127, 127, (8, 3, 3, 3)).astype(np.int8), "Wq"),
             numpy_helper.from_array(np.full(8, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float16), "W16"),
             numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "Wfc"),
             numpy_helper.from_array(np.zeros(10, np.float32), "Bfc")]
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "xs", "xz"], ["Xq"], name="q"),
        helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"], name="wdq", axis=0),
        helper.make_node("Conv", ["Xd", "Wd"], ["C1"], name="conv_int8", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["C1"], ["R1"], name="relu"),
        helper.make_node("Cast", ["R1"], ["R16"], name="to_fp16", to=T.FLOAT16),
        helper.make_node("Conv", ["R16", "W16"], ["C2"], name="conv_fp16", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["C2"], ["C32"], name="to_fp32", to=T.FLOAT),
        helper.make_node("GlobalAveragePool", ["C32"], ["P"], name="gap"),
        helper.make_node("Flatten", ["P"], ["F"], name="flatten"),
        helper.make_node("Gemm", ["F", "Wfc", "Bfc"], ["Y"], name="fc", transB=1),
    ]
    m = helper.make_model(helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("X", T.FLOAT, [1, 3, 16, 16])],
                                            [helper.make_tensor_value_info("Y", T.FLOAT, [1, 10])], inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


# ------------------------------------------------------------------------------------------- the fit


def test_fit_reproduces_the_recorded_constants(result) -> None:
    assert fit.compare_constants(result.constants, load_fitted().constants) == []
    assert set(result.constants) == set(CLASSES)


def test_docs_show_the_fit_and_the_held_out_errors(result) -> None:
    """docs/estimates.md carries the tables of this very fit (so its held-out errors are the fit's), and the
    recorded results file the same errors."""
    assert fit.markdown_table(result) in DOC.read_text()
    recorded = json.loads(RESULTS.read_text())
    assert [(p["device"], p["graph"], p["batch"], p["target"], p["error_pct"]) for p in recorded["points"]] == \
        [(e.point.device, e.point.graph, e.point.batch, e.point.target, round(e.error_pct, 2)) for e in result.evaluated]


def test_held_out_points_are_not_fitted_and_their_errors_are_the_uncertainty(result) -> None:
    points = fit.load_points()
    assert sum(p.held_out for p in points) >= 10 and sum(not p.held_out for p in points) >= 20
    for cls, k in result.constants.items():
        held = [abs(e.error_pct) for e in result.evaluated
                if e.device_class == cls and e.point.held_out and e.point.target == "gpu"]
        if k.borrowed_from:
            assert k.heldout_max_abs_pct is None and k.fitted_on == 0
        else:
            assert held and k.heldout_max_abs_pct == pytest.approx(max(held), abs=0.06), cls
    # refitting with a held-out point changed does not change the constants: it is not fitted on
    moved = [dataclasses.replace(p, latency_ms=p.latency_ms * 3) if p.held_out else p for p in points]
    tables = json.loads(RESULTS.read_text())["kernel_tables"]
    again = fit.fit(moved, tables)
    assert all(again.constants[c].overhead_kcycles == k.overhead_kcycles and again.constants[c].eta_compute ==
               k.eta_compute for c, k in result.constants.items())


def test_resnet50_batch1_within_30_percent_on_every_profiled_device(result) -> None:
    """The goal: every device with a profile and a published ResNet-50 batch-1 latency, held-out ones included."""
    names = {d.name for d in list_devices()}
    checked = []
    for e in result.evaluated:
        if e.point.graph.startswith("resnet50/") and e.point.batch == 1 and e.point.device in names:
            checked.append(e.point.device)
            assert abs(e.error_pct) < 30, (e.point.device, e.point.graph, e.error_pct)
    assert {"jetson_agx_orin", "jetson_orin_nx", "jetson_agx_xavier", "jetson_xavier_nx", "jetson_nano", "a100",
            "rtx4090"} <= set(checked)


def test_published_points_cite_their_source() -> None:
    for p in fit.load_points():
        assert p.source and p.url.startswith("https://github.com/") and "/blob/" in p.url, p
        assert p.latency_ms > 0 and p.target in ("gpu", "dla") and p.harness in ("mlperf", "torch2trt")


def test_fallback_figures_agree_with_the_profiles() -> None:
    """published.toml's figures for a profiled device are the profile's (the constants were fitted with them)."""
    devices = published()["device"]
    for d in list_devices():
        entry = devices.get(d.name)
        if d.kind == "cpu" or entry is None:
            continue
        for key in FIELDS:
            mine, theirs = entry.get(key), getattr(d, key, None)
            if mine is not None and theirs is not None:
                assert math.isclose(mine, theirs, rel_tol=1e-6), (d.name, key, mine, theirs)


def test_recorded_kernel_tables_are_sane(tables) -> None:
    r50 = [Kernel.from_row(r) for r in tables["resnet50/int8"]]
    assert sum(k.macs for k in r50) == pytest.approx(4.1e9, rel=0.01)
    assert {k.precision for k in r50 if k.macs} == {"int8"}
    default = [Kernel.from_row(r) for r in tables["resnet50/int8_default"]]
    assert [k.precision for k in default if k.op == "Gemm"] == ["fp32"]  # the classifier stays FP32
    assert sum(k.act_bytes for k in r50) < sum(Kernel.from_row(r).act_bytes for r in tables["resnet50/fp16"])


def test_timing_model_by_hand() -> None:
    """One kernel: max(compute, DRAM) + overhead, with the L2 credit and the clock scaling."""
    figures = figures_for_profile(dataclasses.replace(get_device("jetson_agx_orin"), name="x", gpu_int8_tops=0.004))
    figures = dataclasses.replace(figures, memory_bandwidth_gbs=1.0, l2_cache_mb=None, gpu_clock_ghz=2.0)
    consts = ClassConstants(eta_compute=0.5, eta_memory=2.0, overhead_kcycles=10.0, reference_clock_ghz=1.0)
    k = Kernel("c", "Conv", "int8", macs=1000, act_bytes=3000, weight_bytes=1000)
    # compute 2000 ops / (0.5 x 4 GOP/s) = 1 us; memory 4000 B / (2 x 1 GB/s) = 2 us; overhead 10 kcycles / 2 GHz = 5 us
    assert predict_ms([k], figures, consts) == pytest.approx(7e-3)
    assert predict_ms([k], dataclasses.replace(figures, gpu_clock_ghz=None), consts) == pytest.approx(12e-3)
    cached = dataclasses.replace(figures, l2_cache_mb=0.004)  # half of 4 kB holds 2000 B of activations + weights
    assert predict_ms([k], cached, consts) == pytest.approx(6e-3)  # 1000 B from DRAM: 0.5 us < 1 us of compute
    assert predict_ms([k.scaled(2)], figures, consts) == pytest.approx((3.5 + 5) * 1e-3)  # 7000 B -> 3.5 us


# ------------------------------------------------------------------------------------------- every profile


def test_every_profile_estimates_a_mixed_precision_graph() -> None:
    m = mixed_graph()
    for d in list_devices():
        if d.kind == "cpu":
            continue
        est = estimate(m, {}, d)
        precisions = {lay.precision for lay in est.kernels if lay.macs}
        assert est.total_ms > 0 and precisions == {"int8", "fp16", "fp32"}, d.name
        assert est.device_class in CLASSES and est.uncertainty, d.name
        if est.uncertainty_pct is not None:
            lo, hi = est.range_ms or (0, 0)
            assert lo < est.total_ms < hi
        if d.dla_cores:
            dla = estimate(m, {}, d, target="dla")
            assert dla.total_ms > 0 and dla.target == "dla" and "DLA" in dla.uncertainty
        else:
            with pytest.raises(EdgefuseError, match="has no DLA"):
                estimate(m, {}, d, target="dla")


def test_a_profile_without_figures_gets_one_clear_error() -> None:
    m = mixed_graph()
    bare = {k: None for k in ("gpu_fp32_tflops", "gpu_fp16_tflops", "gpu_int8_tops", "fp16_tflops", "int8_tops")}
    for d in list_devices():
        if d.kind == "cpu":
            continue
        with pytest.raises(EdgefuseError) as e:
            estimate(m, {}, dataclasses.replace(d, name=f"{d.name}_new", **bare))
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{d.name}_new: no gpu_") and str(d.path) in msg


def test_jetson_int8_is_the_gpu_alone_and_fp32_classifier_costs_its_bytes() -> None:
    orin = get_device("jetson_agx_orin")
    est = estimate(mixed_graph(), {}, orin)
    assert est.peaks["int8_gops"] == pytest.approx(orin.gpu_int8_tops * 1e3)  # 85, not the module's 138
    nano = estimate(mixed_graph(), {}, get_device("jetson_nano"))
    assert nano.peaks["int8_gops"] == nano.peaks["fp16_gops"]  # no fast INT8: INT8 layers at the FP16 rate
    assert any("no fast INT8" in a for a in nano.assumptions)


def test_engine_precision_narrows_wider_layers() -> None:
    from tests.test_estimate import conv_relu

    orin = get_device("jetson_agx_orin")
    fp32 = estimate(conv_relu(), {}, orin)
    as_fp16 = estimate(conv_relu(), {}, orin, engine_precision="fp16")
    assert {k.precision for k in as_fp16.kernels} == {"fp16"} and as_fp16.bytes < fp32.bytes


# ------------------------------------------------------------------------------------------- CLI


def as_clip_graph(m: onnx.ModelProto) -> onnx.ModelProto:
    """``m`` behind the input every edgefuse command takes: clips (N, T, 3, H, W), here (1, 1, 3, 16, 16),
    reshaped to its image input X (1, 3, 16, 16)."""
    g = m.graph
    g.initializer.append(numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "x_shape"))
    g.node.insert(0, helper.make_node("Reshape", ["clips", "x_shape"], ["X"], name="clips_to_frames"))
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("clips", T.FLOAT, [1, 1, 3, 16, 16]))
    onnx.checker.check_model(m)
    return m


def test_bench_estimate_prints_the_uncertainty(tmp_path) -> None:
    from click.testing import CliRunner

    from edgefuse.cli import cli

    path = tmp_path / "mixed.onnx"
    onnx.save(as_clip_graph(mixed_graph()), str(path))
    runner = CliRunner()
    out = runner.invoke(cli, ["bench", str(path), "--device", "jetson_orin_nx", "--estimate"])
    assert out.exit_code == 0, out.output
    assert "estimated ms" in out.output and "held-out published point" in out.output
    dla = runner.invoke(cli, ["bench", str(path), "--device", "jetson_orin_nx", "--estimate", "--dla"])
    assert dla.exit_code == 0, dla.output
    assert "one DLA core" in dla.output and "DLA" in dla.output
    bad = runner.invoke(cli, ["bench", str(path), "--device", "jetson_orin_nx", "--dla"])
    assert bad.exit_code != 0 and "--dla goes with --estimate" in bad.output
    thor = runner.invoke(cli, ["bench", str(path), "--device", "jetson_thor", "--estimate"])
    assert thor.exit_code == 0 and "uncertainty unknown" in thor.output


@pytest.mark.slow
def test_recorded_kernel_tables_match_the_current_cost_model(tables) -> None:
    """Rebuild two graphs as benchmarks/estimate_fit.py does: the recorded tables are the cost model's."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import estimate_fit

    fresh = estimate_fit.kernel_tables(("resnet18", "mobilenet_v2"))
    for key, rows in fresh.items():
        assert rows == tables[key], key
