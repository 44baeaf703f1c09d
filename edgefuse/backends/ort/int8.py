"""INT8 for ONNX Runtime's CPU kernels, from the TensorRT-ready Q/DQ graph.

The Q/DQ graph from ``edgefuse calibrate`` is what TensorRT needs: int8 activations with zero
point 0, Q/DQ on the inputs of convolutions only. Run as it is on ONNX Runtime's CPU kernels it is
slower than FP32, for two reasons this module removes:

1. ONNX Runtime's fast x86 kernels (VNNI) multiply uint8 activations by int8 weights; int8 x int8
   runs an order of magnitude slower. An int8 value q with zero point 0 is the uint8 value q + 128
   with zero point 128: the same real numbers (scale * q) on the same grid
   (:func:`activations_to_uint8`).
2. ONNX Runtime runs a convolution in integers (QLinearConv) only when a QuantizeLinear follows
   it; otherwise it dequantizes into an FP32 convolution. Exact moves put the existing
   QuantizeLinear right after the convolutions (:func:`hoist_quantize`): rounding commutes with
   ``max(., 0)`` on one grid (``Q(relu(y)) = max(Q(y), z)``, a uint8 Clip), with max pooling, and
   with data movement (the temporal shift's Reshape / Slice / Concat, zero padding included, as 0
   is on every grid). A DequantizeLinear straight into a QuantizeLinear of the same grid is the
   identity (:func:`cancel_requantize`).

One step is not exact: a convolution whose output goes into a residual Add (or GSF's gating,
AdaFuse's fusion) has no QuantizeLinear anywhere after it (TensorRT fuses what follows into the
convolution's epilogue, which ONNX Runtime does not). :func:`quantize_conv_outputs` quantizes it on a grid
calibrated for that tensor (``cpu_int8_ranges`` in the graph's metadata, written by
``edgefuse calibrate``), so the Add runs as an integer QLinearAdd. Graphs calibrated without
these ranges keep those convolutions in FP32 (exact, slower). GSF's gating (its gated products, fusion sums and
pools) goes on calibrated grids the same way (:func:`gated_ops_on_grid`), so ONNX Runtime runs it in integers too.

Weights (Q/DQ pairs on FP32 initializers) are quantized here once, to int8 initializers feeding
their DequantizeLinear, so loading the engine does no weight quantization.

The u8 x s8 kernels are exact only where the CPU multiplies bytes into 32-bit sums (x86 VNNI or AMX,
Arm's dot-product instructions). On x86 without them (AVX2 alone) ONNX Runtime's u8 x s8 kernel adds
pairs of products in saturating 16-bit lanes (``vpmaddubsw``): 255 x 127 x 2 overflows, and a
convolution's integer output was measured 94 quantization steps away from the Q/DQ graph's. There the
weights are re-expressed as uint8 with zero point 128 (:func:`weights_to_uint8`, the same real
numbers), which runs on the exact u8 x u8 kernel (:func:`exact_u8s8`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefuse.backends.ort.layout import drop_unit_batch
from edgefuse.graph.passes import finalize
from edgefuse.graph.query import consumers as consumers_of
from edgefuse.graph.query import producers
from edgefuse.quantize.qdq import DATA_MOVEMENT, symmetric_scale

log = logging.getLogger(__name__)

# DATA_MOVEMENT ops move or select elements without changing them: Q(op(x)) == op(Q(x)) exactly
MONOTONE = ("MaxPool",)  # order-preserving selection: commutes with a monotone rounding


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


class _Constants(Mapping[str, np.ndarray]):
    """Initializers and Constant node outputs by name, converted to arrays when read."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self._protos = {i.name: i for i in model.graph.initializer}
        for n in model.graph.node:
            value = next((a for a in n.attribute if a.name == "value"), None) if n.op_type == "Constant" else None
            if value is not None:
                self._protos[n.output[0]] = value.t
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = numpy_helper.to_array(self._protos[name])
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self._protos

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._protos)

    def __len__(self) -> int:
        return len(self._protos)


