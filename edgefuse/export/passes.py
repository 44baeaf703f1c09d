"""Export's own passes: the simplifiers (onnxsim, onnxslim) and graph naming; each ends with
:func:`edgefuse.graph.passes.finalize`."""
from __future__ import annotations

import logging

import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.passes import Pass, finalize

log = logging.getLogger(__name__)

SIMPLIFIERS = ("auto", "onnxsim", "onnxslim", "none")


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
