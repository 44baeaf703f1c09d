"""``edgefuse inspect model.onnx``: ops, params, MACs, dynamic dimensions, metadata, TensorRT verdicts."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.graph import hygiene
from edgefuse.graph.io import load_onnx
from edgefuse.graph.metadata import read_metadata
from edgefuse.graph.query import dims, graph_inputs, graph_macs


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: list[int | str]  # a dynamic dimension by its name


@dataclass(frozen=True)
class GraphMacs:
    total: int
    by_op: dict[str, int]
    at: str  # "optimal shape" (dynamic graphs) or "static shape"


@dataclass(frozen=True)
class GraphInspection:
    path: str
    opset: int
    ir_version: int
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    nodes: int
    ops: dict[str, int]  # op type -> count, most common first
    params: int
    metadata: dict[str, Any]
    dynamic_dims: dict[str, list[int] | None]  # name -> [min, opt, max] from the metadata
    hygiene: hygiene.Hygiene
    macs: GraphMacs | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path, "opset": self.opset, "ir_version": self.ir_version, "producer": self.producer,
            "inputs": [t.__dict__ for t in self.inputs], "outputs": [t.__dict__ for t in self.outputs],
            "nodes": self.nodes, "ops": self.ops, "params": self.params, "metadata": self.metadata,
            "dynamic_dims": self.dynamic_dims,
        }
        if self.macs is not None:
            d["macs"] = self.macs.__dict__
        d["hygiene"] = self.hygiene.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphInspection:
        return cls(d["path"], d["opset"], d["ir_version"], d["producer"], [TensorInfo(**t) for t in d["inputs"]],
                   [TensorInfo(**t) for t in d["outputs"]], d["nodes"], dict(d["ops"]), d["params"],
                   dict(d["metadata"]), dict(d["dynamic_dims"]), hygiene.Hygiene.from_dict(d["hygiene"]),
                   GraphMacs(**d["macs"]) if d.get("macs") else None)


def inspect_onnx(path: str | Path, with_macs: bool = True) -> GraphInspection:
    model = load_onnx(path)
    meta = read_metadata(model)
    inputs = [TensorInfo(vi.name, dims(vi)) for vi in graph_inputs(model)]
    outputs = [TensorInfo(vi.name, dims(vi)) for vi in model.graph.output]
    dyn = sorted({d for t in inputs + outputs for d in t.dims if isinstance(d, str)})
    macs = None
    if with_macs:
        total, by_op = graph_macs(model, meta)
        macs = GraphMacs(total, by_op, "optimal shape" if dyn else "static shape")
    return GraphInspection(
        path=str(path), opset=hygiene.opset_of(model), ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(), inputs=inputs, outputs=outputs,
        nodes=len(model.graph.node), ops=dict(Counter(n.op_type for n in model.graph.node).most_common()),
        params=sum(int(np.prod(i.dims)) for i in model.graph.initializer), metadata=meta,
        dynamic_dims={d: (meta.get("dynamic_ranges") or {}).get(d) for d in dyn}, hygiene=hygiene.check(model),
        macs=macs,
    )
