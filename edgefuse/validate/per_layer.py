"""``--per-layer``: the first tensor where an engine departs from its reference graph, and the layer
most likely at fault. The reference runs with every float tensor exposed; the engine gives the same
names (ONNX Runtime exposes them, TensorRT marks them as outputs of a debug engine)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import producers
from edgefuse.validate.report import Departure, TensorError

# tensor names -> {name: array} for those the engine has (run on the probe clips)
TensorProbe = Callable[[list[str]], dict[str, np.ndarray]]


def _compute_ancestors(tensor: str, producer: dict[str, onnx.NodeProto]) -> list[str]:
    """Conv / Gemm / MatMul nodes whose output reaches ``tensor`` (names, any order)."""
    seen: set[str] = set()
    out, stack = [], [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            out.append(node.name)
        stack.extend(i for i in node.input if i)
    return out


def _suspects(departed: str, good: list[str], model: onnx.ModelProto) -> list[str]:
    """The layers that feed the departed tensor but none of the tensors that still matched, in graph
    order: the first is where the damage most likely sits (an ONNX Runtime engine fuses a Conv with
    what follows it, so the Conv's own output may not exist in the engine to check)."""
    producer = producers(model)
    cleared: set[str] = set()
    for t in good:
        cleared |= set(_compute_ancestors(t, producer))
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(set(_compute_ancestors(departed, producer)) - cleared, key=lambda n: order.get(n, 0))


def ort_engine_tensors(engine: onnx.ModelProto, clips: np.ndarray) -> TensorProbe:
    """For :func:`first_departure`: an ONNX Runtime engine's tensors (those it still has) on ``clips``."""
    from edgefuse.graph.runner import OrtRunner

    present = set(producers(engine))

    def run(names: list[str]) -> dict[str, np.ndarray]:
        common = [t for t in names if t in present]
        return OrtRunner(engine, extra_outputs=common, optimize=False).run_all(clips) if common else {}
    return run


def trt_engine_tensors(engine_path: Path, info: dict[str, Any], clips: np.ndarray) -> TensorProbe:
    """For :func:`first_departure` on TensorRT: rebuild the engine from its source graph with the wanted
    tensors marked as outputs (a debug engine beside it), run it, return those it produced. Not run in
    edgefuse's CI: no GPU there."""
    from edgefuse.backends.trt.build import build_engine_file
    from edgefuse.backends.trt.runner import TrtRunner

    def run(names: list[str]) -> dict[str, np.ndarray]:
        source = Path(info.get("source_onnx") or "")
        if not source.is_file():
            raise EdgefuseError(f"{engine_path}: the per-layer check rebuilds the engine from its source graph "
                                f"{source}, which is not on this machine; copy it beside the engine")
        debug = engine_path.with_name(engine_path.name + ".per-layer.plan")
        settings = info.get("settings") or {}
        build_engine_file(source, debug, str(info["backend_version"]), settings.get("flags", []),
                          settings.get("network_flags", []), info.get("profiles") or {}, mark=names,
                          dla_core=settings.get("dla_core"))
        runner = TrtRunner(debug, info)
        try:
            return runner.run_feeds({runner.inputs[0]: clips})
        finally:
            runner.close()
    return run


def first_departure(reference: onnx.ModelProto, engine_tensors: TensorProbe, clips: np.ndarray,
                    tolerance: float) -> Departure:
    """Run the reference with every float tensor exposed and the engine with the same names asked for;
    the first tensor (in the reference's order) whose relative error max|a - b| / max|a| exceeds
    ``tolerance``, with the node making it and the layers that may be at fault."""
    from edgefuse.graph.query import float_tensors
    from edgefuse.graph.runner import OrtRunner

    ref_names = float_tensors(reference)
    b = engine_tensors(ref_names)
    common = [t for t in ref_names if t in b]
    if not common:
        raise EdgefuseError("the engine and the reference share no tensor names; the per-layer check needs an "
                            "engine built from this reference's graph")
    a = OrtRunner(reference, extra_outputs=common).run_all(clips)
    producer = producers(reference)
    checked: list[TensorError] = []
    for t in common:
        if t not in a or t not in b or a[t].shape != b[t].shape:
            continue
        scale = float(np.abs(a[t]).max()) or 1.0
        rel = float(np.abs(a[t].astype(np.float64) - b[t]).max() / scale)
        checked.append(TensorError(t, rel))
        if rel > tolerance:
            node = producer.get(t)
            suspects = _suspects(t, [c.tensor for c in checked[:-1]], reference)
            return Departure(len(checked), tolerance, t, node.name if node else None, node.op_type if node else None,
                             suspects[0] if suspects else None, suspects, rel, checked[-4:-1])
    return Departure(len(checked), tolerance, worst=max(checked, key=lambda x: x.relative_error) if checked else None)
