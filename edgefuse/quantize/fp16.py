"""FP16 as a typed graph: FP16 compute inside, FP32 inputs and outputs, and FP32 kept for the
nodes that must not lose range (values beyond FP16's on the calibration clips) or precision
(policy decisions, gates, the classifier, by the default exclude patterns).

The conversion itself is ONNX Runtime's ``onnxruntime.transformers.float16`` converter; edgefuse
chooses the blocked nodes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from edgefuse.quantize.qdq import match_any

FP16_MAX = 65504.0
# a node whose output reaches this fraction of FP16's largest value stays FP32 (headroom for
# clips beyond the calibration set)
RANGE_MARGIN = 0.5


def overflowing_nodes(model: onnx.ModelProto, amax: Mapping[str, float], margin: float = RANGE_MARGIN) -> list[str]:
    """Nodes with an output whose calibrated |x| exceeds ``margin * 65504``."""
    limit = margin * FP16_MAX
    return [n.name for n in model.graph.node if any(amax.get(o, 0.0) > limit for o in n.output)]


def fp16_blocked(model: onnx.ModelProto, amax: Mapping[str, float], exclude: Sequence[str]
                 ) -> tuple[list[str], list[str]]:
    """(nodes kept FP32 by pattern, nodes kept FP32 for range)."""
    by_pattern = [n.name for n in model.graph.node if match_any(n.name, exclude)]
    by_range = [n for n in overflowing_nodes(model, amax) if n not in set(by_pattern)]
    return by_pattern, by_range


def convert_fp16(model: onnx.ModelProto, blocked: Sequence[str]) -> onnx.ModelProto:
    """``model`` in FP16 except ``blocked`` nodes, with FP32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgefuse.graph.passes import finalize

    src = onnx.ModelProto()
    src.CopyFrom(model)
    out = convert_float_to_float16(src, keep_io_types=True, node_block_list=list(blocked),
                                   disable_shape_infer=False)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return finalize(out)
