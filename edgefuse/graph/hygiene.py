"""Graph hygiene and TensorRT compatibility, checked after every export and by ``edgefuse inspect``.

Checks:
- no ScatterND / ScatterElements (in-place slice writes in the research code become
  these; TensorRT 8.x ignores their ``reduction`` attribute and 10.1-10.8 reject it);
- no Random* / Bernoulli / Multinomial (Gumbel sampling left in an evaluation graph);
- no constant where a tensor should flow: an initializer or Constant with an
  activation-like shape (>= 3 dims, not a weight of Conv/Gemm/MatMul/BN, not uniform
  like zero padding) feeding a data input. That is what an in-place temporal shift traced into a graph becomes:
  the shifted values frozen from the example input;
- every operator supported by the ONNX parser of each TensorRT version (8.0 to 11), the
  opset inside the range each parser accepts, and explicit INT8 (Q/DQ) written the way
  that version takes it (:func:`qdq_problems`).

The operator tables come from onnx/onnx-tensorrt ``docs/operators.md`` per release
(``data/trt_onnx_ops.json``, with the ref of each table and how 10.3 and 11.x were
derived where the exact file was not available); the Q/DQ rules of each version from the
parser source and ``NvInfer.h`` of that release (the ``qdq`` entry of each version).
Deployment targets (JetPack and TensorRT names) are in :mod:`edgefuse.graph.targets`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import onnx

from edgefuse.graph.qdq_rules import qdq_problems
from edgefuse.graph.query import producers

FORBIDDEN = {
    "ScatterND": "in-place slice writes traced into the graph; rewrite them as slices + Concat",
    "ScatterElements": "in-place index writes traced into the graph; rewrite them as slices + Concat",
    "RandomUniform": "random sampling in an inference graph (e.g. Gumbel noise); use the argmax decision",
    "RandomUniformLike": "random sampling in an inference graph (e.g. Gumbel noise); use the argmax decision",
    "RandomNormal": "random sampling in an inference graph",
    "RandomNormalLike": "random sampling in an inference graph",
    "Bernoulli": "random sampling in an inference graph (dropout left in training mode?)",
    "Multinomial": "random sampling in an inference graph",
}

# Inputs of these ops at these positions are weights, not activations.
_WEIGHT_INPUTS = {
    "Conv": {1, 2}, "ConvTranspose": {1, 2}, "Gemm": {1, 2}, "MatMul": {1},
    "BatchNormalization": {1, 2, 3, 4}, "InstanceNormalization": {1, 2}, "LayerNormalization": {1, 2},
    "QuantizeLinear": {1, 2}, "DequantizeLinear": {0, 1, 2}, "PRelu": {1},
}

TARGETS = ("8.0", "8.2", "8.4", "8.5", "8.6", "10.0", "10.3", "10.x-latest", "11")


@lru_cache(maxsize=1)
def trt_tables() -> dict[str, Any]:
    text = resources.files("edgefuse.graph").joinpath("data/trt_onnx_ops.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@dataclass
class Verdict:
    target: str  # key in the tables: 8.0, 8.2, 8.4, 8.5, 8.6, 10.0, 10.3, 10.x-latest, 11
    version: str  # the TensorRT version the table is for
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Hygiene:
    problems: list[str]
    verdicts: list[Verdict]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems,
                "tensorrt": [v.__dict__ for v in self.verdicts]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hygiene:
        """From :meth:`to_dict`'s form (``ok`` is derived, not read)."""
        return cls(list(d["problems"]), [Verdict(**v) for v in d["tensorrt"]])


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = []
    for n in graph.node:
        nodes.append(n)
        for attr in n.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                nodes += _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    nodes += _all_nodes(g)
    return nodes


