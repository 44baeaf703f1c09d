"""Layout passes for ONNX Runtime's CPU engines.

ONNX Runtime runs convolutions channels-last (NCHWc in FP32, NHWC for QLinearConv) and inserts
layout Transposes around them, which its transpose optimizer pushes through Slice and Concat but
not through Reshape. The temporal shift reshapes (N*T, C, H, W) to (N, T, C, H, W), slices and
concatenates along T, and reshapes back: every shift costs two Transposes of the whole activation.
With one clip per run (N = 1, a static shape) the leading dimension is a unit one, and the same
slices along the first axis of the 4-D tensor give the same elements: :func:`drop_unit_batch`
removes both Reshapes so the shift stays in the convolutions' layout.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from edgefuse.graph.passes import finalize
from edgefuse.graph.query import consumers as consumers_of

log = logging.getLogger(__name__)

_REGION_OPS = ("Slice", "Concat")


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


def _constant_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {}
    for n in model.graph.node:
        value = next((a for a in n.attribute if a.name == "value"), None) if n.op_type == "Constant" else None
        if value is not None:
            out[n.output[0]] = numpy_helper.to_array(value.t)
    return out


def drop_unit_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reshape (B, C, H, W) -> (1, B, C, H, W), Slice / Concat on axes >= 1, Reshape back to
    (B, C, H, W): the same Slice / Concat on the 4-D tensor, one axis lower. Static shapes only."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    shapes = _shapes(out)
    small = _constant_arrays(out)
    small.update({i.name: numpy_helper.to_array(i) for i in out.graph.initializer if len(i.dims) <= 5
                  and np.prod(i.dims or [1]) <= 1 << 20})
    consumers = consumers_of(out)
    rename: dict[str, str] = {}
    drop: set[str] = set()
    done = 0
    for head in [n for n in out.graph.node if n.op_type == "Reshape"]:
        src, dst = shapes.get(head.input[0]), shapes.get(head.output[0])
        if not src or not dst or None in src or None in dst or len(dst) != len(src) + 1 or dst[0] != 1 \
                or dst[1:] != src:
            continue
        region, frontier, tails, ok = [], [head.output[0]], [], True
        seen: set[str] = set()
        while frontier and ok:
            tensor = frontier.pop()
            for c in consumers.get(tensor, []):
                if c.name in seen:
                    continue
                seen.add(c.name)
                if c.op_type == "Reshape" and shapes.get(c.output[0]) == src:
                    tails.append(c)
                elif c.op_type in _REGION_OPS:
                    region.append(c)
                    frontier.append(c.output[0])
                else:
                    ok = False
        if not ok or not tails:
            continue
        inside = {head.output[0]} | {n.output[0] for n in region}
        plans = []
        for n in region:
            if n.op_type == "Concat":
                axis = next(a for a in n.attribute if a.name == "axis")
                if axis.i == 0 or any(i not in inside and (i not in small or small[i].ndim != len(dst)
                                                           or small[i].shape[0] != 1) for i in n.input):
                    ok = False
                    break
                plans.append(n)
            else:  # Slice: data, starts, ends, axes, steps
                if len(n.input) < 4 or n.input[3] not in small or (small[n.input[3]] == 0).any():
                    ok = False
                    break
                plans.append(n)
        if not ok:
            continue
        for n in plans:
            if n.op_type == "Concat":
                axis = next(a for a in n.attribute if a.name == "axis")
                if axis.i > 0:
                    axis.i -= 1
                for k, name in enumerate(n.input):
                    if name in small and name not in inside:
                        value = small[name]
                        new = f"{name}_unit_dropped_{n.name}"
                        out.graph.initializer.append(numpy_helper.from_array(value[0], new))
                        n.input[k] = new
            else:
                axes = small[n.input[3]]
                new = f"{n.name}_axes_unit_dropped"
                out.graph.initializer.append(numpy_helper.from_array(
                    np.where(axes > 0, axes - 1, axes).astype(axes.dtype), new))
                n.input[3] = new
        rename[head.output[0]] = head.input[0]
        drop.add(head.name)
        for t in tails:
            rename[t.output[0]] = t.input[0]
            drop.add(t.name)
        done += 1
    if not done:
        return model
    keep = [n for n in out.graph.node if n.name not in drop]
    for n in keep:
        for k, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[k] = name
    del out.graph.node[:]
    out.graph.node.extend(keep)
    del out.graph.value_info[:]  # shapes inside the shifts changed rank; inferred again on load
    log.debug("unit batch dropped around %d shift(s)", done)
    return finalize(out)


def stride_one_pools(model: onnx.ModelProto) -> onnx.ModelProto:
    """Pooling with stride 1 everywhere and ``ceil_mode = 1`` (BN-Inception's branch pools, as Caffe rounds) with
    ``ceil_mode = 0``: at stride 1 the output size is the same integer either way, so the values are too, and ONNX
    Runtime runs ceil-mode pooling on a generic path (an 8x256x28x28 3x3 average pool measured 12.7 ms against
    2.0 ms for the same pool without ceil mode)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    changed = 0
    for n in out.graph.node:
        if n.op_type not in ("AveragePool", "MaxPool", "LpPool") or n.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: a for a in n.attribute}
        strides = list(attrs["strides"].ints) if "strides" in attrs else []
        if "ceil_mode" in attrs and attrs["ceil_mode"].i == 1 and all(s == 1 for s in strides):
            attrs["ceil_mode"].i = 0
            changed += 1
    if changed:
        log.debug("stride-1 pools out of ceil mode: %d", changed)
    return out

