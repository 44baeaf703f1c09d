"""ONNX Runtime session settings against latency and its steadiness: the FP32 engine of the zoo TSN and
the INT8 CPU engines of the zoo TSM and TSM-R50 8x224, one session at a time (no other session's threads
around), under the thread count left to ONNX Runtime (one per physical core, pinned) or given explicitly
(unpinned), thread spinning on / off and the memory arena / memory pattern on / off. Reports p50, p99 and
CoV per setting; writes docs/cpu_settings.md and benchmarks/results/cpu_settings.json.

    python benchmarks/cpu_settings.py [--work /tmp/edgefuse-bench-cpu] [--runs 200] [--r50-runs 30]

Reads the engines benchmarks/cpu_engines.py built.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (intra-op threads (None: ONNX Runtime's count, pinned), allow_spinning, arena, pattern)
    "edgefuse default: ORT's thread count (pinned), spinning, arena, pattern": (None, "1", True, True),
    "2 threads given explicitly (unpinned)": (2, "1", True, True),
    "1 thread": (1, "1", True, True),
    "no spinning": (None, "0", True, True),
    "no arena, no pattern": (None, "1", False, False),
    "no spinning, no arena": (None, "0", False, True),
}
ENGINES = (("synth_tsn_r18w025", "fp32", 112), ("synth_tsm_r18w025", "int8", 112), ("tsm_resnet50", "int8", 224))


def session(path: Path, threads: int | None, spin: str, arena: bool, pattern: bool):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from edgefuse.backends.ort.runner import session_options

    opts = session_options(threads, optimize=False)
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.enable_cpu_mem_arena = arena
    opts.enable_mem_pattern = pattern
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-cpu"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--r50-runs", type=int, default=30)
    args = ap.parse_args()
    results: list[dict[str, object]] = []
    lines = ["# ONNX Runtime session settings and latency steadiness", "",
             f"Command: `python benchmarks/cpu_settings.py --runs {args.runs} --r50-runs {args.r50_runs}`, "
             f"{time.strftime('%Y-%m-%d')}; one engine at a time, {args.runs} (zoo) / {args.r50_runs} (ResNet-50) "
             "consecutive runs of one clip after 3 warm-up runs.", ""]
    for name, kind, size in ENGINES:
        runs = args.r50_runs if size == 224 else args.runs
        engine = args.work / f"{name}.{kind}.engine"
        if not engine.is_file():
            continue
        x = np.random.default_rng(0).standard_normal((1, 8, 3, size, size)).astype(np.float32)  # (1, T, 3, H, W)
        lines += [f"## {name} {kind.upper()} engine", "", "| setting | p50 ms | p99 ms | CoV |", "|---|---|---|---|"]
        for label, (threads, spin, arena, pattern) in SETTINGS.items():
            s = session(engine, threads, spin, arena, pattern)
            feed = {s.get_inputs()[0].name: x}
            for _ in range(3):
                s.run(None, feed)
            t = []
            for _ in range(runs):
                a = time.perf_counter()
                s.run(None, feed)
                t.append(1000 * (time.perf_counter() - a))
            arr = np.asarray(t)
            lines.append(f"| {label} | {np.median(arr):.2f} | {np.percentile(arr, 99):.2f} | "
                         f"{100 * arr.std() / arr.mean():.1f}% |")
            print(name, label, f"{np.median(arr):.2f}", flush=True)
            results.append({"engine": engine.name, "setting": label, "p50_ms": float(np.median(arr)),
                            "p99_ms": float(np.percentile(arr, 99)), "cov": float(arr.std() / arr.mean()),
                            "raw_ms": [round(v, 3) for v in t]})
            del s
        lines.append("")
    (ROOT / "docs" / "cpu_settings.md").write_text("\n".join(lines) + "\n")
    out = ROOT / "benchmarks" / "results" / "cpu_settings.json"
    out.write_text(json.dumps({"command": lines[2], "results": results}, indent=1))


if __name__ == "__main__":
    main()