def frozen_activations(model: onnx.ModelProto) -> list[str]:
    """Constants with activation-like shapes used as data inputs (the in-place-shift failure)."""
    from onnx import numpy_helper

    graph = model.graph
    tensors = {init.name: init for init in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tensors[n.output[0]] = a.t
    shapes = {k: list(t.dims) for k, t in tensors.items()}
    # weights behind a Q/DQ pair (explicit INT8) or a Cast (an FP16 graph's weight of a layer kept FP32): the
    # QuantizeLinear or Cast reading them is a weight slot too
    producer = producers(model)
    weight_q = set()
    for n in graph.node:
        for i in _WEIGHT_INPUTS.get(n.op_type, set()):
            src = producer.get(n.input[i]) if i < len(n.input) else None
            while src is not None and src.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast"):
                if src.op_type in ("QuantizeLinear", "Cast"):
                    weight_q.add(src.name)
                src = producer.get(src.input[0])
    found = []
    for n in graph.node:
        weights = _WEIGHT_INPUTS.get(n.op_type, set()) | ({0} if n.name in weight_q else set())
        for i, name in enumerate(n.input):
            dims = shapes.get(name)
            if dims is None or i in weights or n.op_type in ("Reshape", "Expand", "Tile", "ConstantOfShape"):
                continue
            spatial = [d for d in dims[2:] if d > 1]
            if len(dims) >= 3 and len(spatial) >= 2 and sum(1 for d in dims if d > 1) >= 3:
                values = numpy_helper.to_array(tensors[name])
                if values.size and (values == values.flat[0]).all():
                    continue  # a uniform tensor is padding (e.g. the zeros a shift brings in), not frozen data
                found.append(f"{n.op_type} node {n.name or n.output[0]!r} reads the constant {name!r} of shape {dims}")
    return found


def check(model: onnx.ModelProto, targets: tuple[str, ...] = TARGETS) -> Hygiene:
    nodes = _all_nodes(model.graph)
    problems = []
    for n in nodes:
        if n.domain in ("", "ai.onnx") and n.op_type in FORBIDDEN:
            problems.append(f"{n.op_type} node {n.name or n.output[0]!r}: {FORBIDDEN[n.op_type]}")
    problems += [f"frozen activation: {p}" for p in frozen_activations(model)]
    return Hygiene(problems, [verdict(model, t, nodes) for t in targets])


def verdict(model: onnx.ModelProto, target: str, nodes: list[onnx.NodeProto] | None = None, *,
            max_opset: int | None = None, exclude_ops: tuple[str, ...] = (), version: str | None = None) -> Verdict:
    """``model`` against the parser of table ``target``; ``max_opset`` / ``exclude_ops`` narrow the table to a release it
    covers only in part (see :mod:`edgefuse.graph.targets`), ``version`` names that release."""
    table = trt_tables()["versions"][target]
    nodes = nodes if nodes is not None else _all_nodes(model.graph)
    v = Verdict(target, version or table["version"], ok=True)
    opset = opset_of(model)
    hi = min(table["max_opset"], max_opset or table["max_opset"])
    if not table["min_opset"] <= opset <= hi:
        v.problems.append(f"opset {opset} outside the parser's range {table['min_opset']}-{hi}")
    if table.get("table_status") != "verbatim":
        v.notes.append(f"operator table {table['table_status']} ({table['ref']})")
    seen: set[str] = set()
    for n in nodes:
        if n.domain not in ("", "ai.onnx"):
            if n.domain not in seen:
                v.problems.append(f"custom domain {n.domain!r} ({n.op_type}) needs a plugin")
                seen.add(n.domain)
            continue
        if n.op_type in seen:
            continue
        seen.add(n.op_type)
        row = None if n.op_type in exclude_ops else table["ops"].get(n.op_type)
        if row is None:
            v.problems.append(f"{n.op_type}: not in the parser's operator table")
        elif not row.get("supported"):
            v.problems.append(f"{n.op_type}: not supported")
        elif row.get("restrictions"):
            v.notes.append(f"{n.op_type}: {row['restrictions']}")
    problems, notes = qdq_problems(model, table.get("qdq", {}), opset)
    v.problems += problems
    v.notes += notes
    v.ok = not v.problems
    return v


def first_supporting(op_type: str) -> str | None:
    """The oldest table key (in :data:`TARGETS` order) whose parser supports ``op_type``."""
    versions = trt_tables()["versions"]
    return next((k for k in TARGETS if versions[k]["ops"].get(op_type, {}).get("supported")), None)
