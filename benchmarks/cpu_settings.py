"""ONNX Runtime session settings against latency and its steadiness: the FP32 engine of the zoo TSN and
the INT8 CPU engines of the zoo TSM and TSM-R50 8x224.

One session at a time (each deleted before the next): the thread count left to ONNX Runtime
(one per physical core, pinned; edgefuse's default) or given explicitly (unpinned), one thread, thread
spinning on / off, spinning kept after each run (ONNX Runtime's default) or stopped at its end
(edgefuse's), the memory arena / memory pattern on / off; then two sessions of the same engine in one
process run in turn, with spinning kept after runs or stopped. Reports p50, p99 and CoV per setting;
writes docs/cpu_settings.md and benchmarks/results/cpu_settings.json.

    python benchmarks/cpu_settings.py [--work /tmp/edgefuse-bench-cpu] [--runs 200] [--r50-runs 30]

Reads the engines benchmarks/cpu_engines.py built.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (intra-op threads (None: ONNX Runtime's count, pinned), allow_spinning, stop spinning
    # after each run, arena, pattern)
    "edgefuse default: ORT's thread count (pinned), spinning stopped after each run, arena, pattern":
        (None, "1", True, True, True),
    "spinning kept after each run (ONNX Runtime's default)": (None, "1", False, True, True),
    "2 threads given explicitly (unpinned)": (2, "1", True, True, True),
    "1 thread": (1, "1", True, True, True),
    "no spinning": (None, "0", True, True, True),
    "no arena, no pattern": (None, "1", True, False, False),
}
TWO = {"two sessions in the process, run in turn, spinning kept after each run (ONNX Runtime's default)": False,
       "two sessions in the process, run in turn, spinning stopped after each run (edgefuse)": True}
ENGINES = (("synth_tsn_r18w025", "fp32", 112), ("synth_tsm_r18w025", "int8", 112), ("tsm_resnet50", "int8", 224))


def session(path: Path, threads: int | None = None, spin: str = "1", stop: bool = True, arena: bool = True,
            pattern: bool = True) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    from edgefuse.graph.ort import session_options

    opts = session_options(threads, optimize=False, stop_spinning=stop)
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.enable_cpu_mem_arena = arena
    opts.enable_mem_pattern = pattern
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})


def measure(fns: list[Callable[[np.ndarray], Any]], x: np.ndarray, runs: int) -> np.ndarray:
    """``runs`` timed runs of the first session; with two, the second runs between any two of them."""
    for _ in range(3):
        for f in fns:
            f(x)
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        fns[0](x)
        t.append(1000 * (time.perf_counter() - a))
        for f in fns[1:]:
            f(x)
    return np.asarray(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-cpu"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--r50-runs", type=int, default=30)
    args = ap.parse_args()
    engines = [(args.work / f"{n}.{k}.engine", s) for n, k, s in ENGINES if (args.work / f"{n}.{k}.engine").is_file()]
    table: dict[str, list[dict[str, Any]]] = {e.name: [] for e, _ in engines}

    def record(engine: Path, label: str, t: np.ndarray) -> None:
        table[engine.name].append({"setting": label, "p50_ms": float(np.median(t)),
                                   "p99_ms": float(np.percentile(t, 99)), "cov": float(t.std() / t.mean()),
                                   "raw_ms": [round(float(v), 3) for v in t]})
        print(engine.name, label, f"{np.median(t):.2f}", flush=True)

    def clip(size: int) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((1, 8, 3, size, size)).astype(np.float32)  # (1, T, 3, H, W)

    for engine, size in engines:
        runs = args.r50_runs if size == 224 else args.runs
        for label, (threads, spin, stop, arena, pattern) in SETTINGS.items():
            record(engine, label, measure([session(engine, threads, spin, stop, arena, pattern)], clip(size), runs))
        for label, stop in TWO.items():
            record(engine, label, measure([session(engine, stop=stop), session(engine, stop=stop)], clip(size), runs))
    command = f"python benchmarks/cpu_settings.py --runs {args.runs} --r50-runs {args.r50_runs}"
    lines = ["# ONNX Runtime session settings and latency steadiness", "",
             f"Command: `{command}`, {time.strftime('%Y-%m-%d')}; {args.runs} (zoo) / {args.r50_runs} (ResNet-50) "
             "runs of one clip after 3 warm-up runs, one setting at a time. With two sessions, the other one "
             "runs between any two timed runs (as when engines are timed side by side).", ""]
    for name, rows in table.items():
        lines += [f"## {name}", "", "| setting | p50 ms | p99 ms | CoV |", "|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {100 * r['cov']:.1f}% |" for r in rows]
        lines.append("")
    (ROOT / "docs" / "cpu_settings.md").write_text("\n".join(lines) + "\n")
    out = ROOT / "benchmarks" / "results" / "cpu_settings.json"
    out.write_text(json.dumps({"command": command, "results": table}, indent=1))


if __name__ == "__main__":
    main()
