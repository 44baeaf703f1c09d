"""GSF's gate, shift and fusion on integer grids in the CPU INT8 engine (edgefuse.backends.ort.int8.gated_ops_on_grid).

Real torch export, real ONNX Runtime: one GSF block exported on its own, its input on a calibrated grid (as the CPU
engine has it after a quantized convolution), the ranges of its tensors measured on random inputs the way calibrate
measures them."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from edgefuse.backends.ort.int8 import gated_ops_on_grid, hoist_quantize, u8s8_exact_here, weights_to_uint8
from edgefuse.graph.ort import ort_session
from edgefuse.graph.query import with_outputs
from edgefuse.models.layers.gsf import GSF
from edgefuse.quantize.qdq import gated_grids, symmetric_scale

T, C, H, W = 4, 16, 8, 8


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gsf = GSF(C, 100.0)
        self.bn = torch.nn.BatchNorm2d(C)  # as in a ResNet block: conv -> GSF -> BatchNorm -> + identity -> ReLU
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0, 0.5)
            for bn in (self.gsf.bn, self.bn):
                bn.running_mean.normal_(0, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.gsf(x, T)) + x)  # (N*T, C, H, W): the rest of a ResNet block


def _run(model: onnx.ModelProto, x: np.ndarray, names: list[str] | None = None,
         optimize: bool = False) -> dict[str, np.ndarray]:
    """Every requested tensor (and the output) of one run of ``model`` on ONNX Runtime's CPU."""
    session = ort_session(with_outputs(model, names or []), optimize=optimize)
    outs = [o.name for o in session.get_outputs()]
    return dict(zip(outs, session.run(outs, {session.get_inputs()[0].name: x})))


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.maximum(np.random.default_rng(seed).standard_normal((n * T, C, H, W)), 0).astype(np.float32)  # post-ReLU


@pytest.fixture(scope="module")
def block() -> tuple[onnx.ModelProto, dict[str, float]]:
    """The block's graph with its input on a uint8 grid (zero point 128, as the CPU engine's), and the |max| of every
    tensor over 4 random clips (calibrate's ranges)."""
    buf = io.BytesIO()
    torch.onnx.export(_Block(), (torch.from_numpy(_inputs(1, 0)),), buf, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    calib = _inputs(1, 1)
    scale = numpy_helper.from_array(np.array(symmetric_scale(float(np.abs(calib).max())), np.float32), "x_scale")
    zero = numpy_helper.from_array(np.array(128, np.uint8), "x_zero")
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name == "x":
                n.input[i] = "x_dq"
    qdq = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="x_Q"),
           helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="x_DQ")]
    nodes = qdq + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend([scale, zero])
    names = [o for n in model.graph.node for o in n.output if o]
    ranges: dict[str, float] = {}
    for seed in range(2, 6):
        for name, value in _run(model, _inputs(1, seed), names).items():
            if np.issubdtype(value.dtype, np.floating):
                ranges[name] = max(ranges.get(name, 0.0), float(np.abs(value).max()))
    return model, ranges


