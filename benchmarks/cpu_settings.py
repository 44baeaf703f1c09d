"""ONNX Runtime session settings against latency steadiness: the INT8 CPU engines of TSM-R50 8x224
and the zoo TSM, one engine at a time (no other session's threads around), under thread spinning
on / off and the memory arena / memory pattern on / off. Reports p50, p99 and CoV per setting;
writes docs/cpu_settings.md.

    python benchmarks/cpu_settings.py [--work /tmp/edgefuse-bench-cpu] [--runs 200] [--r50-runs 30]

Reads the engines benchmarks/cpu_engines.py built.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (allow_spinning, cpu memory arena, memory pattern)
    "ONNX Runtime defaults (spinning, arena, pattern)": ("1", True, True),
    "no spinning": ("0", True, True),
    "no arena, no pattern": ("1", False, False),
    "no spinning, no arena": ("0", False, True),
}


def session(path: Path, spin: str, arena: bool, pattern: bool):  # type: ignore[no-untyped-def]
    from edgefuse.backends.ort.runner import session_options
    import onnxruntime as ort

    opts = session_options(None, optimize=False)
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
    lines = ["# ONNX Runtime session settings and latency steadiness", "",
             f"Command: `python benchmarks/cpu_settings.py --runs {args.runs} --r50-runs {args.r50_runs}`, "
             f"{time.strftime('%Y-%m-%d')}; one engine at a time, {args.runs} (zoo) / {args.r50_runs} (ResNet-50) "
             "consecutive runs of one clip after 3 warm-up runs.", ""]
    for name, runs, size in (("synth_tsm_r18w025", args.runs, 112), ("tsm_resnet50", args.r50_runs, 224)):
        engine = args.work / f"{name}.int8.engine"
        if not engine.is_file():
            continue
        x = np.random.default_rng(0).standard_normal((1, 8, 3, size, size)).astype(np.float32)
        lines += [f"## {name} INT8 CPU engine", "", "| setting | p50 ms | p99 ms | CoV |", "|---|---|---|---|"]
        for label, (spin, arena, pattern) in SETTINGS.items():
            s = session(engine, spin, arena, pattern)
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
            del s
        lines.append("")
    (ROOT / "docs" / "cpu_settings.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
