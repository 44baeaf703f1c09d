"""Engines side by side, one run: PyTorch eager FP32, ONNX Runtime FP32 (the plain export), INT8 as the
Q/DQ graph, the INT8 CPU engine (u8 x s8 rewrite), and AdaFuse folded, for the shipped zoo and the
ResNet-50 8x224 models; writes the table to docs/benchmarks.md.

    python benchmarks/engines.py [--work /tmp/edgefuse-bench-calibrate] [--iterations 30]

Reads the graphs benchmarks/calibrate_zoo.py wrote (run it first); builds the engines; times every
row of a model round robin in one process (edgefuse.bench).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from edgefuse.backends import BuildConfig, build_engine
from edgefuse.backends.ort.cpu import cpu_identity
from edgefuse.bench import BenchConfig, bench
from edgefuse.export.api import export
from edgefuse.export.config import make_config
from edgefuse.models import list_pretrained

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-calibrate"))
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--synth", type=Path, default=Path("/tmp/edgefuse-bench-synth"))
    ap.add_argument("--r50-iterations", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    work = args.work
    models = [(p.name, p.path, args.iterations) for p in list_pretrained()]
    models += [(m, None, args.r50_iterations) for m in ("tsm_resnet50", "gsf_resnet50", "adafuse_tsm_resnet50")]
    results = []
    for name, ckpt, iters in models:
        fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
        if not fp32.is_file() or not int8.is_file():
            print(f"skip {name}: run benchmarks/calibrate_zoo.py first", file=sys.stderr)
            continue
        e_fp32 = build_engine(BuildConfig(fp32, work / f"{name}.fp32.engine", device="cpu")).path
        e_int8 = build_engine(BuildConfig(int8, work / f"{name}.int8.engine", device="cpu")).path
        engines, names = [fp32, e_fp32, int8, e_int8], ["ORT FP32 (plain export)", "edgefuse FP32 engine",
                                                         "ORT INT8 (Q/DQ as is)", "edgefuse INT8 CPU engine"]
        if "adafuse" in name and ckpt is not None:
            folded = work / f"{name}.folded.onnx"
            if not folded.is_file():
                policy_npz = work / "policy_clips.npz"
                if not policy_npz.is_file():  # the calibration clips, preprocessed as the model was trained
                    from edgefuse.clips import Preprocess, Sampling
                    from edgefuse.clips import open as open_clips
                    from edgefuse.models.registry import resolve_config

                    pre = Preprocess.from_model_config(resolve_config(name))  # the pretrained tag's config
                    open_clips(args.synth / "calib.txt", pre,
                               Sampling(num_segments=8), num_clips=64, progress=False).to_npz(policy_npz)
                export(make_config(None, folded, model=name, policy="static", tau=1.0, policy_clips=policy_npz))
            if folded.is_file():
                engines.append(build_engine(BuildConfig(folded, work / f"{name}.folded.engine", device="cpu")).path)
                names.append("edgefuse FP32 engine, policy folded")
        rep = bench(BenchConfig(engines=tuple(engines), device="cpu", iterations=iters, warmup=3, eager=ckpt,
                                names=tuple(names), progress=False)).to_dict()
        results.append({"model": name, "input": rep["input"], "rows": [{k: v for k, v in r.items() if k != "raw_ms"}
                                                                         for r in rep["rows"]]})
        (work / f"{name}.bench.json").write_text(json.dumps(rep, indent=1))
        print(name, [(r["name"], round(r["median_ms"], 1)) for r in rep["rows"]], flush=True)
    cpu = cpu_identity()
    lines = ["# Benchmarks: engines side by side", "",
             f"Command: `python benchmarks/engines.py --iterations {args.iterations} --r50-iterations "
             f"{args.r50_iterations}` (after `python benchmarks/calibrate_zoo.py --r50`), {time.strftime('%Y-%m-%d')}.",
             f"Machine: {cpu['name']}, {cpu['cores']} cores ({', '.join(cpu['isa'])}), {platform.platform()}, "
             "ONNX Runtime CPU, threads = physical cores. Every row of a model ran round robin in one process; "
             "ResNet-50 models have random weights (no trained checkpoint ships), so their eager row is absent "
             "and accuracy is not meaningful; zoo accuracy is in benchmarks/results.md.", ""]
    for res in results:
        lines += [f"## {res['model']} ({'x'.join(str(d) for d in res['input'])})", "",
                  "| runs as | p50 ms | p99 ms | CoV | clips/s | vs first row |", "|---|---|---|---|---|---|"]
        for r in res["rows"]:
            lines.append(f"| {r['name']} | {r['median_ms']:.1f} | {r['p99_ms']:.1f} | {100 * r['cov']:.1f}% | "
                         f"{r['clips_per_s']:.1f} | {r['speedup_vs_first']:.2f}x |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
