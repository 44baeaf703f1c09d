"""Explicit INT8: symmetric Q/DQ placed the way TensorRT fuses it, inserted by ONNX Runtime's
quantization tools, plus the one pass they lack (Q/DQ on residual inputs).

Placement (TensorRT's "Q/DQ layer-placement recommendations"):

* Q/DQ on the activation input of every quantized Conv / Gemm / MatMul and a Q/DQ pair on its
  FP32 weight, per output channel (TensorRT folds the weight pair into INT8 weights); no Q/DQ on
  their outputs and none on the bias (TensorRT quantizes the bias itself);
* residual ``Add``: when one input comes straight from a quantized Conv, the other input (the
  identity branch) gets a Q/DQ so TensorRT can fuse the Add into that Conv as an INT8
  element-wise epilogue.

Zero points are 0 and ranges symmetric (amax / 127), as TensorRT requires.
"""
from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import producers

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
           "DynamicQuantizeLinear")


def is_quantized(model: onnx.ModelProto) -> bool:
    """True when the graph already holds quantization ops or 8-bit / FP16 float initializers."""
    if any(n.op_type in QDQ_OPS for n in model.graph.node):
        return True
    low = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT16)
    return any(i.data_type in low and len(i.dims) > 1 for i in model.graph.initializer)


def initializer_names(model: onnx.ModelProto) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return names


