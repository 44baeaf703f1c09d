"""Pass helpers: graph passes are small pure functions ``ModelProto -> ModelProto``, composed in a list.

Every pass ends with :func:`finalize` (cleanup of dead nodes, topological sort, the ONNX checker),
as onnx-graphsurgeon passes do.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import onnx

log = logging.getLogger(__name__)

Pass = Callable[[onnx.ModelProto], onnx.ModelProto]


def finalize(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    onnx.checker.check_model(out)
    return out


def run_passes(model: onnx.ModelProto, passes: Sequence[Pass | None]) -> onnx.ModelProto:
    for p in passes:
        if p is not None:
            model = p(model)
            log.debug("pass %s: %d nodes", getattr(p, "__name__", p), len(model.graph.node))
    return model
