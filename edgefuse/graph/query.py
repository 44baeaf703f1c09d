"""Graph queries: producers, consumers, input dims, float tensors, MACs, a run with tensors exposed."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.metadata import read_metadata

COMPUTE_OPS = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger",
               "QLinearMatMul")


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that produces it."""
    return {o: n for n in model.graph.node for o in n.output if o}


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it, in graph order."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's real inputs (initializers listed as inputs left out)."""
    consts = initializer_names(model)
    return [vi for vi in model.graph.input if vi.name not in consts]


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with ``names`` added as graph outputs (type left to inference); the model itself
    when there is nothing to add."""
    present = {o.name for o in model.graph.output}
    todo = [n for n in dict.fromkeys(names) if n not in present]
    if not todo:
        return model
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in todo:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return probe


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Every float tensor a node produces, plus the float graph inputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    names = [i.name for i in graph_inputs(model) if types.get(i.name) == onnx.TensorProto.FLOAT]
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        names += [o for o in n.output if o and types.get(o) == onnx.TensorProto.FLOAT]
    return list(dict.fromkeys(names))


def dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in vi.type.tensor_type.shape.dim]


def _concrete_inputs(model: onnx.ModelProto, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    ranges = meta.get("dynamic_ranges") or {}
    feeds = {}
    rng = np.random.default_rng(0)
    for vi in graph_inputs(model):
        shape = [d if isinstance(d, int) and d > 0 else int((ranges.get(str(d)) or [1, 1, 1])[1]) for d in dims(vi)]
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
    from edgefuse.graph.ort import ort_session

    probe = with_outputs(model, names)
    feeds = _concrete_inputs(model, meta)
    sess = ort_session(probe, threads=threads)
    return feeds, dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def macs_of_node(node: onnx.NodeProto, shape: Mapping[str, Sequence[int]]) -> int:
    """MACs of one compute node given tensor shapes: a Conv's bias is one MAC per output, a Gemm's C is
    not counted, ConvTranspose is input elements x (C_out / groups x kernel); other ops 0."""
    op = node.op_type
    if op not in COMPUTE_OPS:
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
        if n.op_type in COMPUTE_OPS:
            for name in [n.input[0], n.output[0], n.input[1]]:
                if name and name not in inits and name not in existing and name not in wanted:
                    wanted.append(name)
    _, outs = run_exposed(model, meta, wanted)
    shape: dict[str, Sequence[int]] = {k: list(v.shape) for k, v in outs.items()}
    shape.update(inits)
    return {n.name: macs_of_node(n, shape) for n in model.graph.node if n.op_type in COMPUTE_OPS}


def _shape_text(vi: onnx.ValueInfoProto) -> str:
    return f"{vi.name} ({', '.join(str(d) if d != '' else '?' for d in dims(vi))})"


def clip_graph_problem(model: onnx.ModelProto) -> str | None:
    """Why ``model`` is not a graph edgefuse runs (None: it is one): one input clips (N, T, 3, H, W), or a stream
    graph's frame and state inputs as its metadata lists them."""
    inputs = graph_inputs(model)
    states = read_metadata(model).get("stream_states")
    if isinstance(states, list) and states:
        want = [str(read_metadata(model).get("input_name") or "frame"),
                *(str(s.get("name")) for s in states if isinstance(s, dict))]
        names = [vi.name for vi in inputs]
        if sorted(names) == sorted(want):
            return None
        return f"a stream graph whose inputs {', '.join(names) or 'none'} are not its metadata's {', '.join(want)}"
    if len(inputs) != 1:
        shown = ", ".join(_shape_text(vi) for vi in inputs[:3]) + (", ..." if len(inputs) > 3 else "")
        return f"{len(inputs)} inputs{': ' + shown if inputs else ''}"
    d = dims(inputs[0])
    if len(d) != 5 or (isinstance(d[2], int) and d[2] not in (0, 3)):
        return f"its input is {_shape_text(inputs[0])}"
    if not model.graph.output:
        return "no outputs"
    return None


def check_clip_graph(model: onnx.ModelProto, path: object) -> None:
    """Refuse a graph that is not an edgefuse clip model (one line naming ``path`` and what it has instead)."""
    problem = clip_graph_problem(model)
    if problem is not None:
        raise EdgefuseError(f"{path}: not an edgefuse video model ({problem}); edgefuse takes the graph 'edgefuse "
                            "export' writes: one input clips (N, T, 3, H, W), or a stream graph's frame and states")