def candidate_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv / Gemm / MatMul nodes whose second input is a constant weight (the layers INT8 can take)."""
    consts = initializer_names(model)
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in consts
            and n.input[0] not in consts]


def match_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_nodes(model: onnx.ModelProto, exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    """(node names to quantize, candidate node names excluded by a pattern)."""
    chosen: list[str] = []
    excluded: list[str] = []
    for n in candidate_nodes(model):
        (excluded if match_any(n.name, exclude) else chosen).append(n.name)
    return chosen, excluded


def residual_adds(model: onnx.ModelProto, quantized: Iterable[str]) -> list[tuple[str, str]]:
    """(Add node name, identity input tensor) for Adds fed by one quantized Conv and one other
    tensor; the identity input is what gets a Q/DQ so TensorRT can fuse the Add into the Conv."""
    q = set(quantized)
    producer = producers(model)
    consts = initializer_names(model)
    out = []
    for n in model.graph.node:
        if n.op_type != "Add" or len(n.input) != 2 or any(i in consts for i in n.input):
            continue
        from_conv = [producer.get(i) is not None and producer[i].op_type == "Conv" and producer[i].name in q
                     for i in n.input]
        if sum(from_conv) == 1:
            out.append((n.name, n.input[from_conv.index(False)]))
    return out


# ops that only move or select elements: a Q after them can use the grid of their input
DATA_MOVEMENT = ("Reshape", "Slice", "Concat", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def data_source(model: onnx.ModelProto) -> Callable[[str], str | None]:
    """tensor -> the tensor it is moved or selected from (through the temporal shift's Reshape / Slice / Concat with
    zero padding: its constant inputs are not data), itself when no data movement produced it, None when a Concat
    joins tensors from more than one source."""
    producer = producers(model)
    consts = initializer_names(model)

    def source(tensor: str) -> str | None:
        node = producer.get(tensor)
        if node is None or node.op_type not in DATA_MOVEMENT:
            return tensor
        data = [i for i in (node.input if node.op_type == "Concat" else node.input[:1]) if i and i not in consts]
        roots = {source(i) for i in data}
        return roots.pop() if len(roots) == 1 else None

    return source


def tie_data_movement(model: onnx.ModelProto, amax: Mapping[str, float]) -> dict[str, float]:
    """``amax`` with every tensor that is its source moved or selected (the temporal shift's Reshape /
    Slice / Concat with zero padding) on its source's threshold: the same grid before and after, so
    TensorRT and the CPU engine move the integers instead of requantizing them."""
    source = data_source(model)
    out = dict(amax)
    for tensor in amax:
        root = source(tensor)
        if root is not None and root != tensor and root in amax:
            out[tensor] = amax[root]
    return out


GATES = ("Tanh", "Sigmoid")  # bounded activations that scale other tensors elementwise


@dataclass(frozen=True)
class GatedGrids:
    """Where a CPU engine can run a gating block (GSF's gate, shift and fusion) on integer grids.

    A *gate* is a Tanh or Sigmoid output, or a constant minus a gate (``1 - g``), seen through data movement. A
    *gated product* is a Mul of a gate and an activation; a *gated sum* an Add of two gated products; a *gated pool* a
    GlobalAveragePool of a gated product. ONNX Runtime runs each as QLinearMul / QLinearAdd /
    QLinearGlobalAveragePool when every input comes from a DequantizeLinear and a QuantizeLinear follows, so these are
    the places a Q/DQ pair goes; moving the integers through the shift and the channel shuffle is then exact.

    ``inputs``: (node name, input index, tensor whose range is the grid); ``outputs``: (tensor, tensor whose range is
    the grid). A gated sum's output takes the grid of the tensor its data movement leads to (GSF: both groups' sums
    meet in one channel shuffle), and that tensor's reader gets a Q/DQ on it too, so the shuffle moves integers.
    ``batchnorms``: BatchNormalization nodes reading that tensor (GSF sits before a ResNet block's last BatchNorm):
    a per-channel affine map, which a CPU engine can run as a depthwise integer convolution whose output (also in
    ``outputs``) goes on its own grid, so the residual Add after it runs in integers too.
    The gate's own convolutions stay FP32: run in integers (weights int8 per output channel, the BatchNorm -> ReLU
    before them a depthwise integer convolution) they cost the zoo GSF 4.7 ms more and saved GSF-R50 about 30 of
    933 ms on ONNX Runtime's CPU kernels (a grouped 1x1 and a grouped 3x3 with one output per group), so they were
    dropped (docs/gsf_int8.md)."""

    inputs: tuple[tuple[str, int, str], ...]
    outputs: tuple[tuple[str, str], ...]
    batchnorms: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()  # the gate tensors among the grids (bounded: their grid is their full range)

    @property
    def tensors(self) -> list[str]:
        """Every tensor whose calibrated range a grid needs."""
        return list(dict.fromkeys([t for _, _, t in self.inputs] + [g for _, g in self.outputs]))


def gated_grids(model: onnx.ModelProto) -> GatedGrids:
    """The :class:`GatedGrids` of ``model`` (empty for graphs without gating blocks)."""
    from edgefuse.graph.query import consumers as consumers_of

    producer, consts, source = producers(model), initializer_names(model), data_source(model)
    readers = consumers_of(model)

    def root(tensor: str) -> str:  # the tensor's source, or itself where several meet
        return source(tensor) or tensor

    def is_gate(tensor: str) -> bool:
        node = producer.get(root(tensor))
        if node is None:
            return False
        if node.op_type in GATES:
            return True
        return node.op_type == "Sub" and node.input[0] in consts and is_gate(node.input[1])

    products = {n.output[0]: n for n in model.graph.node if n.op_type == "Mul" and len(n.input) == 2
                and not any(i in consts for i in n.input) and is_gate(n.input[0]) != is_gate(n.input[1])}
    sums = [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2
            and all(root(i) in products for i in n.input)]
    pools = [n for n in model.graph.node if n.op_type == "GlobalAveragePool" and root(n.input[0]) in products]
    inputs: list[tuple[str, int, str]] = []
    outputs: list[tuple[str, str]] = []
    for n in [*products.values(), *sums, *pools]:
        inputs += [(n.name, i, root(t)) for i, t in enumerate(n.input)]
    outputs += [(t, t) for t in products] + [(n.output[0], n.output[0]) for n in pools]
    batchnorms: list[str] = []
    for n in sums:
        sink = n.output[0]
        while len(readers.get(sink, [])) == 1 and readers[sink][0].op_type in DATA_MOVEMENT:
            sink = readers[sink][0].output[0]
        outputs.append((n.output[0], sink))
        if sink != n.output[0]:
            inputs += [(r.name, i, sink) for r in readers.get(sink, []) for i, t in enumerate(r.input) if t == sink]
            for r in readers.get(sink, []):
                if r.op_type == "BatchNormalization" and r.input[0] == sink and all(i in consts for i in r.input[1:]):
                    batchnorms.append(r.name)
                    outputs.append((r.output[0], r.output[0]))
    gates = [t for name, _, t in inputs if is_gate(t)]
    return GatedGrids(tuple(dict.fromkeys(inputs)), tuple(dict.fromkeys(outputs)), tuple(dict.fromkeys(batchnorms)),
                      tuple(dict.fromkeys(gates)))


def conv_outputs(model: onnx.ModelProto, nodes: Iterable[str]) -> list[str]:
    """Outputs of ``nodes`` that are convolutions. TensorRT needs no grid for them (it fuses what
    follows into the convolution); ONNX Runtime runs a convolution in integers only when its output
    is quantized, so the CPU engine quantizes those no QuantizeLinear follows (residual Adds, GSF's
    gating, AdaFuse's fusion) on grids calibrated for them."""
    chosen = set(nodes)
    return [n.output[0] for n in model.graph.node if n.name in chosen and n.op_type == "Conv"]


def activation_tensors(model: onnx.ModelProto, nodes: Iterable[str]) -> list[str]:
    """The activation inputs of ``nodes`` plus the identity inputs of residual Adds: every tensor
    that needs a calibrated scale."""
    by_name = {n.name: n for n in model.graph.node}
    names = [by_name[n].input[0] for n in nodes]
    names += [t for _, t in residual_adds(model, nodes)]
    return list(dict.fromkeys(names))


def quantize_int8(model: onnx.ModelProto, amax: Mapping[str, float], nodes: Sequence[str]) -> onnx.ModelProto:
    """``model`` with ``nodes`` in INT8 (Q/DQ as described in the module docstring); ``amax`` holds
    the calibrated |x| threshold of every tensor :func:`activation_tensors` names."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType

    from edgefuse.graph.passes import finalize

    needed = activation_tensors(model, nodes)
    missing = [t for t in needed if t not in amax]
    if missing:
        raise EdgefuseError(f"no calibrated range for {len(missing)} tensor(s) (e.g. {missing[0]}); "
                            "delete the statistics cache and calibrate again")
    ranges = {t: TensorData(lowest=np.float32(-amax[t]), highest=np.float32(amax[t])) for t in needed}
    inferred = onnx.shape_inference.infer_shapes(_weights_as_initializers(model, nodes))
    if not nodes:
        return finalize(inferred)
    quantizer = QDQQuantizer(
        inferred, True, False, QuantType.QInt8, QuantType.QInt8, TensorsData(CalibrationMethod.MinMax, ranges),
        list(nodes), [], list(QUANTIZED_OPS),
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                       "AddQDQPairToWeight": True, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                       "ForceQuantizeNoInputCheck": False},
    )
    with _quiet_ort_quantizer():
        out = quantizer.quantize_model()
    out = _quantize_residuals(out, model, nodes, amax)
    out = _float_inputs_for_kept(out, model, nodes)
    out = _single_channel_per_tensor(out)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return finalize(out)


def _float_inputs_for_kept(out: onnx.ModelProto, source: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """Candidate layers kept FP32 (excluded, or returned by a budget) read their activation as it was, not the
    DequantizeLinear ONNX Runtime's quantizer hands every reader of a tensor it quantizes for another layer (a
    non-local block's theta and phi share their input with its quantized g): kept FP32 is FP32 input too."""
    chosen = set(nodes)
    original = {n.name: n.input[0] for n in candidate_nodes(source) if n.name not in chosen}
    producer = producers(out)
    for n in out.graph.node:
        tensor = original.get(n.name)
        if tensor is None or not n.input or n.input[0] == tensor:
            continue
        dq = producer.get(n.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] == tensor:
            n.input[0] = tensor
    return out


def _single_channel_per_tensor(model: onnx.ModelProto) -> onnx.ModelProto:
    """The per-channel weight Q/DQ of a layer with one output channel (GSF's fusion convolutions, 2 -> 1) as what it
    is, a per-tensor Q/DQ: scalar scale and zero point, no ``axis``. TensorRT 8.0 rejects an ``axis`` on a Q/DQ whose
    scale is a single value (:mod:`edgefuse.graph.qdq_rules`); the values are the same."""
    inits = {i.name: i for i in model.graph.initializer}
    single: dict[str, onnx.TensorProto] = {}
    nodes = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or not any(a.name == "axis" for a in n.attribute):
            continue
        params = [inits.get(i) for i in n.input[1:3] if i]
        if params and all(t is not None and list(t.dims) == [1] for t in params):
            nodes.append(n)
            single.update((t.name, t) for t in params if t is not None)
    for t in single.values():  # shared by a Q and its DQ: reshaped once
        del t.dims[:]  # (1,) -> (): the one value stays where it is
    for n in nodes:
        keep = [a for a in n.attribute if a.name != "axis"]
        del n.attribute[:]
        n.attribute.extend(keep)
    return model


def _weights_as_initializers(model: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """``model`` (a copy) with the weights of ``nodes`` that export left as Constant nodes (a buffer, e.g. GSF's
    fixed one-hot tap-sum kernel) turned into initializers of the same name: ONNX Runtime's quantizer reads weights
    from initializers only and otherwise asks for a calibrated range of the weight."""
    chosen = set(nodes)
    weights = {i for n in model.graph.node if n.name in chosen for i in n.input[1:]}
    constants = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in weights
                 and any(a.name == "value" for a in n.attribute)]
    if not constants:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    lifted = {n.output[0] for n in constants}
    keep = [n for n in out.graph.node if not (n.op_type == "Constant" and n.output[0] in lifted)]
    for n in constants:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(next(a.t for a in n.attribute if a.name == "value"))
        tensor.name = n.output[0]
        out.graph.initializer.append(tensor)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


class _BelowWarningFrom(logging.Filter):
    """Drops records under WARNING whose source file is in ``folder``."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self.folder)


@contextmanager
def _quiet_ort_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs every bias copy at INFO straight on the root logger: while it runs,
    a filter on the root logger drops those (records from its own files, under WARNING). A logger's
    filters see only the records made on that logger, so every other logger, level and handler is left
    as it is."""
    import onnxruntime.quantization as ortq

    quiet = _BelowWarningFrom(os.path.dirname(os.path.abspath(ortq.__file__)))
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def symmetric_scale(amax: float) -> np.float32:
    """The int8 scale of a symmetric range, computed as ONNX Runtime's quantizer computes it (float32
    arithmetic), so a tensor tied to another's range gets bit-for-bit the same scale."""
    from onnxruntime.quantization.quant_utils import QuantType, compute_scale_zp, get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(QuantType.QInt8.tensor_type, symmetric=True)
    a = np.float32(amax)
    return np.float32(compute_scale_zp(-a, a, qmin, qmax, symmetric=True)[1])


def _qdq_pair(tensor: str, amax: float, suffix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    scale = numpy_helper.from_array(np.array(symmetric_scale(amax), dtype=np.float32), f"{tensor}{suffix}_scale")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int8), f"{tensor}{suffix}_zero_point")
    q_out, dq_out = f"{tensor}{suffix}_q", f"{tensor}{suffix}_dq"
    nodes = [helper.make_node("QuantizeLinear", [tensor, scale.name, zero.name], [q_out], name=f"{tensor}{suffix}_Q"),
             helper.make_node("DequantizeLinear", [q_out, scale.name, zero.name], [dq_out],
                              name=f"{tensor}{suffix}_DQ")]
    return nodes, [scale, zero], dq_out


