"""The estimate: each kernel charged ``max(2 * MACs / (eta * peak), DRAM bytes / (eta_m * bandwidth)) + overhead`` on
a device profile, with the constants fitted per device class on published measurements (:mod:`.model`, :mod:`.fit`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from edgefuse.devices import DeviceProfile
from edgefuse.errors import EdgefuseError
from edgefuse.estimate.costs import layer_costs
from edgefuse.estimate.cpu_peak import measure_cpu_peak
from edgefuse.estimate.device import CLASSES, DeviceFigures, figures_for_profile
from edgefuse.estimate.kernels import Kernel, group_kernels
from edgefuse.estimate.model import L2_SHARE, ClassConstants, KernelTime, kernel_times, load_fitted
from edgefuse.estimate.result import Comparison, Estimate, LayerEstimate
from edgefuse.graph.metadata import read_metadata

# Fixed time per kernel of the uncalibrated roofline (``calibrated=False``) and of the CPU estimate, in microseconds:
# a TensorRT launch plus the gap between dependent kernels (5 us); ONNX Runtime's per-node dispatch on a CPU (1 us).
# Calibrated GPU and Jetson estimates use the fitted overhead of their device class instead (model.py).
LAUNCH_OVERHEAD_US = {"gpu": 5.0, "jetson": 5.0, "cpu": 1.0}
_WIDTH = {"int8": 1, "fp16": 2, "fp32": 4}
TARGETS = ("gpu", "dla")


def _as_engine_precision(kernels: Sequence[Kernel], precision: str | None) -> list[Kernel]:
    """Kernels as an engine built with a precision flag runs them: a kernel wider than ``precision`` (an FP32 layer of
    an engine built for FP16) runs at ``precision``, its bytes narrowed in proportion."""
    if precision not in _WIDTH:
        return list(kernels)
    out = []
    for k in kernels:
        if _WIDTH.get(k.precision, 4) > _WIDTH[precision]:
            f = _WIDTH[precision] / _WIDTH.get(k.precision, 4)
            k = dataclasses.replace(k, precision=precision, act_bytes=int(k.act_bytes * f),
                                    weight_bytes=int(k.weight_bytes * f))
        out.append(k)
    return out


def _given_rates(peaks: Mapping[str, Any] | None, cpu: bool, cpu_int8: str) -> tuple[dict[str, float], float | None]:
    """Operations per second per precision and bytes per second from ``peaks`` (GFLOP/s, GOP/s, GB/s)."""
    if not peaks:
        return {}, None
    rates: dict[str, float] = {}
    if peaks.get("fp32_gflops"):
        rates["fp32"] = float(peaks["fp32_gflops"]) * 1e9
    if peaks.get("fp16_gflops") and not cpu:
        rates["fp16"] = float(peaks["fp16_gflops"]) * 1e9
        rates.setdefault("fp32", rates["fp16"] / 2)
    if cpu:
        rates.setdefault("fp16", rates.get("fp32", 0.0))  # ONNX Runtime's CPU provider computes fp16 in fp32
        for act in ("u8s8", "s8s8"):
            if peaks.get(f"int8_{act}_gops"):
                rates[f"int8_{act}"] = float(peaks[f"int8_{act}_gops"]) * 1e9
    if peaks.get("int8_gops"):
        rates["int8"] = float(peaks["int8_gops"]) * 1e9
    bw = float(peaks["bandwidth_gbs"]) * 1e9 if peaks.get("bandwidth_gbs") else None
    return {k: v for k, v in rates.items() if v}, bw


def _cpu_times(kernels: Sequence[Kernel], costs_by_name: Mapping[str, Any], rates: Mapping[str, float],
               bandwidth: float | None, overhead_us: float, profile: DeviceProfile, cpu_int8: str) -> list[KernelTime]:
    out = []
    for k in kernels:
        if k.precision == "int8":
            act = costs_by_name[k.name].activation_dtype
            key = "int8_s8s8" if cpu_int8 == "qdq" and act != "uint8" else "int8_u8s8"
            rate = rates.get(key) or rates.get("int8")
            need = f"{key}_gops"
        else:
            rate = rates.get("fp32")
            need = "fp32_gflops"
        if k.macs and not rate:
            raise EdgefuseError(f"peaks for {profile.name} lack {need}, needed for the {k.precision} layers; pass the "
                                "result of measure_cpu_peak() or leave peaks out to measure")
        if k.bytes and not bandwidth:
            raise EdgefuseError(f"peaks for {profile.name} lack bandwidth_gbs; pass the result of measure_cpu_peak() "
                                "or leave peaks out to measure")
        out.append(KernelTime(2.0 * k.macs / rate if k.macs and rate else 0.0,
                              k.bytes / bandwidth if k.bytes and bandwidth else 0.0, overhead_us * 1e-6, k.bytes))
    return out


def uncertainty(consts: ClassConstants | None, device_class: str | None, target: str = "gpu") -> tuple[float | None, str]:
    """(the estimate's relative uncertainty in percent, a sentence saying where it comes from) for a device class:
    the largest error on the held-out published points of the class; None where none was held out."""
    if consts is None or device_class is None:
        return None, "uncalibrated: dense peaks as published, no fitted constants"
    fitted = load_fitted()
    if target == "dla":
        pct = fitted.dla_heldout_max_abs_pct
        return pct, (f"±{pct:.0f}% (the held-out published DLA point; DLA constants fitted on one Xavier NX point)"
                     if pct is not None else "uncertainty unknown: no held-out published DLA point")
    if consts.borrowed_from:
        return None, (f"uncertainty unknown: no published measurement on a {device_class} device; constants of "
                      f"{consts.borrowed_from}")
    if consts.heldout_max_abs_pct is None:
        return None, f"uncertainty unknown: no held-out published point of {device_class}"
    return consts.heldout_max_abs_pct, (f"±{consts.heldout_max_abs_pct:.0f}% (largest error on the "
                                        f"{consts.heldout_points} held-out published point(s) of {device_class})")


def estimate(model: onnx.ModelProto, meta: dict[str, Any] | None, profile: DeviceProfile,
             peaks: Mapping[str, Any] | None = None, *, overhead_us: float | None = None, fuse: bool = True,
             threads: int | None = None, cpu_int8: str = "auto", target: str = "gpu", calibrated: bool = True,
             engine_precision: str | None = None) -> Estimate:
    """Latency of one run of ``model`` on ``profile``, layer by layer in each layer's own precision.

    GPU / Jetson (``target="gpu"``): each kernel (:func:`~edgefuse.estimate.kernels.group_kernels`) takes
    ``max(2 * MACs / (eta_compute * peak[precision]), DRAM bytes / (eta_memory * bandwidth)) + overhead`` with the
    GPU-only peaks of :func:`~edgefuse.estimate.device.figures_for_profile` (an INT8 layer at ``gpu_int8_tops``, FP16
    at ``gpu_fp16_tflops``, FP32 at ``gpu_fp32_tflops`` or TF32 where the GPU has it; a GPU without fast INT8 runs
    INT8 layers at its FP16 rate) and the constants fitted for the device's class (``fitted.toml``). A mixed-precision
    graph (the default INT8 graph keeps its classifier FP32) is estimated layer by layer. ``target="dla"``: every
    layer on one DLA core (INT8, or FP16 for the rest), at ``dla_int8_tops / dla_cores``. ``calibrated=False``: the
    plain roofline (efficiencies 1, no L2, :data:`LAUNCH_OVERHEAD_US` per kernel). ``engine_precision``: the precision
    an engine was built for (builder flags): wider layers run at it. CPU: the figures of :func:`measure_cpu_peak`
    (measured now with ``threads`` unless ``peaks`` are given), uncalibrated. ``peaks`` (keys ``fp32_gflops``,
    ``fp16_gflops``, ``int8_gops``, ``int8_u8s8_gops``, ``int8_s8s8_gops``, ``bandwidth_gbs``) replace the device's
    figures. ``cpu_int8``: the CPU engine's option (``auto``: int8 layers at ``int8_u8s8_gops``; ``qdq``: at the
    figure for their activation type). A figure a layer needs that nothing gives is a one-line error naming the
    device and the field.
    """
    if cpu_int8 not in ("auto", "qdq"):
        raise EdgefuseError(f"cpu_int8 must be auto or qdq, not {cpu_int8!r}")
    if target not in TARGETS:
        raise EdgefuseError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    meta = meta if meta is not None else read_metadata(model)
    cpu = profile.kind == "cpu"
    if cpu and target != "gpu":
        raise EdgefuseError(f"{profile.name} has no DLA; estimate without --dla")
    costs = layer_costs(model, meta, fuse=fuse, runtime="onnxruntime" if cpu else "tensorrt")
    graph_outputs = [o.name for o in model.graph.output]
    kernels = _as_engine_precision(group_kernels(costs, graph_outputs), engine_precision)
    rates, bandwidth = _given_rates(peaks, cpu, cpu_int8)
    used: dict[str, Any] = {}
    consts: ClassConstants | None = None
    figures: DeviceFigures | None = None
    assumptions: list[str] = []

    if cpu:
        if peaks is None:
            measured = measure_cpu_peak(threads=threads)
            used.update(measured, source="measured on this machine (measure_cpu_peak)")
            rates, bandwidth = _given_rates(measured, True, cpu_int8)
        else:
            used.update(peaks)
            used.setdefault("source", "given")
        overhead = LAUNCH_OVERHEAD_US["cpu"] if overhead_us is None else float(overhead_us)
        times = _cpu_times(kernels, {c.name: c for c in costs}, rates, bandwidth, overhead, profile, cpu_int8)
    else:
        figures = figures_for_profile(profile)
        if target == "dla" and not figures.dla_cores:
            raise EdgefuseError(f"{profile.name} has no DLA; estimate without --dla")
        if calibrated:
            fitted = load_fitted()
            consts = fitted.constants.get(figures.device_class)
            if consts is None:
                raise EdgefuseError(f"{profile.name}: no fitted constants for device class {figures.device_class} in "
                                    "edgefuse/estimate/fitted.toml; run 'python benchmarks/estimate_fit.py'")
        else:
            figures = dataclasses.replace(figures, l2_cache_mb=None)
            per_kernel = LAUNCH_OVERHEAD_US.get(profile.kind, 5.0)
            consts = ClassConstants(1.0, 1.0, per_kernel * (figures.gpu_clock_ghz or 1.0), figures.gpu_clock_ghz or 1.0)
        if overhead_us is not None:
            clock = figures.gpu_clock_ghz or consts.reference_clock_ghz
            consts = dataclasses.replace(consts, overhead_kcycles=float(overhead_us) * clock)
        times = kernel_times(kernels, figures, consts, target, rates=rates or None, bandwidth=bandwidth)
        overhead = consts.overhead_us(figures.gpu_clock_ghz)
        used["source"] = ("given, over the figures of " + figures.where) if peaks else (
            "; ".join(f"{k} from {v}" for k, v in figures.sources.items()) or figures.where)
        for prec in sorted({k.precision for k in kernels}):
            try:
                r = rates.get(prec) or (figures.gpu_rate(prec) if target == "gpu" else figures.dla_rate(prec))
                used[f"{prec}_gops"] = r / 1e9
            except EdgefuseError:
                pass
        if bandwidth or figures.memory_bandwidth_gbs:
            used["bandwidth_gbs"] = (bandwidth or figures.bandwidth()) / 1e9
        used.update(device_class=figures.device_class, target=target)
        if calibrated:
            used.update(eta_compute=consts.eta_dla if target == "dla" and consts.eta_dla else consts.eta_compute,
                        eta_memory=consts.eta_memory, overhead_kcycles=consts.overhead_kcycles,
                        harness_ms=consts.harness_ms)

    by_kernel = {k.name: (k, t) for k, t in zip(kernels, times)}
    layers = []
    for c in costs:
        if c.fused is not None:
            layers.append(LayerEstimate(c.name, c.op, c.precision, c.macs, 0, 0.0, 0.0, 0.0, 0.0, "fused", c.fused,
                                        c.fused_into))
            continue
        k, t = by_kernel[c.name]
        layers.append(LayerEstimate(
            c.name, c.op, k.precision, k.macs, k.bytes, t.compute_s * 1e3, t.memory_s * 1e3, t.overhead_s * 1e3,
            t.time_s * 1e3, "compute" if t.compute_s > t.memory_s else "memory", epilogue=k.epilogue))

    pct, note = uncertainty(consts if calibrated and not cpu else None, figures.device_class if figures else None,
                            target)
    assumptions += _assumptions(profile, figures, consts, cpu, calibrated, fuse, target, overhead, cpu_int8, used,
                                kernels, engine_precision)
    if not cpu:
        assumptions.append(f"uncertainty: {note}")
    return Estimate(device=profile.name, profile=str(profile.path), total_ms=sum(lay.time_ms for lay in layers),
                    layers=tuple(layers), peaks=dict(used), overhead_us=overhead, assumptions=tuple(assumptions),
                    fuse=fuse, device_class=figures.device_class if figures else None, target=target,
                    uncertainty_pct=pct if calibrated and not cpu else None,
                    uncertainty=note if not cpu else "uncalibrated: peaks measured on this CPU",
                    harness_ms=consts.harness_ms if consts is not None and calibrated and not cpu else 0.0)


def _assumptions(profile: DeviceProfile, figures: DeviceFigures | None, consts: ClassConstants | None, cpu: bool,
                 calibrated: bool, fuse: bool, target: str, overhead: float, cpu_int8: str, used: Mapping[str, Any],
                 kernels: Sequence[Kernel], engine_precision: str | None) -> list[str]:
    out = []
    if cpu or not calibrated:
        out.append("roofline: each kernel takes max(2 x MACs / peak for its precision, bytes moved / memory bandwidth) "
                   f"plus a fixed {overhead:g} us launch/dispatch overhead")
    else:
        assert consts is not None and figures is not None
        eta = consts.eta_dla if target == "dla" and consts.eta_dla else consts.eta_compute
        out.append(f"fitted roofline ({figures.device_class}: {CLASSES.get(figures.device_class, '')}): each kernel "
                   f"takes max(2 x MACs / ({eta:.3g} x peak), DRAM bytes / ({consts.eta_memory:.3g} x bandwidth)) plus "
                   f"{overhead:.3g} us ({consts.overhead_kcycles:.3g} kcycles at "
                   f"{figures.gpu_clock_ghz or consts.reference_clock_ghz:g} GHz"
                   f"{'' if figures.gpu_clock_ghz else ', the class reference clock: the device has no clock figure'}); "
                   f"constants fitted on published measurements ({load_fitted().command}, docs/estimates.md)")
        out.append(("DLA: every layer on one DLA core (INT8 layers in INT8, the rest in FP16) at dla_int8_tops / "
                    "dla_cores; layers the DLA cannot run (they fall back to the GPU) and the transfers between them "
                    "are not modelled") if target == "dla" else
                   "GPU only: the DLA takes no layer (TensorRT's default; --dla estimates on the DLA)")
        if figures.int8_as and any(k.precision == "int8" for k in kernels):
            out.append(f"{profile.name} has no fast INT8: its INT8 layers are estimated at the {figures.int8_as} rate")
        if figures.l2_cache_mb and target == "gpu":
            out.append(f"L2: a kernel's activations beyond {L2_SHARE:g} x {figures.l2_cache_mb:g} MB come from DRAM; "
                       "weights stay in L2 between runs when all of them fit there")
        if consts.harness_ms:
            out.append(f"not included: a Python caller's cost per call, about {consts.harness_ms:.2g} ms on this class "
                       "(fitted on torch2trt's timings)")
        mixed = sorted({k.precision for k in kernels if k.macs})
        if len(mixed) > 1:
            out.append("mixed precision: " + ", ".join(f"{sum(1 for k in kernels if k.precision == p)} {p} kernels"
                                                       for p in mixed) + ", each at its own precision's peak")
    out += [
        "one clip at the graph's optimal shape (dynamic dimensions at their dynamic_ranges optimum)",
        ("bytes are each kernel's inputs, weights and outputs read or written once: no reuse between layers beyond "
         "the L2 term (pessimistic for small tensors) and no extra traffic for tiling (optimistic for large ones)"),
        ("fusion modelled: constants folded, reshapes free, Q/DQ absorbed by INT8 kernels (8-bit tensors, Q moved "
         "across MaxPool), activation / batch norm / residual Add after a Conv, Gemm or MatMul fused into it" if fuse
         else "no fusion modelled: every node but constant folding is its own kernel, every tensor at its own type"),
        "ops other than Conv, ConvTranspose, Gemm, MatMul (and their quantized forms) count 0 MACs (memory-bound)",
    ]
    if engine_precision in _WIDTH:
        out.append(f"engine built for {engine_precision}: wider layers of the graph estimated at {engine_precision}")
    if cpu:
        out += [
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
        out.append(f"peaks: {used.get('source')}; dense figures (no structured sparsity)")
        out += [f"profile note: {n}" for n in profile.notes if "figure" in n.lower() or "tops" in n.lower()]
    return out


def compare_with_measurement(est: Estimate, measured_ms: float) -> Comparison:
    """How the estimate compares with a measured latency (see :class:`Comparison`)."""
    measured = float(measured_ms)
    if not measured > 0:
        raise EdgefuseError(f"measured latency must be a positive number of milliseconds, not {measured_ms!r}; "
                            "time the engine with 'edgefuse bench' first")
    return Comparison(label=est.label, device=est.device, estimate_ms=est.total_ms, measured_ms=measured,
                      ratio=est.total_ms / measured, error_pct=(est.total_ms - measured) / measured * 100.0,
                      verdict="optimistic" if est.total_ms < measured else "pessimistic")
