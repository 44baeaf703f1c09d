"""Graph passes: small pure functions ``ModelProto -> ModelProto``, composed in a list.

Every pass ends with :func:`finalize` (cleanup of dead nodes, topological sort, the
ONNX checker), as onnx-graphsurgeon passes do.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import onnx

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

Pass = Callable[[onnx.ModelProto], onnx.ModelProto]
SIMPLIFIERS = ("auto", "onnxsim", "onnxslim", "none")


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


def simplify_onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return finalize(onnxslim.slim(model))


def simplify_onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    out, ok = onnxsim.simplify(model)
    if not ok:
        raise EdgefuseError("onnxsim could not validate its simplified graph; export with --simplify onnxslim or none")
    return finalize(out)


def name_graph(name: str) -> Pass:
    def _pass(model: onnx.ModelProto) -> onnx.ModelProto:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        out.graph.name = name
        out.producer_name = "edgefuse"
        from edgefuse import __version__

        out.producer_version = __version__
        return finalize(out)

    return _pass


def simplifier(kind: str) -> Pass | None:
    """``auto``: onnxsim where it is installed (about 5x faster here), else onnxslim."""
    if kind == "auto":
        try:
            import onnxsim  # noqa: F401

            kind = "onnxsim"
        except ImportError:
            kind = "onnxslim"
    if kind == "onnxslim":
        return simplify_onnxslim
    if kind == "onnxsim":
        return simplify_onnxsim
    if kind == "none":
        return None
    raise EdgefuseError(f"unknown simplifier {kind!r}; use one of {', '.join(SIMPLIFIERS)}")


def run_passes(model: onnx.ModelProto, passes: Sequence[Pass | None]) -> onnx.ModelProto:
    for p in passes:
        if p is not None:
            model = p(model)
            log.debug("pass %s: %d nodes", getattr(p, "__name__", p), len(model.graph.node))
    return model
