"""Layer costs: MACs, bytes moved and precision of every node, with the fusions engines make modelled."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.estimate.result import LayerCost
from edgefuse.graph.metadata import read_metadata
from edgefuse.graph.query import initializer_names, macs_of_node, run_exposed

NATIVE_INT8_OPS = ("ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul")
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")  # metadata only: no kernel
SHAPE_OPS = ("Shape", "Size")  # their outputs are known when the engine is built (or computed on the host)
EPILOGUE_HOSTS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul")
ORT_NEEDS_OUTPUT_Q = ("Conv", "Gemm")  # ONNX Runtime CPU: Q/DQ forms that stay float without a quantized output
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
               "Softplus", "Gelu", "BatchNormalization")
_RANDOM = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")


def _dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):  # undefined element type
        return np.dtype(object)


def _probe(model: onnx.ModelProto, meta: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and element type of every tensor of the main graph, from one ONNX Runtime run with all exposed."""
    inits = initializer_names(model)
    names = list(dict.fromkeys(o for n in model.graph.node for o in n.output if o and o not in inits))
    try:
        feeds, outs = run_exposed(model, meta, names, threads=1)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own untyped errors
        raise EdgefuseError(f"ONNX Runtime cannot run the graph to measure its tensors ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]}); check it with 'edgefuse inspect'") from None
    info: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for i in model.graph.initializer:
        info[i.name] = (tuple(int(d) for d in i.dims), _dtype(i.data_type))
    for name, arr in feeds.items():
        info[name] = (tuple(arr.shape), arr.dtype)
    for name, v in outs.items():
        if isinstance(v, np.ndarray):
            info[name] = (tuple(v.shape), v.dtype)
    return info


def _size(dtype: np.dtype | None) -> int:
    return 0 if dtype is None or dtype == np.dtype(object) else int(dtype.itemsize)


