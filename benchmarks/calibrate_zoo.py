"""Calibrate every shipped zoo model (INT8 and FP16) on the synthetic benchmark, and the full-size
ResNet-50 models (8x224, random weights: no trained checkpoint ships), then time FP32, INT8 and
FP16 side by side in one ONNX Runtime CPU run.

    python benchmarks/calibrate_zoo.py [--synth DIR] [--r50] [--out benchmarks/results/calibrate.json]

Figures per model: top-1 FP32 / INT8 / FP16 on the val split (250 clips, held out from
calibration), top-1 agreement, mean decision flip rate (AdaFuse), calibration wall time for 256
clips (decoding + statistics + building + checking), and latency p50 / p90 of one clip per
precision, measured interleaved (round robin) so every precision sees the same machine state.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgefuse.export.api import export
from edgefuse.export.config import make_config
from edgefuse.models import list_pretrained
from edgefuse.quantize import CalibrateConfig, calibrate

log = logging.getLogger("calibrate_zoo")
R50 = ("tsm_resnet50", "gsf_resnet50", "adafuse_tsm_resnet50")


def ensure_synth(path: Path) -> Path:
    if not (path / "val.txt").is_file():
        subprocess.run([sys.executable, "-m", "edgefuse", "synth", "-o", str(path), "--train", "0",
                        "--formats", "frames"], check=True)
    return path


def latency(paths: dict[str, Path], clip: np.ndarray, runs: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    import onnxruntime as ort

    sessions = {}
    for name, p in paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        sessions[name] = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    feeds = {name: {s.get_inputs()[0].name: clip} for name, s in sessions.items()}
    for _ in range(warmup):
        for name, s in sessions.items():
            s.run(None, feeds[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):  # round robin: the same machine state for every precision
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds[name])
            times[name].append(1000 * (time.perf_counter() - t))
    return {name: {"p50_ms": float(np.percentile(v, 50)), "p90_ms": float(np.percentile(v, 90)),
                   "mean_ms": float(np.mean(v)), "raw_ms": [round(x, 3) for x in v]} for name, v in times.items()}


def run_model(name: str, model: str, synth: Path, work: Path, runs: int, num_clips: int,
              precisions: tuple[str, ...] = ("int8", "fp16"), num_holdout: int = 250, **export_kw: object
              ) -> dict[str, object]:
    fp32 = export(make_config(None, work / f"{name}.onnx", model=model, **export_kw)).path
    row: dict[str, object] = {"name": name}
    paths = {"fp32": fp32}
    for precision in precisions:
        t = time.monotonic()
        res = calibrate(CalibrateConfig(model=fp32, clips=synth / "calib.txt", output=work / f"{name}.{precision}.onnx",
                                        precision=precision, num_clips=num_clips, holdout=synth / "val.txt",
                                        num_holdout=num_holdout, cache_dir=work / "cache", progress=False))
        report = res.report.to_dict()
        r = report["result"]
        row[precision] = {
            "seconds": round(time.monotonic() - t, 1), "timings": report["timings"],
            "top1_fp32": r["top1_reference"], "top1": r["top1_candidate"], "agreement": r["top1_agreement"],
            "mean_flip_rate": r["mean_flip_rate"], "max_abs_logit_error": r["max_abs_logit_error"],
            "macs": report["macs"],
        }
        paths[precision] = res.path
        log.info("%s %s: agreement %.4f, top-1 %s -> %s, %.1f s", name, precision, r["top1_agreement"],
                 r["top1_reference"], r["top1_candidate"], time.monotonic() - t)
    import onnx

    from edgefuse.graph.metadata import read_metadata

    meta = read_metadata(onnx.load(str(fp32), load_external_data=False))
    size, t_ = int(meta["input_size"]), int(meta["segments"])
    clip = np.random.default_rng(0).standard_normal((1, t_, 3, size, size)).astype(np.float32)
    row["latency"] = latency(paths, clip, runs)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", type=Path, default=Path("/tmp/edgefuse-bench-synth"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-calibrate"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "calibrate.json")
    ap.add_argument("--r50", action="store_true", help="Also the ResNet-50 8x224 models (random weights).")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--r50-clips", type=int, default=256)
    ap.add_argument("--r50-holdout", type=int, default=250)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    synth = ensure_synth(args.synth)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [run_model(p.name, p.name, synth, args.work, args.runs, 256) for p in list_pretrained()]
    if args.r50:
        for m in R50:
            rows.append(run_model(m, m, synth, args.work, max(5, args.runs // 3), args.r50_clips, ("int8",),
                                  args.r50_holdout, num_classes=10))
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": {
        "platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| model | top-1 FP32 | INT8 | FP16 | agree INT8 | agree FP16 | flips INT8 | calib 256 clips (s) | "
          "FP32 p50 ms | INT8 p50 ms | FP16 p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        i8, lat = r["int8"], r["latency"]  # type: ignore[index]
        f16 = r.get("fp16") or {"top1": None, "agreement": float("nan")}  # type: ignore[attr-defined]
        top = (lambda v: "-" if v is None else f"{100 * v:.1f}%")  # noqa: E731
        flips = "-" if i8["mean_flip_rate"] is None else f"{100 * i8['mean_flip_rate']:.2f}%"
        print(f"| {r['name']} | {top(i8['top1_fp32'])} | {top(i8['top1'])} | {top(f16['top1'])} | "
              f"{100 * i8['agreement']:.1f}% | {100 * f16['agreement']:.1f}% | {flips} | {i8['seconds']} | "
              f"{lat['fp32']['p50_ms']:.1f} | {lat['int8']['p50_ms']:.1f} | "
              f"{lat['fp16']['p50_ms'] if 'fp16' in lat else float('nan'):.1f} |")


if __name__ == "__main__":
    main()
