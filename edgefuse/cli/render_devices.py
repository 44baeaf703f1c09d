"""``edgefuse devices``' views: the profile table (with the dense per-unit peaks the estimate reads) and the
``--detect`` report (what was read and which rule chose the profile). The JSON of both comes from the same rows /
:meth:`Detection.to_dict`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgefuse.cli.render import format_table

if TYPE_CHECKING:
    from edgefuse.devices import DeviceProfile
    from edgefuse.devices.detect import Detection


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def device_rows(profiles: Sequence[tuple[DeviceProfile, Sequence[str]]]) -> list[dict[str, Any]]:
    """``edgefuse devices``' rows (table and JSON): each profile, its dense peaks and the TensorRT versions it knows."""
    return [{"name": d.name, "title": d.title, "kind": d.kind, "sm": d.compute_capability or "-",
             "precisions": ",".join(d.precisions), "dla": d.dla_cores,
             "memory_gb": d.memory_gb if d.memory_gb is not None else "-",
             "bandwidth_gbs": _num(d.memory_bandwidth_gbs), "gpu_fp16_tflops": _num(d.gpu_fp16_tflops),
             "gpu_int8_tops": _num(d.gpu_int8_tops), "dla_int8_tops": _num(d.dla_int8_tops),
             "tensorrt": ", ".join(trt) or "-"}
            for d, trt in profiles]


def render_devices(rows: Sequence[dict[str, Any]]) -> str:
    table = format_table(rows, ["name", "title", "kind", "sm", "precisions", "dla", "memory_gb", "bandwidth_gbs",
                                "gpu_fp16_tflops", "gpu_int8_tops", "dla_int8_tops", "tensorrt"],
                         ["device", "", "kind", "sm", "fast precisions", "DLA", "GB", "GB/s", "GPU FP16 TF",
                          "GPU INT8 TOPS", "DLA INT8 TOPS", "TensorRT"])
    return table + "\n(peaks dense; GPU FP16 with FP32 accumulation; sources in each devices/*.toml, docs/devices.md)"


def render_detection(det: Detection) -> str:
    """``edgefuse devices --detect``: what was read, the profile chosen, the rule that chose it and why."""
    r = det.readings
    read = [("device-tree model", r.model or "-"),
            ("device-tree compatible", ", ".join(r.compatible) or "-"),
            ("L4T release", r.l4t or "-"),
            ("memory (/proc/meminfo)", f"{r.mem_total_kb} kB ({r.mem_total_gib:.1f} GiB)" if r.mem_total_kb else "-")]
    read += [("nvidia-smi", line) for line in r.gpus] or [("nvidia-smi", "- (not asked on a Jetson)" if r.is_jetson
                                                           else "-")]
    width = max(len(k) for k, _ in read)
    lines = ["read:"] + [f"  {k.ljust(width)}  {v}" for k, v in read]
    lines.append(f"profile: {det.profile.name} ({det.profile.title})")
    lines.append(f"rule: {det.rule}: {det.reason}")
    if det.jetpack is not None:
        jp = det.jetpack
        lines.append(f"JetPack {jp.version} (L4T {jp.l4t}): TensorRT {jp.tensorrt}, CUDA {jp.cuda}")
    lines += [f"note: {n}" for n in det.notes]
    return "\n".join(lines)
