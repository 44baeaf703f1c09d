"""Export time, MACs and ONNX Runtime CPU latency of AdaFuse-TSN-R50: dense vs dynamic vs folded, one run.

- dense:   tsn_resnet50 carrying the AdaFuse model's backbone weights (what AdaFuse computes when it keeps
           every channel; what a dense engine costs)
- dynamic: adafuse_tsn_resnet50 with the policy in the graph (argmax): computes every channel plus the policy
- folded:  the policy folded on clips into a smaller static graph (--policy static), at the automatic tau
           (>= 99% top-1 agreement with the dynamic policy on the clips) and at fixed taus

The weights are the official-layout deterministic weights of tests/official (no trained AdaFuse-R50 is
available offline) and the clips are random, so the policy is not a trained one: the folded savings here
show the mechanism and its overheads, not the savings of a trained policy.

    python benchmarks/export_adafuse_r50.py [--iterations 20] [--out benchmarks/results/export_adafuse_r50.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from official.synth import synth_state_dict  # noqa: E402

from edgefuse.export import ExportConfig, export  # noqa: E402
from edgefuse.graph.ort import ort_session  # noqa: E402
from edgefuse.graph.query import graph_macs  # noqa: E402
from edgefuse.models import create_model, save_checkpoint  # noqa: E402


def latency(path: Path, shape: tuple[int, ...], iterations: int, threads: int) -> dict[str, float]:
    sess = ort_session(str(path), threads=threads)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(1000 * (time.perf_counter() - t))
    a = np.array(times)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()), "cov": float(a.std() / a.mean()), "raw_ms": times}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-export"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export_adafuse_r50.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    fx = json.loads((ROOT / "tests/official/fixtures/adafuse_tsn_r50.json").read_text())
    ckpt = args.work / "adafuse_tsn_r50_official_layout.pth"
    torch.save({"state_dict": synth_state_dict(fx["entries"])}, ckpt)
    ada = create_model("adafuse_tsn_resnet50", checkpoint=ckpt)
    tsn = create_model("tsn_resnet50", num_classes=ada.config.num_classes)
    tsn.load_state_dict({k: v for k, v in ada.state_dict().items() if k in tsn.state_dict()})
    dense_ckpt = save_checkpoint(tsn, args.work / "dense.pth")
    clips = args.work / "clips.npz"
    np.savez(clips, clips=np.random.default_rng(1).standard_normal((args.clips, 8, 3, 224, 224)).astype(np.float32))

    rows = []
    runs = [
        ("dense (tsn_resnet50, same backbone)", dict(model="tsn_resnet50", checkpoint=dense_ckpt)),
        ("dynamic (policy in graph)", dict(model="adafuse_tsn_resnet50", checkpoint=ckpt)),
        ("folded, auto tau (>= 99% agreement)", dict(model="adafuse_tsn_resnet50", checkpoint=ckpt, policy="static",
                                                     policy_clips=clips)),
        ("folded, tau 0.34", dict(model="adafuse_tsn_resnet50", checkpoint=ckpt, policy="static", policy_clips=clips,
                                  tau=0.34)),
    ]
    for label, kw in runs:
        out = args.work / (label.split()[0] + ("_" + str(kw.get("tau")) if kw.get("tau") else "") + ".onnx")
        t = time.perf_counter()
        result = export(ExportConfig(output=out, segments=8, size=224, **kw))
        seconds = time.perf_counter() - t
        macs, _ = graph_macs(onnx.load(str(out)))
        lat = latency(out, (1, 8, 3, 224, 224), args.iterations, args.threads)
        row = {"variant": label, "export_s": seconds, "graph_gmacs_clip": macs / 1e9,
               "model_gmacs_clip": result.macs_per_clip / 1e9, "params_m": result.params / 1e6, **lat}
        if result.fold:
            row["fold"] = {k: v for k, v in result.fold.to_dict().items() if k in ("tau", "agreement", "macs", "taus_tried")}
        rows.append(row)
        print(f"{label:40s} export {seconds:6.1f} s  {macs / 1e9:7.3f} GMACs/clip  p50 {lat['p50_ms']:7.1f} ms  "
              f"p90 {lat['p90_ms']:7.1f} ms", flush=True)
    report = {
        "command": "python benchmarks/export_adafuse_r50.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
