"""Explicit quantization (Q/DQ) against one TensorRT version's rules.

TensorRT reads ONNX QuantizeLinear / DequantizeLinear since 8.0, but what it accepts moved
between releases (the ``qdq`` entry of each version in ``data/trt_onnx_ops.json``, with the
parser source and ``NvInfer.h`` it was read from):

- 8.0-8.6 need the zero-point input (3 inputs); 10.x takes 2 and assumes INT8;
- 8.0 rejects an ``axis`` attribute on a per-tensor Q/DQ (8.2 reads and ignores it);
- Q input / DQ output: FP32 only on 8.0-8.4, FP16 from 8.5, BF16 from 10.0;
- quantized types: INT8 on 8.x, FP8 and INT4 from 10.0, FP4 from 10.8;
- weights: FP32 weights behind a Q/DQ pair on every version; a DequantizeLinear straight on a
  quantized (INT8/INT4/FP8) initializer is documented from 10.0 only;
- every version: zero points 0 (symmetric), per-channel scales only on weights (an
  initializer), the per-channel ``axis`` needs opset 13 (ONNX added it there).

One version-independent note: a residual ``Add`` fed by a quantized Conv whose other (identity)
input has no Q/DQ keeps the Add out of the Conv's INT8 epilogue (TensorRT's Q/DQ placement
recommendations); ``edgefuse calibrate`` puts the Q/DQ on the identity input.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import TensorProto, numpy_helper

from edgefuse.graph.query import producers

_QUANTIZED: dict[int, str] = {TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8", TensorProto.INT4: "INT4",
              TensorProto.UINT4: "UINT4", TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT4E2M1: "FP4"}
_FLOAT: dict[int, str] = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16"}


@dataclass(frozen=True)
class QdqNode:
    """What the rules need to know of one QuantizeLinear / DequantizeLinear."""
    name: str
    op: str  # QuantizeLinear | DequantizeLinear
    inputs: int
    zero_type: str | None  # quantized type named by the zero point (None: no zero point)
    zero_nonzero: bool
    scale_type: str  # FP32 | FP16 | BF16 | ? (the Q input / DQ output type)
    scale_size: int  # 1 per tensor, else per channel (or blocked)
    scale_rank: int
    has_axis: bool
    on_weight: bool  # input 0 is an initializer (or a Q of one)
    prequantized: bool  # a DequantizeLinear straight on a quantized initializer


def qdq_nodes(model: onnx.ModelProto) -> list[QdqNode]:
    consts: dict[str, onnx.TensorProto] = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    producer = producers(model)
    out = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.domain not in ("", "ai.onnx"):
            continue
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        zero = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        src = n.input[0]
        if src not in consts and producer.get(src) is not None and producer[src].op_type == "QuantizeLinear":
            src = producer[src].input[0]
        prequantized = n.op_type == "DequantizeLinear" and n.input[0] in consts
        out.append(QdqNode(
            name=n.name or n.output[0], op=n.op_type, inputs=sum(1 for i in n.input if i),
            zero_type=_QUANTIZED.get(zero.data_type, "?") if zero is not None else None,
            zero_nonzero=bool(zero is not None and numpy_helper.to_array(zero).astype("float64").any()),
            scale_type=_FLOAT.get(scale.data_type, "?") if scale is not None else "?",
            scale_size=max(1, int(_volume(scale.dims))) if scale is not None else 1,
            scale_rank=len(scale.dims) if scale is not None else 0,
            has_axis=any(a.name == "axis" for a in n.attribute), on_weight=src in consts, prequantized=prequantized))
    return out


def _volume(dims: Any) -> int:
    v = 1
    for d in dims:
        v *= int(d)
    return v


def residual_adds_without_qdq(model: onnx.ModelProto) -> list[str]:
    """Adds with one input straight from a quantized Conv (activation through a DequantizeLinear) and the other
    input not through a DequantizeLinear: TensorRT cannot fuse them into the Conv's INT8 epilogue."""
    producer = producers(model)

    def quantized_conv(t: str) -> bool:
        p = producer.get(t)
        return p is not None and p.op_type == "Conv" and getattr(producer.get(p.input[0]), "op_type", "") == "DequantizeLinear"

    found = []
    for n in model.graph.node:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        a, b = n.input
        for conv, other in ((a, b), (b, a)):
            p = producer.get(other)
            if quantized_conv(conv) and p is not None and p.op_type not in ("DequantizeLinear", "Conv"):
                found.append(n.name or n.output[0])
                break
    return found


