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


def fold_gemm_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every BatchNormalization (inference form, one output) that reads only a Gemm with constant weight and bias
    folded into that Gemm: ``W'[o] = W[o] * s[o]``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var +
    eps)``. ONNX Runtime and TensorRT fold a BatchNormalization into a Conv but not into a Gemm; AdaFuse's policy nets
    (Linear -> BatchNorm1d -> ReLU -> Linear) otherwise run it as a separate op on every block."""
    import numpy as np
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    drop, folded = [], 0
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        gemm = producers.get(bn.input[0])
        if gemm is None or gemm.op_type != "Gemm" or len(gemm.input) < 3 or readers.get(bn.input[0]) != 1 \
                or bn.input[0] in outputs or any(i not in inits for i in (*gemm.input[1:3], *bn.input[1:5])):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        eps = next((helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon"), 1e-5)
        w, b = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in gemm.input[1:3])
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        scale = gamma / np.sqrt(var + eps)  # (out,)
        if w.ndim != 2 or b.shape != scale.shape:
            continue
        w = w * (scale[:, None] if attrs.get("transB", 0) else scale[None, :])  # (out, in) or (in, out)
        for k, value in ((1, w), (2, (b - mean) * scale + beta)):
            name = gemm.input[k]
            dtype = numpy_helper.to_array(inits[name]).dtype
            tensor = numpy_helper.from_array(value.astype(dtype), name)
            if readers.get(name, 0) > 1:  # shared with another node (a policy net shared across blocks): a copy
                tensor.name = f"{bn.output[0]}.{'weight' if k == 1 else 'bias'}"
                graph.initializer.append(tensor)
                gemm.input[k] = tensor.name
            else:
                inits[name].CopyFrom(tensor)
        gemm.output[0] = bn.output[0]
        drop.append(bn)
        folded += 1
    for bn in drop:
        graph.node.remove(bn)
    if folded:
        log.debug("folded %d BatchNormalization(s) into their Gemm", folded)
    return finalize(out)


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