def _engine(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """What the CPU engine saves: ONNX Runtime's optimized graph (fusions applied) for this machine."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(path)
    so.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(path))


def test_plan_finds_each_gated_product_sum_and_pool(block) -> None:  # type: ignore[no-untyped-def]
    """Per group: y = g*x and r = x*(1-g) (gated by the tanh gate), y_shift*w and r*(1-w) (by the sigmoid fusion
    weight), their sum, and the two pools feeding the fusion convolution: 4 products, 1 sum, 2 pools a group."""
    model, _ = block
    plan = gated_grids(model)
    ops = {name: next(n.op_type for n in model.graph.node if n.name == name) for name, _, _ in plan.inputs}
    kinds = [ops[name] for name in dict.fromkeys(name for name, _, _ in plan.inputs)]
    assert kinds.count("Mul") == 8 and kinds.count("Add") == 2 and kinds.count("GlobalAveragePool") == 4, kinds
    # both sums take the grid of the shuffled output they are concatenated into, which the BatchNorm after GSF reads
    sums = [grid for tensor, grid in plan.outputs if tensor != grid]
    assert len(sums) == 2 and len(set(sums)) == 1
    assert kinds.count("BatchNormalization") == 1 and len(plan.batchnorms) == 1
    bn = next(n for n in model.graph.node if n.name == plan.batchnorms[0])
    assert bn.input[0] == sums[0] and (bn.output[0], bn.output[0]) in plan.outputs


def test_gsf_runs_on_integer_grids_each_operation_within_one_step(block, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rewrite's engine runs every gated product, the fusion sums and the pools as ONNX Runtime integer kernels
    (no FP32 Mul left), the shift and channel shuffle on integers; each integer kernel's output is within one step of
    its own grid of the exact result (FP32 arithmetic on the same integer inputs, then rounded), and on inputs inside
    the calibrated ranges the block's output stays within 2 steps of its grid (0.3 on average) of the FP32 block on
    the same input grid (outside them the grids clip, as every calibrated grid does)."""
    model, ranges = block
    rewritten = hoist_quantize(gated_ops_on_grid(model, ranges))
    if not u8s8_exact_here():  # as the CPU engine does: int8 weights only where ONNX Runtime's u8 x s8 kernel is exact
        rewritten = weights_to_uint8(rewritten)
    engine = _engine(rewritten, tmp_path / "engine.onnx")
    kinds = [n.op_type for n in engine.graph.node]
    assert kinds.count("QLinearMul") == 8 and kinds.count("QLinearAdd") == 2, kinds
    assert kinds.count("QLinearGlobalAveragePool") == 4 and "Mul" not in kinds, kinds
    assert "GlobalAveragePool" not in kinds and "ReduceMean" not in kinds, kinds
    # the BatchNorm after GSF as a depthwise integer convolution; the gate (BatchNorm, ReLU, its factored
    # convolution, tanh) and the fusion's 2 -> 1 convolutions on the pooled planes stay FP32
    assert kinds.count("BatchNormalization") == 1 and kinds.count("QLinearConv") == 1, kinds

    consts = {i.name: numpy_helper.to_array(i) for i in engine.graph.initializer}
    integer = [n for n in engine.graph.node if n.op_type in ("QLinearMul", "QLinearAdd", "QLinearGlobalAveragePool",
                                                             "QLinearConv")]
    watch = list(dict.fromkeys(t for n in integer for t in (*n.input, *n.output) if t and t not in consts))
    x = _inputs(1, 3)  # inside the calibrated ranges (one of the clips they were measured on): rounding, no clipping
    got = _run(engine, x, watch)

    def dq(q: str, s: str, z: str) -> np.ndarray:
        return (got[q].astype(np.float32) - consts[z].astype(np.float32)) * consts[s]

    for n in integer:
        if n.op_type == "QLinearConv":  # a convolution on the integers' real values (bias int32 at s_x * s_w)
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            w = (consts[n.input[3]].astype(np.float32) - consts[n.input[5]].astype(np.float32).reshape(-1, 1, 1, 1)) \
                * consts[n.input[4]].reshape(-1, 1, 1, 1)  # (C_out, C_in / groups, kh, kw)
            x_real = dq(*n.input[:3])
            if attrs.get("channels_last"):
                x_real = x_real.transpose(0, 3, 1, 2)  # NHWC -> NCHW
            bias = consts[n.input[8]] * consts[n.input[1]] * consts[n.input[4]] if len(n.input) > 8 else None
            pads = attrs.get("pads", [0, 0, 0, 0])
            exact = torch.nn.functional.conv2d(torch.from_numpy(x_real), torch.from_numpy(w),
                                               None if bias is None else torch.from_numpy(bias.astype(np.float32)),
                                               padding=(pads[0], pads[1]), groups=attrs.get("group", 1)).numpy()
            if attrs.get("channels_last"):
                exact = exact.transpose(0, 2, 3, 1)  # back to NHWC
            s, z = n.input[6], n.input[7]
        elif n.op_type == "QLinearGlobalAveragePool":
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            axes = (1, 2) if attrs.get("channels_last") else (2, 3)
            exact = dq(*n.input[:3]).mean(axis=axes, keepdims=True)
            s, z = n.input[3], n.input[4]
        else:
            a, b = dq(*n.input[:3]), dq(*n.input[3:6])
            exact = a * b if n.op_type == "QLinearMul" else a + b
            s, z = n.input[6], n.input[7]
        steps = exact / consts[s] + consts[z].astype(np.float32)
        want = np.clip(np.rint(steps), 0, 255)
        assert np.abs(got[n.output[0]].astype(np.float32) - want.reshape(got[n.output[0]].shape)).max() <= 1, n.name

    step = symmetric_scale(ranges["y"])  # the block's output range
    for seed in range(2, 6):  # measured: 1.3-1.4 steps at most, 0.18-0.19 on average
        x = _inputs(1, seed)
        ref, out = _run(model, x)["y"], _run(engine, x)["y"]
        assert np.abs(out - ref).max() <= 2 * step and np.abs(out - ref).mean() <= 0.3 * step, seed


def test_missing_range_keeps_that_operation_fp32(block) -> None:  # type: ignore[no-untyped-def]
    """A product whose grid has no calibrated range (a graph calibrated before these grids existed) stays FP32;
    with no ranges at all the graph is returned as it is."""
    model, ranges = block
    assert gated_ops_on_grid(model, {}) is model
    plan = gated_grids(model)
    product = next(t for t, g in plan.outputs if t == g and "Mul" in t)
    partial = hoist_quantize(gated_ops_on_grid(model, {k: v for k, v in ranges.items() if k != product}))
    mul = next(n for n in partial.graph.node if n.output[0] == product)
    assert mul.op_type == "Mul"
    readers = [n for n in partial.graph.node if product in n.input]
    assert readers and not any(n.op_type == "QuantizeLinear" and n.name.endswith("_out_grid_Q") for n in readers)
