"""The roofline: each kernel charged ``max(2 * MACs / peak, bytes / bandwidth) + overhead`` on a device profile."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx

from edgefuse.devices import DeviceProfile
from edgefuse.errors import EdgefuseError
from edgefuse.estimate.costs import layer_costs
from edgefuse.estimate.cpu_peak import measure_cpu_peak
from edgefuse.estimate.result import Comparison, Estimate, LayerCost, LayerEstimate
from edgefuse.graph.metadata import read_metadata

# Fixed time added to every layer that runs as its own kernel, in microseconds. GPU/Jetson: a TensorRT kernel launch
# plus the gap between dependent kernels on one stream is a few microseconds (5 us taken; Jetsons are at the high end,
# desktop GPUs with CUDA graphs lower). CPU: ONNX Runtime's per-node dispatch (kernel lookup, allocation from the
# arena, thread-pool fork/join for a parallel kernel) is about a microsecond (1 us taken).
LAUNCH_OVERHEAD_US = {"gpu": 5.0, "jetson": 5.0, "cpu": 1.0}


def _profile_peaks(profile: DeviceProfile) -> dict[str, Any]:
    peaks: dict[str, Any] = {"source": f"published figures in {profile.path}"}
    if profile.fp16_tflops is not None:
        peaks["fp16_gflops"] = profile.fp16_tflops * 1e3
        peaks["fp32_gflops"] = profile.fp16_tflops * 1e3 / 2
    if profile.int8_tops is not None:
        peaks["int8_gops"] = profile.int8_tops * 1e3
    if profile.memory_bandwidth_gbs is not None:
        peaks["bandwidth_gbs"] = profile.memory_bandwidth_gbs
    return peaks


def _missing(profile: DeviceProfile, key: str, why: str) -> EdgefuseError:
    return EdgefuseError(f"{profile.path}: no {key}, needed for {why}; add the device's published dense figure as "
                         f"{key} to the profile, or pass measured peaks")


def estimate(model: onnx.ModelProto, meta: dict[str, Any] | None, profile: DeviceProfile,
             peaks: Mapping[str, Any] | None = None, *, overhead_us: float | None = None, fuse: bool = True,
             threads: int | None = None, cpu_int8: str = "auto") -> Estimate:
    """Roofline latency of one run of ``model`` on ``profile``.

    Each kernel takes ``max(2 * MACs / peak[precision], bytes / bandwidth) + overhead_us`` (default
    :data:`LAUNCH_OVERHEAD_US` for the device kind); fused nodes take nothing (see :func:`layer_costs`).

    GPU / Jetson: ``fp16_tflops`` for fp16 layers, ``int8_tops`` for int8, ``fp16_tflops / 2`` for fp32 (profiles
    carry no fp32 figure; TensorRT runs fp32 convolutions as TF32 on tensor cores, half the fp16 rate on Ampere and
    later), ``memory_bandwidth_gbs``; a figure a layer needs that the profile lacks is an error. CPU: the figures of
    :func:`measure_cpu_peak` (measured now with ``threads`` unless ``peaks`` are given). ``peaks`` (keys
    ``fp32_gflops``, ``fp16_gflops``, ``int8_gops``, ``int8_u8s8_gops``, ``int8_s8s8_gops``, ``bandwidth_gbs``)
    override the profile's figures on any device. ``cpu_int8`` is the CPU engine's option of the same name: ``auto``
    (the engine re-expresses int8 activations as uint8) charges every int8 layer at ``int8_u8s8_gops``; ``qdq`` (the
    graph as it is) at the figure for its activation type, ``int8_s8s8_gops`` for int8 activations.
    """
    if cpu_int8 not in ("auto", "qdq"):
        raise EdgefuseError(f"cpu_int8 must be auto or qdq, not {cpu_int8!r}")
    meta = meta if meta is not None else read_metadata(model)
    cpu = profile.kind == "cpu"
    costs = layer_costs(model, meta, fuse=fuse, runtime="onnxruntime" if cpu else "tensorrt")
    used: dict[str, Any] = {}
    if cpu and peaks is None:
        used.update(measure_cpu_peak(threads=threads))
        used["source"] = "measured on this machine (measure_cpu_peak)"
    elif not cpu:
        used.update(_profile_peaks(profile))
    if peaks is not None:
        used.update(peaks)
        used.setdefault("source", "given")
        if peaks.get("source") is None and not cpu:
            used["source"] = f"given, over the published figures in {profile.path}"
    overhead = LAUNCH_OVERHEAD_US.get(profile.kind, 1.0) if overhead_us is None else float(overhead_us)

    def rate(lay: LayerCost) -> float:
        """Operations per second for a layer's precision."""
        if lay.precision == "int8":
            signed = cpu_int8 == "qdq" and lay.activation_dtype != "uint8"
            keys = ([f"int8_{'s8s8' if signed else 'u8s8'}_gops"] if cpu else []) + ["int8_gops"]
            why, figure = "the int8 layers", "int8_tops"
        elif lay.precision == "fp16" and not cpu:
            keys, why, figure = ["fp16_gflops"], "the fp16 layers", "fp16_tflops"
        else:
            keys = ["fp32_gflops"] + (["fp16_gflops"] if not cpu else [])
            why = "the fp16 layers (run in fp32 on a CPU)" if lay.precision == "fp16" else "the fp32 layers"
            figure = "fp16_tflops" if not cpu else "fp32_gflops"
            if not cpu:
                why += " (estimated at fp16_tflops / 2)"
        for k in keys:
            v = used.get(k)
            if v:
                return float(v) * 1e9 / (2.0 if k == "fp16_gflops" and lay.precision == "fp32" else 1.0)
        if cpu:
            raise EdgefuseError(f"peaks for {profile.name} lack {keys[0]}, needed for {why}; pass the result of "
                                f"measure_cpu_peak() or leave peaks out to measure")
        raise _missing(profile, figure, why)

    bandwidth = used.get("bandwidth_gbs")

    def bw() -> float:
        if not bandwidth:
            if cpu:
                raise EdgefuseError(f"peaks for {profile.name} lack bandwidth_gbs; pass the result of "
                                    "measure_cpu_peak() or leave peaks out to measure")
            raise _missing(profile, "memory_bandwidth_gbs", "the memory-bound time of every layer")
        return float(bandwidth) * 1e9

    # kernels: a node of its own plus the epilogue nodes fused into it; tensors passed inside a kernel are free
    members: dict[str, list[LayerCost]] = {c.name: [c] for c in costs if c.fused is None}
    for c in costs:
        if c.fused == "epilogue" and c.fused_into in members:
            members[c.fused_into].append(c)
    readers: dict[str, set[str]] = {}
    for c in costs:
        for t in (*c.inputs, *c.weights):
            readers.setdefault(t, set()).add(c.name)
    graph_outputs = {o.name for o in model.graph.output}

    layers = []
    for c in costs:
        if c.fused is not None:
            layers.append(LayerEstimate(c.name, c.op, c.precision, c.macs, 0, 0.0, 0.0, 0.0, 0.0, "fused", c.fused,
                                        c.fused_into))
            continue
        group = members[c.name]
        inside = {t for m in group for t in m.outputs}
        names = {m.name for m in group}
        moved: dict[str, int] = {}
        for m in group:
            moved.update({t: b for t, b in (*m.inputs.items(), *m.weights.items()) if t not in inside})
            moved.update({t: b for t, b in m.outputs.items()
                          if t in graph_outputs or not readers.get(t) or readers[t] - names})
        nbytes = sum(moved.values())
        macs = sum(m.macs for m in group)
        compute_s = 2.0 * macs / rate(c) if macs else 0.0
        memory_s = nbytes / bw() if nbytes else 0.0
        body = max(compute_s, memory_s)
        layers.append(LayerEstimate(
            c.name, c.op, c.precision, macs, nbytes, compute_s * 1e3, memory_s * 1e3, overhead / 1e3,
            body * 1e3 + overhead / 1e3, "compute" if compute_s > memory_s else "memory",
            epilogue=tuple(m.name for m in group[1:])))

    assumptions = [
        ("roofline: each kernel takes max(2 x MACs / peak for its precision, bytes moved / memory bandwidth) plus a "
         f"fixed {overhead:g} us launch/dispatch overhead"),
        "one clip at the graph's optimal shape (dynamic dimensions at their dynamic_ranges optimum)",
        ("bytes are each kernel's inputs, weights and outputs read or written once from DRAM: no cache reuse between "
         "layers (pessimistic for small tensors) and no extra traffic for tiling (optimistic for large ones)"),
        ("fusion modelled: constants folded, reshapes free, Q/DQ absorbed by INT8 kernels (8-bit tensors), "
         "activation / batch norm / residual Add after a Conv, Gemm or MatMul fused into it" if fuse else
         "no fusion modelled: every node but constant folding is its own kernel, every tensor at its own type"),
        "ops other than Conv, ConvTranspose, Gemm, MatMul (and their quantized forms) count 0 MACs (memory-bound)",
    ]
    if cpu:
        assumptions += [
            "peaks: " + (f"measured here: {used.get('method')}" if used.get("method") else str(used.get("source"))),
            ("fp32 layers at the float32 MatMul rate; int8 layers at the uint8 x int8 MatMulInteger rate (the CPU "
             "engine re-expresses int8 activations as uint8, --cpu-int8 auto)" if cpu_int8 == "auto" else
             "fp32 layers at the float32 MatMul rate; int8 layers at the MatMulInteger rate for their activation type "
             "as in the graph (uint8 x int8 or int8 x int8, --cpu-int8 qdq)"),
            ("fp16 layers at the fp32 rate (ONNX Runtime's CPU provider casts fp16 to fp32 on CPUs without fp16 "
             "arithmetic)"),
            ("a Q/DQ Conv or Gemm whose output does not go straight to a QuantizeLinear runs in fp32 with its "
             "DequantizeLinear nodes as kernels (ONNX Runtime forms QLinearConv / QGemm only then)"),
        ]
    else:
        assumptions += [
            (f"peaks: {used.get('source')}; dense peaks are upper bounds that real kernels do not reach, so the "
             "compute-bound time is optimistic"),
            ("fp32 layers at fp16_tflops / 2 (no fp32 figure in the profile; TensorRT runs fp32 as TF32 on tensor "
             "cores)"),
        ]
        assumptions += [f"profile note: {n}" for n in profile.notes if "figure" in n.lower() or "tops" in n.lower()]
    return Estimate(device=profile.name, profile=str(profile.path), total_ms=sum(lay.time_ms for lay in layers),
                    layers=tuple(layers), peaks={k: v for k, v in used.items()}, overhead_us=overhead,
                    assumptions=tuple(assumptions), fuse=fuse)


def compare_with_measurement(est: Estimate, measured_ms: float) -> Comparison:
    """How the estimate compares with a measured latency (see :class:`Comparison`)."""
    measured = float(measured_ms)
    if not measured > 0:
        raise EdgefuseError(f"measured latency must be a positive number of milliseconds, not {measured_ms!r}; "
                            "time the engine with 'edgefuse bench' first")
    return Comparison(label=est.label, device=est.device, estimate_ms=est.total_ms, measured_ms=measured,
                      ratio=est.total_ms / measured, error_pct=(est.total_ms - measured) / measured * 100.0,
                      verdict="optimistic" if est.total_ms < measured else "pessimistic")
