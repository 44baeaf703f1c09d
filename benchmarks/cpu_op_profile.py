"""Where an ONNX Runtime CPU engine spends its time, per operator type (ONNX Runtime's own profiler):
the explanation behind docs/cpu_engines.md's ratios (what stays FP32 in GSF and AdaFuse, what the
fixed per-layer costs of the small zoo models are).

    python benchmarks/cpu_op_profile.py [--work /tmp/edgefuse-bench-cpu] [--models gsf_resnet50,...] [--runs 5]

Reads the engines benchmarks/cpu_engines.py built (<model>.fp32.engine, <model>.int8.engine); writes
docs/cpu_op_profile.md and benchmarks/results/cpu_op_profile.json.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


PARTS = (("/gsf/", "GSF module"), ("adafuse", "AdaFuse module (policy, fusion)"), ("shift", "temporal shift"))


def part_of(node: str) -> str:
    """Which part of the model a node belongs to, by the module path the exporter put in its name."""
    low = node.lower()
    return next((label for key, label in PARTS if key in low), "backbone and head")


def profile_engine(path: Path, runs: int) -> dict[str, Any]:
    """Per operator type: total kernel milliseconds per run and node count; plus the wall p50."""
    import onnx
    import onnxruntime as ort

    from edgefuse.backends.sidecar import read_sidecar
    from edgefuse.graph.ort import session_options

    saved = read_sidecar(path).settings.get("intra_op_num_threads")
    opts = session_options(saved if isinstance(saved, int) else None, optimize=False, profile=True)
    opts.profile_file_prefix = str(Path("/tmp") / f"ort_profile_{path.stem}")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(2):
        session.run(None, {inp.name: x})
    wall = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {inp.name: x})
        wall.append(1000 * (time.perf_counter() - t))
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink(missing_ok=True)
    per_op: dict[str, float] = defaultdict(float)
    per_part: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000  # microseconds -> ms
            per_part[part_of(e["name"])] += e["dur"] / 1000
    total_runs = runs + 2
    kinds = [n.op_type for n in onnx.load(str(path)).graph.node]
    ops = {op: {"ms_per_run": ms / total_runs, "nodes": kinds.count(op)} for op, ms in per_op.items()}
    parts = {k: v / total_runs for k, v in per_part.items()}
    return {"engine": path.name, "wall_p50_ms": float(np.median(wall)), "ops": ops, "parts_ms_per_run": parts,
            "kernel_ms_per_run": sum(v["ms_per_run"] for v in ops.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-cpu"))
    ap.add_argument("--models", default="tsn_resnet50,tsm_resnet50,gsf_resnet50,adafuse_tsm_resnet50,"
                                         "synth_tsm_r18w025,synth_gsf_r18w025")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    results = []
    lines = ["# Where the ONNX Runtime CPU engines spend their time", "",
             f"Command: `python benchmarks/cpu_op_profile.py --models {args.models} --runs {args.runs}`, "
             f"{time.strftime('%Y-%m-%d')}; ONNX Runtime's profiler, one clip per run, kernel time per operator "
             "type (the engine as build-engine saved it, so fused operators appear under their fused names).", ""]
    for name in args.models.split(","):
        for kind in ("fp32", "int8"):
            path = args.work / f"{name}.{kind}.engine"
            if not path.is_file():
                continue
            res = profile_engine(path, args.runs)
            res["model"], res["kind"] = name, kind
            results.append(res)
            total = res["kernel_ms_per_run"]
            lines += [f"## {name} {kind.upper()} engine: {res['wall_p50_ms']:.1f} ms p50 (kernels {total:.1f} ms)", "",
                      "| operator | nodes | ms per run | share |", "|---|---|---|---|"]
            ranked = sorted(res["ops"].items(), key=lambda kv: -kv[1]["ms_per_run"])
            for op, v in ranked[:args.top]:
                lines.append(f"| {op} | {v['nodes']} | {v['ms_per_run']:.2f} | {100 * v['ms_per_run'] / total:.1f}% |")
            rest = sum(v["ms_per_run"] for _, v in ranked[args.top:])
            if rest:
                lines.append(f"| (others) | | {rest:.2f} | {100 * rest / total:.1f}% |")
            lines += ["", "| part of the model | ms per run | share |", "|---|---|---|"]
            for part, ms in sorted(res["parts_ms_per_run"].items(), key=lambda kv: -kv[1]):
                lines.append(f"| {part} | {ms:.2f} | {100 * ms / total:.1f}% |")
            lines.append("")
            print(name, kind, f"{res['wall_p50_ms']:.1f} ms", flush=True)
    (ROOT / "docs" / "cpu_op_profile.md").write_text("\n".join(lines) + "\n")
    out = ROOT / "benchmarks" / "results" / "cpu_op_profile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
