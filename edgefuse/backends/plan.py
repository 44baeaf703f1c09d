"""Decisions a build makes before any backend is touched, as pure functions (unit-tested here,
where no GPU exists): the graph's precision, the precision to build for a device and TensorRT
version, the builder flags that gives, and the optimization-profile shapes."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import onnx

from edgefuse.devices import DeviceProfile, check_precision
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

BUILD_PRECISIONS = ("auto", "fp32", "fp16", "int8")
SUPPORTED_TRT = ("8.6", "10", "11")  # 8.6.x, 10.x, 11.x


def graph_precision(model: onnx.ModelProto, meta: Mapping[str, object]) -> str:
    """int8 for a Q/DQ graph, fp16 for an FP16-typed graph, else fp32 (metadata first, the graph decides otherwise)."""
    declared = meta.get("precision")
    if declared in ("int8", "fp16", "fp32"):
        return str(declared)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def trt_major(version: str) -> str:
    """'8.6.1' -> '8.6', '10.3.0' -> '10', '11.4.0' -> '11'; other versions are refused."""
    parts = version.split(".")
    key = f"{parts[0]}.{parts[1]}" if parts[0] == "8" and len(parts) > 1 else parts[0]
    if key not in SUPPORTED_TRT:
        raise EdgefuseError(f"TensorRT {version} is not supported: edgefuse builds with TensorRT 8.6, 10.x or 11.x "
                            "(JetPack 6 ships 10.3; JetPack 5 users: install TensorRT 8.6 or use JetPack 6)")
    return key


@dataclass(frozen=True)
class BuildPlan:
    precision: str  # what the engine computes in (the graph's, or fp16 from the FP16 flag)
    flags: tuple[str, ...] = ()  # TensorRT BuilderFlag names
    network_flags: tuple[str, ...] = ()  # TensorRT NetworkDefinitionCreationFlag names
    notes: tuple[str, ...] = field(default_factory=tuple)


def plan_precision(requested: str, graph: str, profile: DeviceProfile, trt_version: str | None = None) -> BuildPlan:
    """The precision to build and how. Precision lives in the graph: INT8 needs a Q/DQ graph (from
    ``edgefuse calibrate``); FP16 comes from an FP16 graph, or on TensorRT 8.6 / 10.x from the FP16
    builder flag over an FP32 graph; TensorRT 11 (strongly typed only) takes the graph as it is."""
    if requested not in BUILD_PRECISIONS:
        raise EdgefuseError(f"--precision {requested}: use one of {', '.join(BUILD_PRECISIONS)}")
    want = graph if requested == "auto" else requested
    notes: list[str] = []
    if want == "int8" and graph != "int8":
        raise EdgefuseError("--precision int8 needs an INT8 (Q/DQ) graph: run 'edgefuse calibrate MODEL.onnx --clips "
                            "... -o MODEL.int8.onnx' and build from that (TensorRT 11 has no implicit calibrator)")
    if want == "fp32" and graph != "fp32":
        raise EdgefuseError(f"--precision fp32 but the graph is {graph.upper()}: build from the FP32 graph "
                            "'edgefuse export' wrote")
    if want == "fp16" and graph == "int8":
        raise EdgefuseError("--precision fp16 but the graph is INT8 (Q/DQ): build from the FP32 or FP16 graph")
    checked = check_precision(profile, want)  # errors for an impossible precision, warns for a slow one
    if checked != want:
        notes.append(f"{want} is not fast on {profile.name}; built as {checked}")
        if graph == want:  # the graph itself is typed (e.g. an FP16 graph on a CPU): it runs as it is
            notes.append(f"the graph is {graph.upper()}: the backend computes it through casts")
            checked = graph
    if profile.kind == "cpu" or trt_version is None:
        return BuildPlan(checked, notes=tuple(notes))
    major = trt_major(trt_version)
    if major == "11":
        if checked == "fp16" and graph == "fp32":
            raise EdgefuseError("TensorRT 11 builds strongly typed networks only: FP16 must be in the graph; run "
                                "'edgefuse calibrate MODEL.onnx --precision fp16 ...' and build from that")
        return BuildPlan(checked, (), (), tuple(notes + ["strongly typed (TensorRT 11): precision from the graph"]))
    network = ("EXPLICIT_BATCH",) if major == "8.6" else ()
    if graph == "fp16" and major == "10":
        return BuildPlan("fp16", (), ("STRONGLY_TYPED",), tuple(notes + ["FP16 graph built strongly typed"]))
    flags: list[str] = []
    if graph == "int8":
        flags.append("INT8")  # explicit Q/DQ: the INT8 flag lets TensorRT use its INT8 kernels; scales come from the graph
    if checked == "fp16" or graph == "fp16":
        flags.append("FP16")
    return BuildPlan(checked, tuple(flags), network, tuple(notes))


# ---------------------------------------------------------------------------------------------
# Shapes

_SHAPE = re.compile(r"^\d+(x\d+)*$")


def parse_shapes(specs: Sequence[str]) -> dict[str, list[list[int]]]:
    """``name:MIN,OPT,MAX`` with shapes like ``1x8x3x224x224`` (trtexec / Polygraphy style)."""
    out: dict[str, list[list[int]]] = {}
    for spec in specs:
        name, sep, rest = spec.rpartition(":")
        shapes = rest.split(",")
        if not sep or not name or len(shapes) != 3 or not all(_SHAPE.match(s) for s in shapes):
            raise EdgefuseError(f"--shapes {spec!r}: expected NAME:MIN,OPT,MAX with shapes like 1x8x3x224x224, "
                                "e.g. clips:1x8x3x224x224,2x8x3x224x224,4x8x3x224x224")
        dims = [[int(d) for d in s.split("x")] for s in shapes]
        if len({len(d) for d in dims}) != 1 or any(not lo <= opt <= hi for lo, opt, hi in zip(*dims)):
            raise EdgefuseError(f"--shapes {spec!r}: MIN, OPT and MAX need the same rank and MIN <= OPT <= MAX "
                                "in every dimension")
        out[name] = dims
    return out


def optimization_profiles(inputs: Mapping[str, Sequence[int | str]], ranges: Mapping[str, Sequence[int]],
                          overrides: Mapping[str, list[list[int]]]) -> dict[str, list[list[int]]]:
    """min / opt / max shape of every input: an override as given (checked against the static
    dimensions), else static dimensions as they are and dynamic ones from the metadata's
    ``dynamic_ranges`` (``{"N": [1, 1, 4], ...}``); a dynamic dimension without a range is an error."""
    unknown = sorted(set(overrides) - set(inputs))
    if unknown:
        raise EdgefuseError(f"--shapes names {', '.join(unknown)}, but the graph's inputs are {', '.join(inputs)}")
    out: dict[str, list[list[int]]] = {}
    for name, dims in inputs.items():
        if name in overrides:
            given = overrides[name]
            if len(given[0]) != len(dims):
                raise EdgefuseError(f"--shapes {name}: rank {len(given[0])}, the graph's input has rank {len(dims)} "
                                    f"({'x'.join(str(d) for d in dims)})")
            for i, d in enumerate(dims):
                if isinstance(d, int) and d > 0 and any(s[i] != d for s in given):
                    raise EdgefuseError(f"--shapes {name}: dimension {i} is static ({d}) in the graph, the shapes give "
                                        f"{[s[i] for s in given]}; export with --shape dynamic to vary it")
            out[name] = [list(s) for s in given]
            continue
        shapes: list[list[int]] = [[], [], []]
        for d in dims:
            if isinstance(d, int) and d > 0:
                for s in shapes:
                    s.append(d)
                continue
            rng = ranges.get(str(d))
            if not rng or len(rng) != 3:
                raise EdgefuseError(f"input {name}: dimension {d!r} is dynamic and the graph's metadata gives no range "
                                    f"for it; pass --shapes {name}:MIN,OPT,MAX")
            for s, v in zip(shapes, rng):
                s.append(int(v))
        out[name] = shapes
    return out