def qdq_problems(model: onnx.ModelProto, rules: Mapping[str, Any], opset: int) -> tuple[list[str], list[str]]:
    """(problems, notes) of ``model``'s Q/DQ nodes (at ``opset``) under one version's ``rules`` (none without Q/DQ)."""
    nodes = qdq_nodes(model)
    if not nodes or not rules:
        return [], []
    found: dict[str, list[str]] = {}

    def add(key: str, node: QdqNode) -> None:
        found.setdefault(key, []).append(node.name)

    floats, types = set(rules.get("float_types", ())), set(rules.get("quantized_types", ()))
    for q in nodes:
        qtype = q.zero_type or "INT8"
        if q.inputs < 3 and rules.get("zero_point_required"):
            add("Q/DQ without the zero-point input: this TensorRT needs all 3 inputs; add an INT8 zero point of 0", q)
        if q.zero_nonzero:
            add("Q/DQ with a nonzero zero point: TensorRT quantizes symmetrically only; use zero points of 0", q)
        if qtype == "UINT8":
            if rules.get("uint8_zero_point") != "converted_to_int8":
                add("UINT8 Q/DQ: this TensorRT quantizes to signed INT8 only; quantize with QInt8 (INT8 zero points)", q)
        elif qtype not in types:
            add(f"{qtype} Q/DQ: this TensorRT quantizes to {'/'.join(sorted(types))} only", q)
        if q.scale_type not in floats and q.scale_type != "?":
            add(f"{q.scale_type} Q/DQ scale (the Q input / DQ output type): this TensorRT takes "
                f"{'/'.join(rules['float_types'])} only; keep Q/DQ in FP32", q)
        if q.scale_size == 1 and q.has_axis and rules.get("per_tensor_axis_rejected"):
            add("per-tensor Q/DQ with an `axis` attribute: TensorRT 8.0 rejects it; drop `axis` where the scale is a scalar", q)
        if q.scale_size > 1 and not q.on_weight:
            add("per-channel Q/DQ on an activation: TensorRT scales activations per tensor only", q)
        if q.scale_size > 1 and opset < 13:
            add(f"per-channel Q/DQ at opset {opset}: the `axis` attribute needs opset >= 13", q)
        if q.scale_rank > 1 and q.scale_size > 1 and not rules.get("blocked"):
            add("blocked Q/DQ scales: not before TensorRT 10.0", q)
        if q.prequantized and not rules.get("prequantized_weights"):
            add("DequantizeLinear on a quantized initializer (pre-quantized weights): write FP32 weights with a "
                "Q/DQ pair for this TensorRT (edgefuse calibrate does)", q)
    problems = [f"{k} ({len(v)} node{'s' if len(v) > 1 else ''}, e.g. {v[0]!r})" for k, v in found.items()]
    notes = []
    if any(q.zero_type == "UINT8" for q in nodes) and rules.get("uint8_zero_point") == "converted_to_int8":
        notes.append("UINT8 Q/DQ: TensorRT 10+ warns and quantizes to INT8 instead (values above 127 steps clip); "
                     "quantize with QInt8")
    adds = residual_adds_without_qdq(model)
    if adds:
        notes.append(f"{len(adds)} residual Add(s) (e.g. {adds[0]!r}) take a quantized Conv's output with no Q/DQ on "
                     "the other input: TensorRT keeps the Add out of the INT8 Conv; put a Q/DQ on the identity input")
    return problems, notes