def _quantize_residuals(out: onnx.ModelProto, source: onnx.ModelProto, nodes: Sequence[str],
                        amax: Mapping[str, float]) -> onnx.ModelProto:
    """Give each residual Add's identity input a Q/DQ (reusing one already on that tensor)."""
    existing = {n.input[0]: n.output[0] for n in out.graph.node if n.op_type == "QuantizeLinear"}
    dq_of_q = {n.input[0]: n.output[0] for n in out.graph.node if n.op_type == "DequantizeLinear"}
    by_name = {n.name: n for n in out.graph.node}
    for add_name, tensor in residual_adds(source, nodes):
        add = by_name.get(add_name)
        if add is None:
            continue
        if tensor in existing and existing[tensor] in dq_of_q:
            dq_out = dq_of_q[existing[tensor]]
        else:
            new_nodes, inits, dq_out = _qdq_pair(tensor, amax[tensor], "_residual")
            out.graph.node.extend(new_nodes)
            out.graph.initializer.extend(inits)
            existing[tensor] = new_nodes[0].output[0]
            dq_of_q[new_nodes[0].output[0]] = dq_out
        for i, name in enumerate(add.input):
            if name == tensor:
                add.input[i] = dq_out
    return out


def quantized_node_names(model: onnx.ModelProto) -> list[str]:
    """Conv / Gemm / MatMul nodes of a Q/DQ graph whose activation input comes from a DequantizeLinear."""
    producer = producers(model)
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input
            and producer.get(n.input[0]) is not None and producer[n.input[0]].op_type == "DequantizeLinear"]


def activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """tensor -> scale of every activation QuantizeLinear in a Q/DQ graph (weights excluded)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[1] in inits:
            scale = numpy_helper.to_array(inits[n.input[1]])
            if scale.size == 1:
                out[n.input[0]] = float(scale.reshape(()))
    return out