def layer_costs(model: onnx.ModelProto, meta: dict[str, Any] | None = None, fuse: bool = True,
                runtime: str = "tensorrt") -> list[LayerCost]:
    """MACs, bytes and precision of every node of ``model``'s main graph, in graph order.

    Shapes and element types come from one ONNX Runtime run at the optimal shape (``meta['dynamic_ranges']``, as
    ``edgefuse inspect`` does) with every tensor exposed. Bytes are inputs + weights + outputs, each tensor once per
    node, at its element size (int8 1, fp16 2, fp32 4 bytes). With ``fuse`` (what TensorRT and ONNX Runtime do with
    a Q/DQ graph) a tensor a DequantizeLinear reads, and one only QuantizeLinear nodes read, are counted at their 8-bit
    size: the INT8 kernels read and write 8-bit tensors; ``fuse=False`` counts every tensor at its own type.

    Precision: ``int8`` for the quantized operators and for a node whose activation input comes from a
    DequantizeLinear (through reshapes); ``fp16`` when its output is float16; else ``fp32``. That is how TensorRT
    runs a Q/DQ graph (``runtime="tensorrt"``). ``runtime="onnxruntime"`` (with ``fuse``) follows ONNX Runtime's CPU
    provider instead, which runs a Q/DQ Conv or Gemm in int8 only when its output goes straight to a QuantizeLinear
    (or through a Relu that QuantizeLinear's zero point makes redundant; checked with ONNX Runtime 1.32): otherwise
    the layer is ``fp32`` and its DequantizeLinear nodes are kernels of their own.
    """
    if runtime not in ("tensorrt", "onnxruntime"):
        raise EdgefuseError(f"runtime must be tensorrt or onnxruntime, not {runtime!r}")
    meta = meta if meta is not None else read_metadata(model)
    info = _probe(model, meta)
    shape = {k: v[0] for k, v in info.items()}
    nodes = list(model.graph.node)
    names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(nodes)]
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
        for t in dict.fromkeys(x for x in n.input if x):
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}

    # constants: initializers, and whatever is computed from constants and shapes only
    const = {i.name for i in model.graph.initializer} - {vi.name for vi in model.graph.input}
    folded: set[int] = set()
    for i, n in enumerate(nodes):
        ins = [x for x in n.input if x]
        if n.op_type in SHAPE_OPS or (n.op_type not in _RANDOM and all(x in const for x in ins)):
            folded.add(i)
            const.update(o for o in n.output if o)

    def source(t: str) -> int | None:
        """The node that really produces ``t``, looking through views."""
        i = producer.get(t)
        while i is not None and nodes[i].op_type in VIEW_OPS and nodes[i].input and nodes[i].input[0]:
            i = producer.get(nodes[i].input[0])
        return i

    def from_dq(t: str) -> int | None:
        i = source(t)
        return i if i is not None and nodes[i].op_type == "DequantizeLinear" and i not in folded else None

    inits = {i.name: i for i in model.graph.initializer}

    def zero_point_at_min(q: onnx.NodeProto) -> bool:
        """A QuantizeLinear whose zero point is its type's lowest value (uint8 0, int8 -128): a Relu before it
        changes nothing (ONNX Runtime's ReluQuantFusion drops it)."""
        if len(q.input) < 3 or not q.input[2]:
            return True  # uint8, zero point 0
        zp = inits.get(q.input[2])
        if zp is None:
            return False
        v = onnx.numpy_helper.to_array(zp)
        return bool(np.issubdtype(v.dtype, np.integer) and (v == np.iinfo(v.dtype).min).all())

    def quantized_output(t: str) -> bool:
        """ONNX Runtime's QDQ Conv / Gemm fusion: the output goes straight to QuantizeLinear (or through a Relu it
        drops)."""
        users = consumers.get(t, [])
        if t in graph_outputs or not users:
            return False
        for c in users:
            if nodes[c].op_type == "QuantizeLinear":
                continue
            r = nodes[c].output[0] if nodes[c].op_type == "Relu" else None
            if r and r not in graph_outputs and consumers.get(r) and all(
                    nodes[q].op_type == "QuantizeLinear" and zero_point_at_min(nodes[q]) for q in consumers[r]):
                continue
            return False
        return True

    # fusion of Q/DQ nodes, views and epilogues
    fused: dict[int, str] = {i: "constant" for i in folded}
    host: dict[int, int] = {}
    demoted: set[int] = set()  # ONNX Runtime: Q/DQ layers it runs in float
    if fuse:
        for i, n in enumerate(nodes):
            if i in fused:
                continue
            outs = [o for o in n.output if o]
            if n.op_type in VIEW_OPS:
                fused[i] = "view"
            elif n.op_type == "DequantizeLinear" and not any(o in graph_outputs for o in outs) \
                    and all(consumers.get(o) for o in outs):
                fused[i] = "qdq"
        for i, n in enumerate(nodes):  # epilogues, in graph order so chains (Conv -> Add -> Relu) collapse
            if i in fused:
                continue
            acts = [x for x in n.input if x and x not in const]
            if n.op_type in ACTIVATIONS or n.op_type == "Add" or (n.op_type in ("Mul", "Div", "Sub") and len(acts) == 1):
                for x in acts:
                    p = producer.get(x)
                    if p is None or x in graph_outputs or consumers.get(x) != [i]:
                        continue
                    root = host.get(p, p) if fused.get(p) == "epilogue" else p
                    if nodes[root].op_type in EPILOGUE_HOSTS and root not in fused:
                        fused[i], host[i] = "epilogue", root
                        break
        if runtime == "onnxruntime":
            # ONNX Runtime's CPU provider makes a Q/DQ Conv or Gemm a QLinearConv / QGemm only when its output is
            # quantized straight away; otherwise it runs the float op on dequantized tensors, its DequantizeLinear nodes
            # (weights included: they are not constant-folded) as kernels of their own. A Q/DQ MatMul becomes
            # MatMulIntegerToFloat either way.
            for i, n in enumerate(nodes):
                if n.op_type not in ORT_NEEDS_OUTPUT_Q or i in fused:
                    continue
                dqs = [d for d in (source(x) for x in n.input[:2] if x)
                       if d is not None and nodes[d].op_type == "DequantizeLinear"]
                if not any(d not in folded for d in dqs):
                    continue  # not a Q/DQ layer
                if quantized_output(n.output[0]):
                    continue  # QLinearConv / QGemm
                demoted.add(i)
                for d in dqs:
                    fused.pop(d, None)
        for i, n in enumerate(nodes):  # a QuantizeLinear read only by DequantizeLinear nodes: its producer
            # writes 8-bit (TensorRT: any kernel; ONNX Runtime: an int8 QLinearConv / QGemm / QLinearMatMul). A
            # QuantizeLinear of a graph input is a kernel of its own.
            if n.op_type != "QuantizeLinear" or i in fused or n.output[0] in graph_outputs:
                continue
            src = source(n.input[0])
            if src is None or not consumers.get(n.output[0]) or \
                    not all(nodes[c].op_type == "DequantizeLinear" for c in consumers[n.output[0]]):
                continue
            if runtime == "onnxruntime":
                root = host.get(src, src)
                if nodes[root].op_type not in EPILOGUE_HOSTS or root in demoted or \
                        not any(from_dq(x) is not None for x in nodes[root].input[:1] if x):
                    continue
            fused[i] = "qdq"

    def stored_size(t: str) -> int:
        """Element size ``t`` is stored at: its own, or 8-bit for the tensors fused Q/DQ nodes read and write."""
        seen = 0
        while fuse and seen < 64:
            seen += 1
            i = producer.get(t)
            if i is not None and nodes[i].op_type in VIEW_OPS + ("DequantizeLinear",) and fused.get(i) in (
                    "view", "qdq", "constant") and nodes[i].input:
                t = nodes[i].input[0]  # a view aliases its input; a fused DQ's reader reads the 8-bit tensor
                continue
            q = quantized_size(t)
            if q is not None:
                return q
            break
        return _size(info.get(t, ((), None))[1])

    def quantized_size(t: str, depth: int = 0) -> int | None:
        """The 8-bit size ``t`` is stored at when only fused QuantizeLinear nodes read it, or (TensorRT) only MaxPool
        nodes whose outputs only those read: TensorRT moves a Q across a MaxPool (they commute), so the producer
        writes 8-bit and the pool runs on 8-bit data."""
        users = consumers.get(t, [])
        if not users or t in graph_outputs or depth > 8:
            return None
        if all(nodes[c].op_type == "QuantizeLinear" and fused.get(c) == "qdq" for c in users):
            return _size(info.get(nodes[users[0]].output[0], ((), np.dtype(np.int8)))[1])
        if runtime == "tensorrt" and all(nodes[c].op_type == "MaxPool" and c not in fused and len(nodes[c].output) == 1
                                         for c in users):
            sizes = {quantized_size(nodes[c].output[0], depth + 1) for c in users}
            if len(sizes) == 1 and None not in sizes:
                return sizes.pop()
        return None

    def nbytes(t: str) -> int:
        shp = shape.get(t)
        return 0 if shp is None else int(np.prod(shp)) * stored_size(t)

    costs = []
    for i, n in enumerate(nodes):
        ins = list(dict.fromkeys(x for x in n.input if x))
        outs = list(dict.fromkeys(o for o in n.output if o))
        dq = [d for d in (from_dq(x) for x in ins if x not in const) if d is not None]
        act_name = None
        if n.op_type in NATIVE_INT8_OPS or (dq and i not in demoted):
            precision = "int8"
            a = n.input[0] if n.op_type in NATIVE_INT8_OPS else nodes[dq[0]].input[0]
            act_name = "uint8" if info.get(a, ((), None))[1] == np.dtype(np.uint8) else "int8"
        elif outs and info.get(outs[0], ((), None))[1] == np.dtype(np.float16):
            precision = "fp16"
        else:
            precision = "fp32"
        costs.append(LayerCost(
            name=names[i], op=n.op_type, precision=precision, macs=macs_of_node(n, shape),
            inputs={x: nbytes(x) for x in ins if x not in const}, weights={x: nbytes(x) for x in ins if x in const},
            outputs={o: nbytes(o) for o in outs}, fused=fused.get(i),
            fused_into=names[host[i]] if i in host else None, activation_dtype=act_name if precision == "int8" else None))
    return costs