def _activation_grid(q: onnx.NodeProto, consts: Mapping[str, np.ndarray]) -> tuple[float, int, np.dtype] | None:
    """(scale, zero point, dtype) of a per-tensor activation QuantizeLinear / DequantizeLinear, else None."""
    if q.input[0] in consts or len(q.input) < 3 or q.input[1] not in consts or q.input[2] not in consts:
        return None
    scale, zero = consts[q.input[1]], consts[q.input[2]]
    if scale.size != 1 or zero.size != 1:
        return None
    return float(scale.reshape(())), int(zero.reshape(())), zero.dtype


def _quantize_array(x: np.ndarray, scale: float, zero: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(x.astype(np.float32) / np.float32(scale)) + zero, info.min, info.max).astype(dtype)


def activations_to_uint8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Re-express every activation Q/DQ with int8 zero point 0 as uint8 with zero point 128."""
    out = _copy(model)
    inits = _initializers(out)
    consumers = consumers_of(out)
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
    out = _copy(model)
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


def quantize_conv_outputs(model: onnx.ModelProto, ranges: Mapping[str, float]) -> onnx.ModelProto:
    """A quantized convolution (DequantizeLinear input) that no QuantizeLinear follows (it feeds a
    residual Add, GSF's gating, AdaFuse's fusion) gets one on uint8, zero point 128, scale
    ``ranges[tensor] / 127``: ONNX Runtime can then run it as QLinearConv, and an Add of two
    quantized inputs as QLinearAdd. Not exact (a new rounding, on a calibrated grid); tensors
    without a range are left as they are."""
    out = _copy(model)
    producer = producers(out)
    consumers = consumers_of(out)
    added: list[onnx.NodeProto] = []
    for conv in [n for n in out.graph.node if n.op_type == "Conv"]:
        tensor = conv.output[0]
        source = producer.get(conv.input[0])
        readers = consumers.get(tensor, [])
        if source is None or source.op_type != "DequantizeLinear" or not readers \
                or any(r.op_type == "QuantizeLinear" for r in readers) or ranges.get(tensor, 0.0) <= 0.0:
            continue  # FP32 convolutions stay FP32; quantized outputs are already fine
        scale = numpy_helper.from_array(np.array(symmetric_scale(ranges[tensor]), dtype=np.float32),
                                        f"{tensor}_cpu_scale")
        zero = numpy_helper.from_array(np.array(128, dtype=np.uint8), f"{tensor}_cpu_zero_point")
        out.graph.initializer.extend([scale, zero])
        added += [helper.make_node("QuantizeLinear", [tensor, scale.name, zero.name], [f"{tensor}_cpu_q"],
                                   name=f"{conv.name}_cpu_Q"),
                  helper.make_node("DequantizeLinear", [f"{tensor}_cpu_q", scale.name, zero.name],
                                   [f"{tensor}_cpu_dq"], name=f"{conv.name}_cpu_DQ")]
        for r in readers:
            for i, name in enumerate(r.input):
                if name == tensor:
                    r.input[i] = f"{tensor}_cpu_dq"
    out.graph.node.extend(added)
    return finalize(out)


def gated_ops_on_grid(model: onnx.ModelProto, ranges: Mapping[str, float]) -> onnx.ModelProto:
    """GSF's gate products, their fusion sum and pools (:func:`~edgefuse.quantize.qdq.gated_grids`) on integer grids:
    a Q/DQ pair on each input (the grid of the DequantizeLinear it already comes from, else uint8, zero point 128,
    scale ``ranges[tensor] / 127``) and on each output, so ONNX Runtime runs them as QLinearMul, QLinearAdd and
    QLinearGlobalAveragePool, and :func:`hoist_quantize` then moves integers through the temporal shift and the
    channel shuffle. The BatchNorm after GSF runs as a depthwise integer convolution
    (:func:`_batchnorm_as_depthwise`), so the residual Add after it is a QLinearAdd. Not exact: each product, sum,
    pool and the BatchNorm's output get a rounding on a calibrated grid. An operation any of whose grids lacks a range
    stays FP32."""
    from edgefuse.quantize.qdq import gated_grids

    plan = gated_grids(model)
    if not plan.inputs:
        return model
    out = _copy(model)
    consts = _Constants(out)
    producer = producers(out)
    zero = "gated_grid_zero_point_u8"
    scales: dict[str, str] = {}

    def grid(tensor: str) -> tuple[str, str] | None:
        node = producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear" and _activation_grid(node, consts) is not None:
            return node.input[1], node.input[2]
        if ranges.get(tensor, 0.0) <= 0.0:
            return None
        if tensor not in scales:
            scales[tensor] = f"{tensor}_grid_scale"
            out.graph.initializer.append(numpy_helper.from_array(
                np.array(symmetric_scale(ranges[tensor]), dtype=np.float32), scales[tensor]))
        return scales[tensor], zero

    by_name = {n.name: n for n in out.graph.node}
    out_grid = dict(plan.outputs)
    ready = {name for name, _, _ in plan.inputs}
    for name, _, tensor in plan.inputs:  # all or nothing per operation: a missing range keeps it FP32
        node = by_name[name]
        if grid(tensor) is None or (node.output[0] in out_grid and grid(out_grid[node.output[0]]) is None):
            ready.discard(name)
    if not ready:
        return model
    out.graph.initializer.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), zero))
    added: list[onnx.NodeProto] = []
    for name, i, tensor in plan.inputs:
        node = by_name[name]
        source = producer.get(node.input[i])
        if name not in ready or (source is not None and source.op_type == "DequantizeLinear"):
            continue
        g = grid(tensor)
        assert g is not None
        q, dq = f"{name}_in{i}_grid_q", f"{name}_in{i}_grid_dq"
        added += [helper.make_node("QuantizeLinear", [node.input[i], *g], [q], name=f"{name}_in{i}_grid_Q"),
                  helper.make_node("DequantizeLinear", [q, *g], [dq], name=f"{name}_in{i}_grid_DQ")]
        node.input[i] = dq
    readers = consumers_of(out)  # after the inputs' rewiring (the pairs added are not in the graph yet)
    for tensor, grid_of in plan.outputs:
        node = producer[tensor]
        if node.name not in ready:
            continue
        g = grid(grid_of)
        assert g is not None
        q, dq = f"{tensor}_grid_q", f"{tensor}_grid_dq"
        for reader in readers.get(tensor, []):
            for i, read in enumerate(reader.input):
                if read == tensor:
                    reader.input[i] = dq
        added += [helper.make_node("QuantizeLinear", [tensor, *g], [q], name=f"{node.name}_out_grid_Q"),
                  helper.make_node("DequantizeLinear", [q, *g], [dq], name=f"{node.name}_out_grid_DQ")]
    out.graph.node.extend(added)
    for name in plan.batchnorms:
        if name in ready:
            _batchnorm_as_depthwise(out, by_name[name], consts)
    log.debug("gated operations on integer grids: %d", len(ready))
    return finalize(out)


def _batchnorm_as_depthwise(model: onnx.ModelProto, bn: onnx.NodeProto, consts: Mapping[str, np.ndarray]) -> None:
    """In place: inference BatchNormalization -> the same per-channel affine map as a depthwise 1x1 convolution with
    int8 weights +-127 at scale |gamma / sqrt(var + eps)| / 127 per channel (the factor exactly, to float rounding)
    and an FP32 bias, which ONNX Runtime runs as a depthwise QLinearConv when its input and output are on grids."""
    gamma, beta, mean, var = (np.asarray(consts[i], dtype=np.float64) for i in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    factor = gamma / np.sqrt(var + eps)  # (C,)
    bias = beta - mean * factor  # (C,)
    channels = factor.size
    weight = np.where(factor != 0, np.sign(factor) * 127, 0).astype(np.int8).reshape(channels, 1, 1, 1)
    scale = np.where(factor != 0, np.abs(factor) / 127, 1.0).astype(np.float32)
    base = bn.name or bn.output[0]
    model.graph.initializer.extend([
        numpy_helper.from_array(weight, f"{base}_dw_weight_q"), numpy_helper.from_array(scale, f"{base}_dw_scale"),
        numpy_helper.from_array(np.zeros(channels, np.int8), f"{base}_dw_zero_point"),
        numpy_helper.from_array(bias.astype(np.float32), f"{base}_dw_bias")])
    dq = helper.make_node("DequantizeLinear", [f"{base}_dw_weight_q", f"{base}_dw_scale", f"{base}_dw_zero_point"],
                          [f"{base}_dw_weight"], name=f"{base}_dw_weight_DQ", axis=0)
    conv = helper.make_node("Conv", [bn.input[0], f"{base}_dw_weight", f"{base}_dw_bias"], [bn.output[0]],
                            name=f"{base}_as_dw", group=channels, kernel_shape=[1, 1])
    index = list(model.graph.node).index(bn)
    model.graph.node.remove(bn)
    model.graph.node.insert(index, conv)
    model.graph.node.insert(index, dq)


def _merge_duplicate_quantize(model: onnx.ModelProto) -> bool:
    """QuantizeLinear nodes reading the same tensor with the same scale and zero point: keep one."""
    consts = _Constants(model)
    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for n in model.graph.node:
        grid = _activation_grid(n, consts) if n.op_type == "QuantizeLinear" else None
        if grid is not None:
            key = (n.input[0], grid)
            if key in seen:
                rename[n.output[0]] = seen[key]
                continue
            seen[key] = n.output[0]
        keep.append(n)
    if not rename:
        return False
    del model.graph.node[:]
    model.graph.node.extend(keep)
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    for o in model.graph.output:
        o.name = rename.get(o.name, o.name)
    return True


def _quantized_operand(model: onnx.ModelProto, consts: Mapping[str, np.ndarray], new: list[onnx.NodeProto],
                       q: onnx.NodeProto, grid: tuple[float, int, np.dtype], tensor: str, tag: str) -> str:
    """``tensor`` on ``q``'s grid: a constant (the shift's zero padding) quantized here as an initializer, else a new
    QuantizeLinear (appended to ``new``) reading it."""
    scale, zero, dtype = grid
    if tensor in consts:
        name = f"{tensor}_{q.name}_q"
        model.graph.initializer.append(numpy_helper.from_array(_quantize_array(consts[tensor], scale, zero, dtype), name))
        return name
    name = f"{tensor}_{q.name}_{tag}"
    new.append(helper.make_node("QuantizeLinear", [tensor, q.input[1], q.input[2]], [name], name=f"{q.name}_{tag}"))
    return name


def _hoist_one(model: onnx.ModelProto) -> bool:
    """Move the activation QuantizeLinear nodes reading one op's output above that op, if exact: the
    op is repeated on each grid when its readers quantize on different grids."""
    consts = _Constants(model)
    consumers = consumers_of(model)
    outputs = {o.name for o in model.graph.output}
    for op in model.graph.node:
        if op.op_type not in ("Relu",) + DATA_MOVEMENT + MONOTONE or len([o for o in op.output if o]) != 1 \
                or op.output[0] in outputs:
            continue
        readers = consumers.get(op.output[0], [])
        grids = [_activation_grid(q, consts) if q.op_type == "QuantizeLinear" else None for q in readers]
        if not readers or any(g is None for g in grids):
            continue  # someone reads the float tensor
        new: list[onnx.NodeProto] = []
        for q, grid in zip(readers, grids):
            assert grid is not None
            _, zero, dtype = grid
            if op.op_type == "Relu":  # Q(relu(y)) = max(Q(y), z)
                low = f"{q.name}_relu_floor"
                model.graph.initializer.append(numpy_helper.from_array(np.array(zero, dtype=dtype), low))
                pre = _quantized_operand(model, consts, new, q, grid, op.input[0], "pre_relu")
                new.append(helper.make_node("Clip", [pre, low], [q.output[0]],
                                            name=f"{op.name}_on_grid_{q.name}"))
            else:
                data = range(len(op.input)) if op.op_type == "Concat" else [0]
                moved = helper.make_node(op.op_type, list(op.input), [q.output[0]], name=f"{op.name}_on_grid_{q.name}")
                moved.attribute.extend(op.attribute)
                for i in data:
                    moved.input[i] = _quantized_operand(model, consts, new, q, grid, op.input[i], f"in{i}")
                new.append(moved)
        gone = {op.name} | {q.name for q in readers}
        keep = [n for n in model.graph.node if n.name not in gone]
        del model.graph.node[:]
        model.graph.node.extend(keep + new)
        return True
    return False


def cancel_requantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """DequantizeLinear -> QuantizeLinear on the same grid is the identity: read the integers directly."""
    out = _copy(model)
    consts = _Constants(out)
    producer = producers(out)
    rename = {}
    for q in out.graph.node:
        dq = producer.get(q.input[0]) if q.op_type == "QuantizeLinear" else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        a, b = _activation_grid(dq, consts), _activation_grid(q, consts)
        if a is not None and a == b:
            rename[q.output[0]] = dq.input[0]
    for n in out.graph.node:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    return finalize(out)


def hoist_quantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move every activation QuantizeLinear up through Relu (as a uint8 Clip), max pooling and data
    movement, as far as it is exact, so each convolution ends in a QuantizeLinear."""
    out = _copy(model)
    _merge_duplicate_quantize(out)
    while _hoist_one(out):
        _merge_duplicate_quantize(out)
    return cancel_requantize(finalize(out))


