"""Roofline latency estimates: MACs and bytes per layer, precision of Q/DQ layers, the roofline arithmetic on a
profile with made-up figures, errors for missing figures, and the CPU peak measurement (no timing thresholds)."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from edgefuse.devices import get_device
from edgefuse.errors import EdgefuseError
from edgefuse.estimate import LABEL, compare_with_measurement, estimate, layer_costs, measure_cpu_peak
from edgefuse.graph.query import node_macs

US = 1e-3  # one microsecond in ms
CONV_MACS = 8 * 8 * 4 * (3 * 3 * 3 + 1)  # 256 outputs x (27 weights + bias) = 7168


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def conv_relu(dtype: np.dtype = np.float32, batch: int | str = 1) -> onnx.ModelProto:
    """X (batch, 3, 8, 8) -> Conv 3x3 pad 1, 4 channels, bias -> Relu -> Z."""
    t = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(dtype), "W")
    b = numpy_helper.from_array(np.zeros(4, dtype), "B")
    return _model(
        [helper.make_node("Conv", ["X", "W", "B"], ["Y"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["Y"], ["Z"], name="relu")],
        [helper.make_tensor_value_info("X", t, [batch, 3, 8, 8])], [helper.make_tensor_value_info("Z", t, [batch, 4, 8, 8])],
        [w, b])


def gemm() -> onnx.ModelProto:
    """X (2, 16) x W (8, 16)^T + C (8,) -> Y (2, 8)."""
    w = numpy_helper.from_array(np.ones((8, 16), np.float32), "W")
    c = numpy_helper.from_array(np.zeros(8, np.float32), "C")
    return _model([helper.make_node("Gemm", ["X", "W", "C"], ["Y"], name="gemm", transB=1)],
                  [helper.make_tensor_value_info("X", T.FLOAT, [2, 16])],
                  [helper.make_tensor_value_info("Y", T.FLOAT, [2, 8])], [w, c])


def qdq_conv(act: int = T.INT8, via_view: bool = False, out_q: bool = False) -> onnx.ModelProto:
    """X -> QuantizeLinear -> DequantizeLinear -> Conv, its weight an int8 initializer through DequantizeLinear
    (``via_view``: X -> Identity -> QuantizeLinear; ``out_q``: Conv -> QuantizeLinear -> DequantizeLinear -> Yd)."""
    np_act = helper.tensor_dtype_to_np_dtype(act)
    wq = numpy_helper.from_array(np.random.default_rng(0).integers(-127, 127, (4, 3, 3, 3)).astype(np.int8), "Wq")
    inits = [wq, numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.array(0, np_act), "xz"),
             numpy_helper.from_array(np.float32(0.01), "ws"), numpy_helper.from_array(np.int8(0), "wz"),
             numpy_helper.from_array(np.zeros(4, np.float32), "B")]
    view = [helper.make_node("Identity", ["X"], ["Xv"], name="view")] if via_view else []
    out = [helper.make_node("QuantizeLinear", ["Y", "xs", "xz"], ["Yq"], name="yq"),
           helper.make_node("DequantizeLinear", ["Yq", "xs", "xz"], ["Yd"], name="ydq")] if out_q else []
    return _model(
        [*view, helper.make_node("QuantizeLinear", ["Xv" if via_view else "X", "xs", "xz"], ["Xq"], name="q"),
         helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"], name="dq"),
         helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"], name="wdq"),
         helper.make_node("Conv", ["Xd", "Wd", "B"], ["Y"], name="conv", pads=[1, 1, 1, 1]), *out],
        [helper.make_tensor_value_info("X", T.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("Yd" if out_q else "Y", T.FLOAT, [1, 4, 8, 8])],
        inits)


def by_name(costs):
    return {c.name: c for c in costs}


def fake_orin(**figures):
    """The Jetson AGX Orin profile with round made-up GPU figures: fp32 at 1 GFLOP/s (fp16 2), int8 4 GOP/s, 1 GB/s."""
    values = {"gpu_fp32_tflops": 0.001, "gpu_fp16_tflops": 0.002, "gpu_int8_tops": 0.004, "memory_bandwidth_gbs": 1.0}
    values.update(figures)
    return dataclasses.replace(get_device("jetson_agx_orin"), **values)


# ------------------------------------------------------------------------------------------- layer costs


def test_conv_macs_and_bytes_by_hand() -> None:
    costs = by_name(layer_costs(conv_relu(), {}))
    conv, relu = costs["conv"], costs["relu"]
    assert conv.macs == CONV_MACS
    assert conv.inputs == {"X": 3 * 64 * 4} and conv.weights == {"W": 108 * 4, "B": 4 * 4}
    assert conv.outputs == {"Y": 4 * 64 * 4}
    assert conv.bytes == 768 + 432 + 16 + 1024
    assert conv.precision == "fp32" and conv.fused is None
    assert relu.macs == 0 and relu.bytes == 1024 + 1024  # elementwise: 0 MACs, reads and writes its tensor
    assert relu.fused == "epilogue" and relu.fused_into == "conv"
    assert by_name(layer_costs(conv_relu(), {}, fuse=False))["relu"].fused is None
    assert node_macs(conv_relu(), {}) == {"conv": CONV_MACS}


def test_gemm_macs_and_bytes_by_hand() -> None:
    g = by_name(layer_costs(gemm(), {}))["gemm"]
    assert g.macs == 2 * 8 * 16  # out (2 x 8) x K 16
    assert g.bytes == 2 * 16 * 4 + 8 * 16 * 4 + 8 * 4 + 2 * 8 * 4
    assert node_macs(gemm(), {}) == {"gemm": g.macs}


def test_fp16_layers_and_dynamic_batch() -> None:
    conv = by_name(layer_costs(conv_relu(np.float16), {}))["conv"]
    assert conv.precision == "fp16" and conv.bytes == (768 + 432 + 16 + 1024) // 2
    # a dynamic batch is measured at its optimal value from the metadata
    conv = by_name(layer_costs(conv_relu(batch="N"), {"dynamic_ranges": {"N": [1, 3, 4]}}))["conv"]
    assert conv.macs == 3 * CONV_MACS and conv.inputs == {"X": 3 * 768}


def test_qdq_conv_is_int8_and_reads_8bit_tensors() -> None:
    costs = by_name(layer_costs(qdq_conv(), {}))
    conv = costs["conv"]
    assert conv.precision == "int8" and conv.activation_dtype == "int8" and conv.macs == CONV_MACS
    assert conv.inputs == {"Xd": 192} and conv.weights == {"Wd": 108, "B": 16}  # int8 activation and weight
    assert conv.outputs == {"Y": 1024}
    assert costs["dq"].fused == "qdq" and costs["wdq"].fused == "constant"
    assert costs["q"].fused is None  # quantizing the fp32 graph input is a kernel of its own
    assert costs["q"].bytes == 768 + 4 + 1 + 192
    viewed = by_name(layer_costs(qdq_conv(via_view=True), {}))  # a reshape of the input does not change that
    assert viewed["view"].fused == "view" and viewed["q"].fused is None and viewed["q"].bytes == 768 + 4 + 1 + 192
    # without fusion every tensor is counted at its own type; the conv still runs in int8
    raw = by_name(layer_costs(qdq_conv(), {}, fuse=False))["conv"]
    assert raw.precision == "int8" and raw.inputs == {"Xd": 768} and raw.weights == {"Wd": 432, "B": 16}
    assert by_name(layer_costs(qdq_conv(T.UINT8), {}))["conv"].activation_dtype == "uint8"
    # a quantized output: the conv writes int8 (the QuantizeLinear is its epilogue), the last DQ is a kernel
    out = by_name(layer_costs(qdq_conv(out_q=True), {}))
    assert out["conv"].outputs == {"Y": 256} and out["yq"].fused == "qdq" and out["ydq"].fused is None


def test_onnxruntime_runs_qdq_conv_in_int8_only_with_a_quantized_output() -> None:
    costs = by_name(layer_costs(qdq_conv(), {}, runtime="onnxruntime"))
    conv = costs["conv"]  # DQ -> Conv without an output Q: ONNX Runtime runs the float Conv
    assert conv.precision == "fp32" and conv.inputs == {"Xd": 768} and conv.weights == {"Wd": 432, "B": 16}
    assert costs["q"].fused is costs["dq"].fused is costs["wdq"].fused is None  # all three are kernels
    costs = by_name(layer_costs(qdq_conv(out_q=True), {}, runtime="onnxruntime"))  # QLinearConv
    assert costs["conv"].precision == "int8" and costs["conv"].bytes == 192 + 108 + 16 + 256
    assert costs["dq"].fused == "qdq" and costs["yq"].fused == "qdq" and costs["q"].fused is None


@pytest.mark.parametrize(("act", "zero_point", "precision"),
                         [(T.UINT8, 0, "int8"), (T.INT8, -128, "int8"), (T.INT8, 0, "fp32"), (T.UINT8, 128, "fp32")])
def test_onnxruntime_drops_a_relu_before_quantize_only_at_the_lowest_zero_point(act, zero_point, precision) -> None:
    """Conv -> Relu -> QuantizeLinear: ONNX Runtime (1.32) makes a QLinearConv only when the zero point is the type's
    lowest value (the Relu is then redundant); TensorRT fuses either way."""
    m = qdq_conv(act, out_q=True)
    m.graph.initializer.append(numpy_helper.from_array(np.array(zero_point, helper.tensor_dtype_to_np_dtype(act)), "yz"))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    conv.output[0] = "Yc"
    m.graph.node.insert(list(m.graph.node).index(conv) + 1, helper.make_node("Relu", ["Yc"], ["Y"], name="relu"))
    for n in m.graph.node:
        if n.name in ("yq", "ydq"):
            n.input[2] = "yz"
    assert by_name(layer_costs(m, {}, runtime="onnxruntime"))["conv"].precision == precision
    assert by_name(layer_costs(m, {}))["conv"].precision == "int8"


# ------------------------------------------------------------------------------------------- estimate


def test_roofline_by_hand_on_a_fake_profile() -> None:
    """The plain roofline (calibrated=False: efficiencies 1, no L2, 5 us per kernel) by hand."""
    est = estimate(conv_relu(), {}, fake_orin(), calibrated=False)
    assert est.label == LABEL == "estimate (roofline)" and est.overhead_us == 5.0
    # Conv + Relu epilogue: 2 x 7168 ops at 1 GFLOP/s = 14.336 us > 2240 bytes at 1 GB/s = 2.24 us; + 5 us
    (kernel,) = est.kernels
    assert kernel.bound == "compute" and kernel.epilogue == ("relu",) and kernel.bytes == 2240
    assert kernel.compute_ms == pytest.approx(14.336 * US) and kernel.memory_ms == pytest.approx(2.24 * US)
    assert est.total_ms == pytest.approx((14.336 + 5) * US)
    assert est.uncertainty_pct is None and "uncalibrated" in est.uncertainty

    unfused = estimate(conv_relu(), {}, fake_orin(), fuse=False, calibrated=False)  # Relu on its own: 2048 bytes, memory-bound
    assert [k.bound for k in unfused.kernels] == ["compute", "memory"]
    assert unfused.total_ms == pytest.approx((14.336 + 5 + 2.048 + 5) * US)

    g = estimate(gemm(), {}, fake_orin(), overhead_us=0, calibrated=False)  # 512 ops = 0.512 us < 736 bytes = 0.736 us
    assert g.kernels[0].bound == "memory" and g.total_ms == pytest.approx(0.736 * US)

    # int8: conv 2 x 7168 ops at 4 GOP/s = 3.584 us > 1340 bytes; the input Q kernel moves 965 bytes
    q = estimate(qdq_conv(), {}, fake_orin(), calibrated=False)
    assert q.total_ms == pytest.approx((3.584 + 5 + 0.965 + 5) * US)
    assert q.split()["compute_bound_ms"] == pytest.approx(3.584 * US)


def test_cpu_estimate_uses_measured_peaks_for_the_activation_type() -> None:
    cpu = get_device("cpu")
    peaks = {"fp32_gflops": 1.0, "int8_u8s8_gops": 2.0, "int8_s8s8_gops": 4.0, "bandwidth_gbs": 1.0}
    assert estimate(conv_relu(), {}, cpu, peaks).total_ms == pytest.approx((14.336 + 1) * US)  # 1 us overhead
    # Q/DQ conv without a quantized output: ONNX Runtime runs it in fp32 (14.336 us) after the input Q (965 bytes),
    # the activation DQ (192 + 5 + 768 bytes) and the weight DQ (108 + 5 + 432 bytes), four kernels
    assert estimate(qdq_conv(), {}, cpu, peaks).total_ms == pytest.approx((14.336 + 0.965 + 0.965 + 0.545 + 4) * US)
    # with a quantized output it is a QLinearConv. cpu_int8 auto (the CPU engine's default): int8 activations
    # become uint8, so the u8 x s8 rate (2 GOP/s): 7.168 us; input Q 965 bytes, output DQ 256 + 5 + 1024 bytes
    int8 = (7.168 + 0.965 + 1.285 + 3) * US
    assert estimate(qdq_conv(out_q=True), {}, cpu, peaks).total_ms == pytest.approx(int8)
    assert estimate(qdq_conv(T.UINT8, out_q=True), {}, cpu, peaks).total_ms == pytest.approx(int8)
    # cpu_int8 qdq: the graph as it is, int8 x int8 at its own rate (4 GOP/s here)
    qdq = estimate(qdq_conv(out_q=True), {}, cpu, peaks, cpu_int8="qdq")
    assert qdq.total_ms == pytest.approx(int8 - 3.584 * US)
    with pytest.raises(EdgefuseError, match="cpu_int8"):
        estimate(qdq_conv(), {}, cpu, peaks, cpu_int8="s8")
    with pytest.raises(EdgefuseError, match="bandwidth_gbs"):
        estimate(gemm(), {}, cpu, {"fp32_gflops": 1.0})


def test_missing_figure_names_the_device_and_field() -> None:
    """A figure no source gives (profile field, published.toml, GPU-only legacy field) is one line naming both."""
    bare = fake_orin(name="jetson_test", gpu_fp16_tflops=None, fp16_tflops=None)  # no published.toml entry either
    with pytest.raises(EdgefuseError, match=r"^jetson_test: no gpu_fp16_tflops, needed for the fp16 layers; .*"
                                            r"jetson_agx_orin\.toml") as e:
        estimate(conv_relu(np.float16), {}, bare)
    assert "\n" not in str(e.value)
    with pytest.raises(EdgefuseError, match=r"jetson_test: no gpu_int8_tops"):
        estimate(qdq_conv(), {}, fake_orin(name="jetson_test", gpu_int8_tops=None))  # module int8_tops is GPU + DLA
    with pytest.raises(EdgefuseError, match=r"jetson_test: no memory_bandwidth_gbs"):
        estimate(gemm(), {}, fake_orin(name="jetson_test", memory_bandwidth_gbs=None))
    # an fp32 layer on a tensor-core GPU runs as TF32: the fp16 figure is enough
    assert estimate(conv_relu(), {}, fake_orin(name="jetson_test", gpu_fp32_tflops=None)).total_ms > 0
    # a profile without the field falls back to published.toml's figure for that device
    orin = fake_orin(gpu_fp16_tflops=None)
    assert "published.toml" in estimate(conv_relu(np.float16), {}, orin).peaks["source"]


def test_compare_with_measurement() -> None:
    est = estimate(gemm(), {}, fake_orin(), overhead_us=0, calibrated=False)
    cmp = compare_with_measurement(est, est.total_ms * 2)
    assert cmp.ratio == pytest.approx(0.5) and cmp.error_pct == pytest.approx(-50.0)
    assert cmp.verdict == "optimistic" and cmp.label == LABEL
    with pytest.raises(EdgefuseError):
        compare_with_measurement(est, 0)


def test_measure_cpu_peak_returns_positive_figures() -> None:
    peaks = measure_cpu_peak(threads=1, size=256, repeats=2)
    for key in ("fp32_gflops", "int8_u8s8_gops", "int8_s8s8_gops", "bandwidth_gbs"):
        assert peaks[key] > 0, key
    assert "MatMulInteger" in peaks["method"] and peaks["size"] == 256
    est = estimate(conv_relu(), {}, get_device("cpu"), peaks)
    assert est.total_ms > 0 and est.peaks["fp32_gflops"] == peaks["fp32_gflops"]
