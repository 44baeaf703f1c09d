"""INT8 for ONNX Runtime's CPU kernels without changing the calibrated grid.

The Q/DQ graph from ``edgefuse calibrate`` is what TensorRT needs: int8 activations with zero
point 0. ONNX Runtime's fast x86 kernels (VNNI) multiply uint8 activations by int8 weights; int8 x
int8 runs an order of magnitude slower. An int8 value q with zero point 0 is the uint8 value
q + 128 with zero point 128: the same real numbers (scale * q) on the same grid. So each
activation QuantizeLinear / DequantizeLinear pair gets a uint8 zero point of 128 and nothing else
changes: outputs equal the Q/DQ graph's up to the one value the int8 grid has and the uint8 one
lacks (-128, which symmetric calibration never produces inside its range).

Weights (Q/DQ pairs on FP32 initializers) are quantized here once, to int8 initializers feeding
their DequantizeLinear, so loading the engine does no weight quantization.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgefuse.export.passes import finalize


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def activations_to_uint8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Re-express every activation Q/DQ with int8 zero point 0 as uint8 with zero point 128."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _initializers(out)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in out.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for q in [n for n in out.graph.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in inits or len(q.input) < 3 or q.input[2] not in inits:
            continue  # weights stay int8
        zp = numpy_helper.to_array(inits[q.input[2]])
        if zp.dtype != np.int8 or zp.any():
            continue
        name = f"{q.output[0]}_zero_point_u8"
        out.graph.initializer.append(numpy_helper.from_array(np.full(zp.shape, 128, dtype=np.uint8), name))
        q.input[2] = name
        for dq in consumers.get(q.output[0], []):
            if dq.op_type == "DequantizeLinear":
                dq.input[2] = name
    return finalize(out)


def fold_weight_quantization(model: onnx.ModelProto) -> onnx.ModelProto:
    """QuantizeLinear on a constant FP32 weight -> its int8 result as an initializer (same values
    ONNX Runtime would compute at load time; the DequantizeLinear after it stays)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _initializers(out)
    keep = []
    for n in out.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in inits and n.input[1] in inits and len(n.input) > 2 \
                and n.input[2] in inits:
            x = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            zp = numpy_helper.to_array(inits[n.input[2]])
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and scale.size > 1:
                shape = [1] * x.ndim
                shape[axis] = scale.size
                scale, zpb = scale.reshape(shape), zp.astype(np.int32).reshape(shape)
            else:
                zpb = zp.astype(np.int32)
            info = np.iinfo(zp.dtype)
            q = np.clip(np.rint(x / scale) + zpb, info.min, info.max).astype(zp.dtype)  # round half to even, as ONNX
            out.graph.initializer.append(numpy_helper.from_array(q, n.output[0]))
            continue
        keep.append(n)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return finalize(out)


def requantize_before_relu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Conv -> Relu -> QuantizeLinear(s, z) becomes Conv -> Q(s, z) -> DQ -> Relu -> Q(s, z): exactly the
    same values (rounding commutes with max(., 0) on one grid: Q(relu(y)) = max(Q(y), z)), and ONNX Runtime
    can then run the Conv as one integer QLinearConv instead of dequantizing into an FP32 convolution."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in out.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = _initializers(out)
    added = []
    for conv in [n for n in out.graph.node if n.op_type == "Conv"]:
        relus = consumers.get(conv.output[0], [])
        if len(relus) != 1 or relus[0].op_type != "Relu":
            continue
        qs = consumers.get(relus[0].output[0], [])
        if not qs or any(q.op_type != "QuantizeLinear" or len(q.input) < 3 for q in qs):
            continue
        grids = {(numpy_helper.to_array(inits[q.input[1]]).tobytes(), numpy_helper.to_array(inits[q.input[2]]).tobytes())
                 for q in qs if q.input[1] in inits and q.input[2] in inits}
        if len(grids) != 1 or len(qs) != len([q for q in qs if q.input[1] in inits]):
            continue
        scale, zero = qs[0].input[1], qs[0].input[2]
        q_out, dq_out = f"{conv.output[0]}_requant_q", f"{conv.output[0]}_requant_dq"
        added.append(onnx.helper.make_node("QuantizeLinear", [conv.output[0], scale, zero], [q_out],
                                           name=f"{conv.name}_requant_Q"))
        added.append(onnx.helper.make_node("DequantizeLinear", [q_out, scale, zero], [dq_out],
                                           name=f"{conv.name}_requant_DQ"))
        relus[0].input[0] = dq_out
    out.graph.node.extend(added)
    return finalize(out)


def cpu_int8_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The CPU engine's INT8 graph: the calibrated grid, on ONNX Runtime's u8 x s8 kernels."""
    return fold_weight_quantization(requantize_before_relu(activations_to_uint8(model)))