# x86 features whose byte dot products accumulate in 32 bits (no saturating 16-bit step)
EXACT_U8S8_ISA = ("avx512_vnni", "avx_vnni", "amx_int8")


def exact_u8s8(isa: Sequence[str], machine: str) -> bool:
    """Whether ONNX Runtime's u8 x s8 kernels are exact on this CPU: on x86 only with VNNI or AMX (AVX2's
    ``vpmaddubsw`` saturates 16-bit pair sums); on Arm (``aarch64``/``arm64``) yes."""
    if machine.lower() in ("aarch64", "arm64"):
        return True
    return any(f in isa for f in EXACT_U8S8_ISA)


def weights_to_uint8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every int8 weight initializer with an int8 zero point feeding a DequantizeLinear -> uint8 value + 128,
    zero point + 128: the same real numbers, for the exact u8 x u8 kernels."""
    out = _copy(model)
    inits = {i.name: i for i in out.graph.initializer}
    done: dict[str, str] = {}
    for n in out.graph.node:
        if n.op_type != "DequantizeLinear" or len(n.input) < 3 or n.input[0] not in inits or n.input[2] not in inits:
            continue
        q, zp = (numpy_helper.to_array(inits[n.input[i]]) for i in (0, 2))
        if q.dtype != np.int8 or zp.dtype != np.int8:
            continue
        for i, value in ((0, q), (2, zp)):
            name = n.input[i]
            if name not in done:
                done[name] = f"{name}_u8"
                shifted = (value.astype(np.int16) + 128).astype(np.uint8)  # same shape, int8 -> uint8 grid
                out.graph.initializer.append(numpy_helper.from_array(shifted, done[name]))
            n.input[i] = done[name]
    return finalize(out)


def pools_as_depthwise(model: onnx.ModelProto) -> onnx.ModelProto:
    """DequantizeLinear -> AveragePool -> QuantizeLinear (the Inception networks' branch pools once their input is
    on a grid) as a depthwise convolution of INT8 weights 127 at scale 1 / (k * k) / 127: the same average on the
    same grids, which ONNX Runtime runs as a depthwise QLinearConv instead of its QLinearAveragePool (an 8x256x28x28
    3x3 pool: 1.05 ms against 12.4 ms, outputs identical there). Zero padding counted (``count_include_pad``, or no
    padding) is the input's zero point, as QLinearConv pads. Not bit-exact by construction (the weight 127 x scale
    is 1 / (k * k) to float rounding, so a value on a rounding tie may move one step): an ``auto`` engine step."""
    from edgefuse.backends.ort.layout import _shapes

    out = _copy(model)
    consts = _Constants(out)
    producer = producers(out)
    consumers = consumers_of(out)
    shapes = _shapes(out)
    replaced = 0
    for pool in [n for n in out.graph.node if n.op_type == "AveragePool" and n.domain in ("", "ai.onnx")]:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        strides = list(attrs.get("strides", [1] * len(kernel)))
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        dq = producer.get(pool.input[0])
        shape = shapes.get(pool.input[0])
        readers = consumers.get(pool.output[0], [])
        if len(kernel) != 2 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
                or (any(pads) and not attrs.get("count_include_pad", 0)) \
                or (attrs.get("ceil_mode", 0) and any(s != 1 for s in strides)) \
                or dq is None or dq.op_type != "DequantizeLinear" or _activation_grid(dq, consts) is None \
                or not readers or any(r.op_type != "QuantizeLinear" for r in readers) \
                or shape is None or len(shape) != 4 or not shape[1]:
            continue
        channels = int(shape[1])
        name = pool.name or pool.output[0]
        weight = numpy_helper.from_array(np.full((channels, 1, *kernel), 127, dtype=np.int8), f"{name}_dw_weight")
        scale = numpy_helper.from_array(np.array(np.float32(1.0 / (kernel[0] * kernel[1])) / np.float32(127),
                                                 dtype=np.float32), f"{name}_dw_scale")
        zero = numpy_helper.from_array(np.array(0, dtype=np.int8), f"{name}_dw_zero_point")
        out.graph.initializer.extend([weight, scale, zero])
        wdq = helper.make_node("DequantizeLinear", [weight.name, scale.name, zero.name], [f"{name}_dw_w"],
                               name=f"{name}_dw_DQ")
        conv = helper.make_node("Conv", [pool.input[0], f"{name}_dw_w"], list(pool.output), name=f"{name}_dw",
                                group=channels, kernel_shape=kernel, strides=strides, pads=pads)
        index = list(out.graph.node).index(pool)
        out.graph.node.remove(pool)
        out.graph.node.insert(index, conv)
        out.graph.node.insert(index, wdq)
        replaced += 1
    if replaced:
        log.debug("average pools on a grid as depthwise convolutions: %d", replaced)
    return finalize(out) if replaced else out


def cpu_int8_graph(model: onnx.ModelProto, ranges: Mapping[str, float] | None = None,
                   signed_weights: bool | None = None, fast_pools: bool = False) -> onnx.ModelProto:
    """The CPU engine's INT8 graph: the temporal shifts in the convolutions' layout
    (:func:`~edgefuse.backends.ort.layout.drop_unit_batch`), the calibrated grid on ONNX Runtime's
    u8 x s8 kernels, every exact move that lets a convolution run in integers, and (with
    ``ranges``) the convolutions no QuantizeLinear follows and GSF's gating quantized on their calibrated grids.
    ``signed_weights``: int8 weights (u8 x s8 kernels) or uint8 (u8 x u8); None: int8 where the u8 x s8
    kernels are exact on this CPU (:func:`exact_u8s8`). ``fast_pools``: average pools on a grid as depthwise
    integer convolutions (:func:`pools_as_depthwise`)."""
    if signed_weights is None:
        signed_weights = u8s8_exact_here()
    out = hoist_quantize(activations_to_uint8(drop_unit_batch(model)))
    if ranges:
        out = hoist_quantize(gated_ops_on_grid(quantize_conv_outputs(out, ranges), ranges))
    out = fold_weight_quantization(out)
    if fast_pools:
        out = pools_as_depthwise(out)
    return out if signed_weights else weights_to_uint8(out)


def u8s8_exact_here() -> bool:
    """:func:`exact_u8s8` for this machine's CPU."""
    from edgefuse.backends.ort.cpu import cpu_identity

    ident = cpu_identity()
    isa = ident["isa"]
    return exact_u8s8(isa if isinstance(isa, list) else [], str(ident["machine"]))
