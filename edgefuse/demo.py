"""``edgefuse demo``: the whole pipeline on the shipped zoo and the synthetic benchmark, offline.

synth (val and calib splits) -> export TSM and AdaFuse (dynamic policy, and folded into a static
graph) -> calibrate INT8 -> build CPU engines -> validate against FP32 -> bench side by side with
PyTorch eager -> one summary table.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODELS = (("TSM", "synth_tsm_r18w025", "dynamic"), ("AdaFuse-TSM", "synth_adafuse_tsm_r18w025", "dynamic"),
          ("AdaFuse-TSM folded", "synth_adafuse_tsm_r18w025", "static"))


# folding threshold: a fixed tau skips the search over 20 candidates (minutes on 2 cores); 1.0 is the
# value the search picks for the shipped AdaFuse (no lower tau keeps 99 % agreement)
FOLD_TAU = 1.0
BACKEND_TITLES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}  # engine rows name the backend build-engine chose


@dataclass(frozen=True)
class DemoConfig:
    work: Path
    num_val: int = 100
    num_calib: int = 64
    iterations: int = 20
    threads: int | None = None
    progress: bool = False


def _step(name: str, start: float) -> None:
    log.warning("demo: %s (%.0f s)", name, time.monotonic() - start)


def demo(cfg: DemoConfig) -> dict[str, Any]:
    import onnx

    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.bench import BenchConfig, bench
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.query import graph_macs
    from edgefuse.lab.synth import SynthConfig, generate
    from edgefuse.lab.zoo import get_zoo_entry, zoo_dir
    from edgefuse.models.registry import resolve_config
    from edgefuse.quantize import CalibrateConfig, calibrate
    from edgefuse.validate import ValidateConfig, validate

    start = time.monotonic()
    work = cfg.work
    work.mkdir(parents=True, exist_ok=True)
    synth = work / "synth"
    if not (synth / "val.txt").is_file():
        generate(SynthConfig(out=synth, train=0, val=cfg.num_val, calib=cfg.num_calib, formats=("frames",),
                             force=synth.exists()))
    _step("synthetic benchmark", start)
    first = get_zoo_entry(MODELS[0][1])
    pre = Preprocess.from_model_config(resolve_config(first["model"], input_size=first["size"], **first["options"]))
    policy_npz = work / "calib_clips.npz"
    if not policy_npz.is_file():
        open_clips(synth / "calib.txt", pre, Sampling(num_segments=first["segments"]), progress=cfg.progress
                   ).to_npz(policy_npz)
    rows: list[dict[str, Any]] = []
    for label, name, policy in MODELS:
        entry = get_zoo_entry(name)
        stem = work / f"{name}.{policy}"
        fp32 = export(make_config(None, stem.with_suffix(".onnx"), model=name, policy=policy,
                                  policy_clips=policy_npz if policy == "static" else None,
                                  tau=FOLD_TAU if policy == "static" else None)).path
        int8 = calibrate(CalibrateConfig(model=fp32, clips=synth / "calib.txt", output=stem.with_suffix(".int8.onnx"),
                                         num_clips=cfg.num_calib, holdout=synth / "val.txt", num_holdout=cfg.num_val,
                                         cache_dir=work / "cache", progress=cfg.progress)).path
        _step(f"{label}: exported and calibrated", start)
        engines = {}
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            engines[precision] = build_engine(BuildConfig(graph, stem.with_suffix(f".{precision}.engine"),
                                                          device="cpu", threads=cfg.threads)).path
        checks = {p: validate(ValidateConfig(engine=e, reference=fp32, clips=synth / "val.txt", num_clips=cfg.num_val,
                                             progress=cfg.progress, max_drop=100.0))
                  for p, e in engines.items()}
        eager = checks["fp32"]  # PyTorch eager = the checkpoint; its accuracy is validated in the test suite
        timing = bench(BenchConfig(engines=(engines["fp32"], engines["int8"]), device="cpu", iterations=cfg.iterations,
                                   warmup=3, eager=zoo_dir() / entry["checkpoint"], threads=cfg.threads,
                                   names=("fp32", "int8"), progress=cfg.progress))
        _step(f"{label}: engines built, validated and benched", start)
        by = {r["name"]: r for r in timing["rows"]}
        macs, _ = graph_macs(onnx.load(str(fp32)))
        if policy == "dynamic" and entry.get("gmacs_clip_given_decisions"):
            macs_text = f"{entry['gmacs_clip_given_decisions']:.3f} (by its decisions; graph {macs / 1e9:.3f})"
        else:
            macs_text = f"{macs / 1e9:.3f}"
        eager_ms = by["PyTorch eager FP32"]["median_ms"]
        rows.append({"model": label, "precision": "PyTorch eager", "top1": eager["result"].get("top1_reference"),
                     "agreement": None, "gmacs": macs_text, "p50_ms": eager_ms,
                     "p99_ms": by["PyTorch eager FP32"]["p99_ms"], "speedup": 1.0})
        for precision in ("fp32", "int8"):
            res = checks[precision]["result"]
            engine_name = BACKEND_TITLES.get(by[precision]["backend"], by[precision]["backend"])
            rows.append({"model": label, "precision": f"{engine_name} {precision.upper()}", "top1": res.get("top1_engine"),
                         "agreement": res["top1_agreement"], "gmacs": macs_text, "p50_ms": by[precision]["median_ms"],
                         "p99_ms": by[precision]["p99_ms"], "speedup": eager_ms / by[precision]["median_ms"]})
    return {"rows": rows, "seconds": time.monotonic() - start, "work": str(work), "val_clips": cfg.num_val,
            "calib_clips": cfg.num_calib}
