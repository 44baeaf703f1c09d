"""``edgefuse inspect model.onnx``: ops, params, MACs, dynamic dimensions, metadata, TensorRT verdicts."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.export import hygiene
from edgefuse.export.metadata import read_metadata

_COMPUTE = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul")


def load_onnx(path: str | Path) -> onnx.ModelProto:
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such ONNX file; check the path")
    try:
        return onnx.load(str(p))
    except Exception as e:  # protobuf DecodeError and friends
        raise EdgefuseError(f"{p}: not a readable ONNX model ({type(e).__name__}: {str(e)[:120]}); re-export it") from None


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in vi.type.tensor_type.shape.dim]


def _concrete_inputs(model: onnx.ModelProto, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    ranges = meta.get("dynamic_ranges") or {}
    feeds = {}
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d if isinstance(d, int) and d > 0 else int((ranges.get(str(d)) or [1, 1, 1])[1]) for d in _dims(vi)]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating) else np.zeros(shape, dtype)
    return feeds


def graph_macs(model: onnx.ModelProto, meta: dict[str, Any] | None = None) -> tuple[int, dict[str, int]]:
    """MACs of one run at the optimal shape, in total and by op type (see :func:`node_macs`)."""
    ops = {n.name: n.op_type for n in model.graph.node}
    by_op: Counter[str] = Counter()
    for name, macs in node_macs(model, meta).items():
        by_op[ops[name]] += macs
    return sum(by_op.values()), dict(by_op)


def run_exposed(model: onnx.ModelProto, meta: dict[str, Any], names: list[str],
                threads: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(feeds, {name: value}) of one ONNX Runtime run at the optimal shape with ``names`` exposed as outputs."""
    from edgefuse.export.parity import ort_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    feeds = _concrete_inputs(model, meta)
    sess = ort_session(probe, threads=threads)
    return feeds, dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def macs_of_node(node: onnx.NodeProto, shape: Mapping[str, Sequence[int]]) -> int:
    """MACs of one compute node given tensor shapes: a Conv's bias is one MAC per output, a Gemm's C is
    not counted, ConvTranspose is input elements x (C_out / groups x kernel); other ops 0."""
    op = node.op_type
    if op not in _COMPUTE:
        return 0
    out = int(np.prod(shape.get(node.output[0], [0])))
    if op in ("Conv", "ConvInteger"):
        w = shape.get(node.input[1], [])
        bias = 1 if op == "Conv" and len(node.input) > 2 and node.input[2] else 0
        return out * (int(np.prod(w[1:])) + bias) if len(w) else 0
    if op == "QLinearConv":
        w = shape.get(node.input[3], [])
        return out * int(np.prod(w[1:])) if len(w) else 0
    if op == "ConvTranspose":
        w = shape.get(node.input[1], [])
        return int(np.prod(shape.get(node.input[0], [0]))) * int(np.prod(w[1:])) if len(w) else 0
    if op == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        a = shape.get(node.input[0], [0, 0])
        return out * int(a[0] if trans_a else a[-1])
    a = shape.get(node.input[0], [0])  # MatMul family: K is the last dim of A
    return out * int(a[-1]) if len(a) else 0


def node_macs(model: onnx.ModelProto, meta: dict[str, Any] | None = None) -> dict[str, int]:
    """MACs of each compute node (Conv, Gemm, MatMul and their quantized forms) in one run at
    the optimal shape, measured by running the graph once in ONNX Runtime with every compute
    node's inputs and outputs exposed (shapes are then exact for static and dynamic graphs alike)."""
    meta = meta if meta is not None else read_metadata(model)
    existing = {o.name for o in model.graph.output}
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    wanted: list[str] = []
    for n in model.graph.node:
        if n.op_type in _COMPUTE:
            for name in [n.input[0], n.output[0], n.input[1]]:
                if name and name not in inits and name not in existing and name not in wanted:
                    wanted.append(name)
    _, outs = run_exposed(model, meta, wanted)
    shape: dict[str, Sequence[int]] = {k: list(v.shape) for k, v in outs.items()}
    shape.update(inits)
    return {n.name: macs_of_node(n, shape) for n in model.graph.node if n.op_type in _COMPUTE}


def inspect_onnx(path: str | Path, with_macs: bool = True) -> dict[str, Any]:
    model = load_onnx(path)
    meta = read_metadata(model)
    inits = {i.name for i in model.graph.initializer}
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    report: dict[str, Any] = {
        "path": str(path),
        "opset": hygiene.opset_of(model),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [{"name": vi.name, "dims": _dims(vi)} for vi in model.graph.input if vi.name not in inits],
        "outputs": [{"name": vi.name, "dims": _dims(vi)} for vi in model.graph.output],
        "nodes": len(model.graph.node),
        "ops": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "params": params,
        "metadata": meta,
    }
    dyn = sorted({d for io in report["inputs"] + report["outputs"] for d in io["dims"] if isinstance(d, str)})
    report["dynamic_dims"] = {d: (meta.get("dynamic_ranges") or {}).get(d) for d in dyn}
    if with_macs:
        total, by_op = graph_macs(model, meta)
        report["macs"] = {"total": total, "by_op": by_op, "at": "optimal shape" if dyn else "static shape"}
    report["hygiene"] = hygiene.check(model).to_dict()
    return report
