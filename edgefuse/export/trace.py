"""Tracing a PyTorch module into an ONNX ModelProto.

Two exporters: the TorchScript tracer (``torch.onnx.export(dynamo=False)``) emits
any opset, in particular 17, the highest TensorRT 8.6's parser accepts, and takes
seconds; the dynamo exporter (``torch.export`` + onnxscript) emits opset >= 18 and
takes tens of seconds. ``auto`` picks TorchScript up to opset 17, dynamo above.
Weights are always embedded in the returned proto (external data only when saving
a graph over 2 GB).
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
import torch

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "torchscript", "dynamo")


def pick_exporter(exporter: str, opset: int) -> str:
    if exporter not in EXPORTERS:
        raise EdgefuseError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")
    if exporter == "auto":
        return "torchscript" if opset <= 17 else "dynamo"
    if exporter == "dynamo" and opset < 18:
        raise EdgefuseError(f"the dynamo exporter emits opset >= 18, not {opset}; use --exporter torchscript "
                            "for opset <= 17 (TensorRT 8.6 accepts up to 17)")
    return exporter


def to_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    opset: int = 17,
    exporter: str = "auto",
    ranges: Mapping[str, tuple[int, int, int]] | None = None,
) -> onnx.ModelProto:
    """Trace ``module`` on ``args``; names of dynamic dimensions come from ``dynamic_axes``."""
    kind = pick_exporter(exporter, opset)
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="edgefuse-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python control flow
            with torch.no_grad():
                if kind == "torchscript":
                    torch.onnx.export(
                        module, args, str(path), dynamo=False, opset_version=opset,
                        input_names=list(input_names), output_names=list(output_names),
                        dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()} or None,
                        do_constant_folding=True,
                    )
                else:
                    torch.onnx.export(
                        module, args, str(path), dynamo=True, opset_version=opset, external_data=False,
                        input_names=list(input_names), output_names=list(output_names),
                        dynamic_shapes=_dynamo_shapes(input_names, dynamic_axes, ranges), optimize=True,
                    )
        model = onnx.load(str(path))
    if kind == "dynamo":
        model = scope_names(model)
    log.debug("traced %s with the %s exporter at opset %d", type(module).__name__, kind, opset)
    return model


def scope_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name every node of a dynamo export after its module scope, as the TorchScript exporter does
    (``/backbone/layer1.0/gsf/Conv``, ``/fc/Gemm``, then ``_1``, ``_2`` ... for more of one op in one scope), from
    the ``pkg.torch.onnx.name_scopes`` the dynamo exporter records per node (its own names, ``node_Conv_2867``,
    say nothing of the module). What reads node names by scope depends on it: calibrate's default excludes
    (``*/gsf/*``, ``*/gsf_*/*``, ``*/adafuse/*``, ``/fc/*``) and AdaFuse's decision tensors. Nodes without scopes keep
    their names."""
    import ast

    used: dict[str, int] = {}
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is None:
            continue
        try:
            paths = [s for s in ast.literal_eval(scopes)[:-1] if s]  # full module paths; the last is the aten op
        except (ValueError, SyntaxError):
            continue
        parts, parent = [], ""
        for path in paths:
            parts.append(path[len(parent) + 1:] if parent and path.startswith(parent + ".") else path)
            parent = path
        base = "/" + "/".join([*parts, node.op_type])
        count = used.get(base, 0)
        used[base] = count + 1
        node.name = base if count == 0 else f"{base}_{count}"
    return model


def _dynamo_shapes(input_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]] | None,
                   ranges: Mapping[str, tuple[int, int, int]] | None) -> tuple[dict[int, object], ...] | None:
    if not dynamic_axes:
        return None
    from torch.export import Dim

    dims: dict[str, object] = {}
    out = []
    for name in input_names:
        spec = {}
        for axis, dim_name in dynamic_axes.get(name, {}).items():
            if dim_name not in dims:
                lo, _, hi = (ranges or {}).get(dim_name, (1, 0, 4096))
                dims[dim_name] = Dim(dim_name, min=max(lo, 1), max=hi)
            spec[axis] = dims[dim_name]
        out.append(spec)
    return tuple(out)
