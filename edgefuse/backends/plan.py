"""Decisions a build makes before any backend is touched, as pure functions (unit-tested here,
where no GPU exists): the graph's precision, the precision to build for a device and TensorRT
version, the builder flags that gives, and the optimization-profile shapes."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import onnx

from edgefuse.backends.trt.versions import build_api, parse_version
from edgefuse.devices import DeviceProfile, check_precision
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

BUILD_PRECISIONS = ("auto", "fp32", "fp16", "int8")


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
    """The checked TensorRT version (an error for an unsupported one). Kept for the call sites that passed
    ``trt_major(version)`` to ``build_engine_file``, which now takes the version itself."""
    return str(parse_version(version))


@dataclass(frozen=True)
class BuildPlan:
    precision: str  # what the engine computes in (the graph's, or fp16 from the FP16 flag)
    flags: tuple[str, ...] = ()  # TensorRT BuilderFlag names
    network_flags: tuple[str, ...] = ()  # TensorRT NetworkDefinitionCreationFlag names
    notes: tuple[str, ...] = field(default_factory=tuple)
    dla_core: int | None = None  # build for (and run on) this DLA core
    calibration_cache: str | None = None  # implicit INT8 (DLA on TensorRT 8.x / 10.x): the cache's path


def plan_precision(requested: str, graph: str, profile: DeviceProfile, trt_version: str | None = None) -> BuildPlan:
    """The precision to build and how. Precision lives in the graph: INT8 needs a Q/DQ graph (from
    ``edgefuse calibrate``); FP16 comes from an FP16 graph, or on TensorRT 8.x / 10.x from the FP16
    builder flag over an FP32 graph; TensorRT 11 (strongly typed only) takes the graph as it is. An INT8
    build also sets the FP16 flag where the device is fast in FP16, so that layers without Q/DQ (the shift,
    pooling, the classifier) may run in FP16 instead of FP32 (what trtexec --best allows)."""
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
    api = build_api(trt_version)
    if api.typing == "strong":
        if checked == "fp16" and graph == "fp32":
            raise EdgefuseError(f"TensorRT {api.version} builds strongly typed networks only: FP16 must be in the "
                                "graph; run 'edgefuse calibrate MODEL.onnx --precision fp16 ...' and build from that")
        typed = f"strongly typed (TensorRT {api.version.major}): precision from the graph"
        return BuildPlan(checked, (), (), (*notes, typed))
    network = ("EXPLICIT_BATCH",) if api.explicit_batch else ()
    if graph == "fp16" and api.typing == "flag":
        return BuildPlan("fp16", (), ("STRONGLY_TYPED",), tuple(notes + ["FP16 graph built strongly typed"]))
    flags: list[str] = []
    if graph == "int8":
        flags.append("INT8")  # explicit Q/DQ: the INT8 flag lets TensorRT use its INT8 kernels; scales come from the graph
        if "fp16" in profile.precisions:
            flags.append("FP16")
            notes.append("INT8 with FP16 allowed where the graph has no Q/DQ")
    elif checked == "fp16" or graph == "fp16":
        flags.append("FP16")
    return BuildPlan(checked, tuple(flags), network, tuple(notes))


# ---------------------------------------------------------------------------------------------
# DLA (Jetson Xavier / Orin): the rules NVIDIA documents, checked before anything is built.
# Sources (NVIDIA TensorRT documentation):
#   precision, static shapes: "DLA Supported Layers and Restrictions",
#     https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html
#     (every layer FP16 or INT8; "DLA does not support dynamic dimensions, so the profile's min, max, and opt
#     values must be equal")
#   versions: "Working with DLA", TensorRT 11.5.0,
#     https://docs.nvidia.com/deeplearning/tensorrt/11.5.0/inference-library/work-with-dla.html ("TensorRT 10.7
#     was the last 10.x release that supported DLA"; none in 11.0 - 11.3; 11.4.0 Windows on ARM only; 11.4.1 on
#     Jetson AGX Orin with JetPack 7.2.2+; 11.5.0 does not support JetPack; Jetson Thor has no DLA)
#   strongly typed DLA (11.4.1): precision from the graph's types, no FP16/INT8 flags,
#     https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/dla-strongly-typed-networks.html
#   INT8 on DLA before 11: implicit quantization, scales from a calibration cache (IInt8EntropyCalibrator2, "the
#     required calibrator for DLA"); explicit Q/DQ graphs are converted to a cache for DLA in NVIDIA's own
#     examples (github.com/NVIDIA-AI-IOT/cuDLA-samples, export/qdq_translator), as the issue records.

def dla_unavailable(version: str) -> str | None:
    """Why a TensorRT version has no DLA on a Jetson (None when it has)."""
    v = parse_version(version).key
    if (10, 8) <= v < (11, 0):
        return f"TensorRT {version} has no DLA (10.7 was the last 10.x release with DLA)"
    if (11, 0) <= v <= (11, 3) or (v == (11, 4) and parse_version(version).patch == 0):
        return f"TensorRT {version} has no Jetson DLA (it returned in 11.4.1, for Jetson AGX Orin on JetPack 7.2.2+)"
    if v >= (11, 5):
        return f"TensorRT {version} does not support JetPack (11.4.1 is the last release with Jetson DLA)"
    return None


def cache_version(header: str) -> str | None:
    """The TensorRT version a calibration cache's header line names ('TRT-8502-EntropyCalibration2' -> '8.5.2')."""
    m = re.match(r"^TRT-(\d+)-\w+$", header.strip())
    if not m:
        return None
    n = int(m[1])
    major, rest = (n // 10000, n % 10000) if n >= 100000 else (n // 1000, n % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def plan_dla(requested: str, graph: str, profile: DeviceProfile, trt_version: str, dla_core: int,
             profiles: Mapping[str, Sequence[Sequence[int]]], calibration_cache: str | None = None,
             cache_header: str | None = None) -> BuildPlan:
    """The build plan for a DLA core, or one error with the reason and the fix. ``cache_header``: the first
    line of ``calibration_cache`` (read by the caller)."""
    if not profile.dla_cores:
        raise EdgefuseError(f"--dla {dla_core}: {profile.name} has no DLA; build without --dla")
    if dla_core >= profile.dla_cores:
        raise EdgefuseError(f"--dla {dla_core}: {profile.name} has {profile.dla_cores} DLA core(s); use "
                            f"0..{profile.dla_cores - 1}")
    why = dla_unavailable(trt_version)
    if why:
        raise EdgefuseError(f"--dla: {why}; build for the GPU (without --dla), or use the TensorRT of JetPack 5/6 "
                            "(8.5 / 10.3)")
    dynamic = sorted(name for name, shapes in profiles.items() if any(list(s) != list(shapes[0]) for s in shapes))
    if dynamic:
        name = dynamic[0]
        opt = "x".join(str(d) for d in profiles[name][1])
        given = " / ".join("x".join(str(d) for d in s) for s in profiles[name])
        raise EdgefuseError(f"--dla: input {name} has a dynamic shape ({given}); DLA needs min = opt = max: pass "
                            f"--shapes {name}:{opt},{opt},{opt}")
    api = build_api(trt_version)
    notes = [f"DLA core {dla_core}"]
    if api.typing == "strong":
        if calibration_cache:
            raise EdgefuseError(f"--calibration-cache: TensorRT {api.version} has no implicit INT8; build from the "
                                "Q/DQ graph 'edgefuse calibrate' writes")
        if graph == "fp32" or requested == "fp32":
            raise EdgefuseError(f"--dla: DLA runs FP16 or INT8 only and TensorRT {api.version} takes the precision "
                                "from the graph: build from an FP16 graph ('edgefuse calibrate MODEL.onnx --precision "
                                "fp16') or an INT8 (Q/DQ) graph")
        return BuildPlan(graph, (), (), tuple(notes + ["strongly typed DLA: precision from the graph"]), dla_core)
    if graph == "int8":
        raise EdgefuseError("--dla: DLA takes INT8 from a calibration cache (implicit INT8), not from Q/DQ nodes: "
                            "build from the FP32 graph with --calibration-cache CACHE (written by 'edgefuse calibrate "
                            "... --trt-cache CACHE'), or with --precision fp16")
    want = requested if requested != "auto" else ("int8" if calibration_cache else "fp16")
    if want == "fp32":
        raise EdgefuseError("--dla: DLA runs FP16 or INT8 only, not FP32: pass --precision fp16, or --precision int8 "
                            "with --calibration-cache CACHE from 'edgefuse calibrate ... --trt-cache CACHE'")
    if want == "int8":
        if not calibration_cache:
            raise EdgefuseError("--dla --precision int8 needs the INT8 scales as a calibration cache: run 'edgefuse "
                                "calibrate MODEL.onnx ... --trt-cache MODEL.cache' and pass --calibration-cache "
                                "MODEL.cache")
        if graph != "fp32":
            raise EdgefuseError(f"--dla --precision int8 with a calibration cache builds from the FP32 graph, not an "
                                f"{graph.upper()} one: give the graph 'edgefuse export' wrote")
        named = cache_version(cache_header or "")
        if named is None:
            raise EdgefuseError(f"{calibration_cache}: not a TensorRT calibration cache (first line like "
                                "'TRT-8502-EntropyCalibration2'); write one with 'edgefuse calibrate ... --trt-cache'")
        if parse_version(named).key != api.version.key:
            raise EdgefuseError(f"{calibration_cache}: written for TensorRT {named}, this is TensorRT {api.version}, "
                                f"which ignores another version's cache: rewrite it with 'edgefuse calibrate ... "
                                f"--trt-cache {calibration_cache} --trt-version {api.version}'")
    elif calibration_cache:
        raise EdgefuseError(f"--calibration-cache is for --precision int8 on DLA, not {want}: drop it")
    checked = check_precision(profile, want)
    flags = ("INT8", "FP16") if checked == "int8" else ("FP16",)  # FP16 too: DLA layers without INT8 scales
    network = ("EXPLICIT_BATCH",) if api.explicit_batch else ()
    if checked == "int8":
        notes.append(f"implicit INT8 from {calibration_cache}")
    return BuildPlan(checked, flags, network, tuple(notes), dla_core, calibration_cache if checked == "int8" else None)


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
