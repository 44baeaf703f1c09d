"""``edgefuse inspect model.onnx``: ops, params, MACs, dynamic dimensions, metadata, TensorRT verdicts."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.graph import hygiene
from edgefuse.graph.io import load_onnx
from edgefuse.graph.metadata import read_metadata
from edgefuse.graph.query import dims, graph_inputs, graph_macs


def inspect_onnx(path: str | Path, with_macs: bool = True) -> dict[str, Any]:
    model = load_onnx(path)
    meta = read_metadata(model)
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    report: dict[str, Any] = {
        "path": str(path),
        "opset": hygiene.opset_of(model),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [{"name": vi.name, "dims": dims(vi)} for vi in graph_inputs(model)],
        "outputs": [{"name": vi.name, "dims": dims(vi)} for vi in model.graph.output],
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
