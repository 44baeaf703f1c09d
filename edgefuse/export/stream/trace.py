"""The stream graph: :class:`StreamModel` traced to ONNX with inputs ``frame, state.*`` and outputs
``logits, next.state.*`` (batch axis "N"). One path for ``edgefuse export --policy stream`` and :func:`export_stream`."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

from edgefuse.export.stream.model import StreamModel, state_spec
from edgefuse.export.stream.state import BATCH_AXIS_NAME, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, StateSpec
from edgefuse.export.trace import to_onnx
from edgefuse.graph.io import save_onnx
from edgefuse.graph.metadata import set_metadata

log = logging.getLogger(__name__)


def _example_inputs(spec: Sequence[StateSpec], batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    frame = torch.randn(batch, 3, height, width, generator=gen)  # (N, 3, H, W)
    return (frame, *(torch.randn(s.shape, generator=gen, dtype=getattr(torch, s.dtype)) for s in spec))


def io_names(spec: Sequence[StateSpec]) -> tuple[list[str], list[str]]:
    """(input names, output names) of the stream graph."""
    return [INPUT_NAME, *(s.name for s in spec)], [OUTPUT_NAME, *(s.next_name for s in spec)]


def stream_metadata(spec: Sequence[StateSpec]) -> dict[str, Any]:
    """The metadata facts of a stream graph: its frame input, logits output and state layout."""
    return {"input_name": INPUT_NAME, "output_name": OUTPUT_NAME, METADATA_KEY: [s.to_dict() for s in spec]}


def trace_stream(stream_model: StreamModel, batch: int = 1, height: int = 224, width: int = 224, opset: int = 17,
                 exporter: str = "auto", ranges: Mapping[str, tuple[int, int, int]] | None = None
                 ) -> tuple[onnx.ModelProto, list[StateSpec]]:
    """(the stream graph, its state layout) for frames (batch, 3, height, width); the batch axis is dynamic."""
    spec = state_spec(stream_model, batch, height, width)
    inputs, outputs = io_names(spec)
    axes = {name: {0: BATCH_AXIS_NAME} for name in inputs + outputs}
    graph = to_onnx(stream_model.eval(), _example_inputs(spec, batch, height, width), inputs, outputs, axes, opset,
                    exporter, ranges)
    return with_state_shapes(graph, spec), spec


def with_state_shapes(graph: onnx.ModelProto, spec: Sequence[StateSpec]) -> onnx.ModelProto:
    """The state outputs declared with the layout's shapes (batch axis "N", the rest static): the tracer's shape
    inference can leave symbols where an output also feeds a broadcast (AdaFuse's conv1 output, state and fused)."""
    shapes = {s.next_name: s.shape for s in spec}
    for out in graph.graph.output:
        shape = shapes.get(out.name)
        if shape is None:
            continue
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for axis, size in enumerate(shape):
            d = dims.add()
            if axis == 0:
                d.dim_param = BATCH_AXIS_NAME
            else:
                d.dim_value = int(size)
    return graph


def export_stream(
    stream_model: StreamModel, path: str | Path, batch: int = 1, height: int = 224, width: int = 224, opset: int = 17
) -> list[StateSpec]:
    """Trace ``stream_model`` to ONNX at ``path`` (atomically); returns the state layout,
    also stored as JSON in the metadata entry ``edgefuse.stream_states``."""
    graph, spec = trace_stream(stream_model, batch, height, width, opset)
    save_onnx(set_metadata(graph, {"model": stream_model.name, **stream_metadata(spec)}), path)
    log.info("exported the stream model of %s to %s: %d states, opset %d", stream_model.name, path, len(spec), opset)
    return spec
