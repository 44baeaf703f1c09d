"""``edgefuse demo``: the whole pipeline on the shipped zoo and the synthetic benchmark, offline.

synth (val and calib splits) -> export TSM and AdaFuse (dynamic policy, and folded into a static
graph) -> calibrate INT8 -> build CPU engines -> validate against FP32 -> bench side by side with
PyTorch eager -> one summary table.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefuse.bench.config import EAGER

if TYPE_CHECKING:
    from edgefuse.bench import BenchReport
    from edgefuse.validate import ValidateReport

log = logging.getLogger(__name__)

MODELS = (("TSM", "synth_tsm_r18w025", "dynamic"), ("AdaFuse-TSM", "synth_adafuse_tsm_r18w025", "dynamic"),
          ("AdaFuse-TSM folded", "synth_adafuse_tsm_r18w025", "static"))


# folding threshold: a fixed tau skips the search over 20 candidates (minutes on 2 cores). At 0.8 the folded
# shipped AdaFuse keeps its top-1 on the 250 val clips (96.8%; 95.6% at 1.0) at 0.209 GMACs a clip
# (benchmarks/results/fold_latency.md); no tau reaches the search's 99% agreement floor on 64 clips (best 98.4%).
# Without the refit: this fold is already as accurate as the policy, and refitted it kept 95.6% there
# (benchmarks/results/fold_refit.md: the refit pays at aggressive taus)
FOLD_TAU, FOLD_REFIT = 0.8, False
# engine rows name the backend build-engine chose
BACKEND_TITLES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


@dataclass(frozen=True)
class DemoConfig:
    work: Path
    num_val: int = 100
    num_calib: int = 64
    iterations: int = 20
    threads: int | None = None
    progress: bool = False


@dataclass(frozen=True)
class DemoRow:
    """One way a model runs: its top-1 on the val clips, agreement with FP32, cost and latency."""

    model: str
    precision: str  # how it runs, e.g. "ONNX Runtime INT8" or "PyTorch eager"
    top1: float | None
    agreement: float | None  # top-1 agreement with the FP32 graph (None for the eager baseline)
    gmacs: str  # GMACs per clip, in words where the decisions change it
    p50_ms: float
    p99_ms: float
    speedup: float  # against PyTorch eager


@dataclass(frozen=True)
class DemoReport:
    rows: list[DemoRow]
    seconds: float
    work: str
    val_clips: int
    calib_clips: int

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dataclasses.asdict(r) for r in self.rows], "seconds": self.seconds, "work": self.work,
                "val_clips": self.val_clips, "calib_clips": self.calib_clips}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoReport:
        return cls([DemoRow(**r) for r in d["rows"]], d["seconds"], d["work"], d["val_clips"], d["calib_clips"])


def _step(name: str, start: float) -> None:
    log.info("demo: %s (%.0f s)", name, time.monotonic() - start)


def _gmacs(fp32: Path, dynamic: bool, given_decisions: float | None) -> str:
    import onnx

    from edgefuse.graph.query import graph_macs

    macs, _ = graph_macs(onnx.load(str(fp32)))
    if dynamic and given_decisions:
        return f"{given_decisions:.3f} (by its decisions; graph {macs / 1e9:.3f})"
    return f"{macs / 1e9:.3f}"


def _rows(label: str, macs_text: str, checks: dict[str, ValidateReport], timing: BenchReport) -> list[DemoRow]:
    """The eager baseline, then the FP32 and INT8 engines, of one model."""
    by = {r.name: r for r in timing.rows}
    eager = by[EAGER].latency
    rows = [DemoRow(label, "PyTorch eager", checks["fp32"].result.top1_reference, None, macs_text, eager.median_ms,
                    eager.p99_ms, 1.0)]  # PyTorch eager = the checkpoint; its accuracy is validated in the test suite
    for precision in ("fp32", "int8"):
        res, row = checks[precision].result, by[precision]
        engine_name = BACKEND_TITLES.get(row.backend, row.backend)
        rows.append(DemoRow(label, f"{engine_name} {precision.upper()}", res.top1_engine, res.top1_agreement, macs_text,
                            row.latency.median_ms, row.latency.p99_ms, eager.median_ms / row.latency.median_ms))
    return rows


def demo(cfg: DemoConfig) -> DemoReport:
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.bench import BenchConfig, BenchReport, bench
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.lab.synth import SynthConfig, generate
    from edgefuse.models.pretrained import get_pretrained
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
    first = get_pretrained(MODELS[0][1])
    pre = Preprocess.from_model_config(resolve_config(first.model, input_size=first.size, **first.options))
    policy_npz = work / "calib_clips.npz"
    if not policy_npz.is_file():
        open_clips(synth / "calib.txt", pre, Sampling(num_segments=first.segments), progress=cfg.progress
                   ).to_npz(policy_npz)
    rows: list[DemoRow] = []
    for label, name, policy in MODELS:
        tag = get_pretrained(name)
        stem = f"{name}.{policy}"  # the folded and the dynamic AdaFuse keep files of their own
        fp32 = export(make_config(None, work / f"{stem}.onnx", model=name, policy=policy,
                                  policy_clips=policy_npz if policy == "static" else None,
                                  tau=FOLD_TAU if policy == "static" else None,
                                  refit=FOLD_REFIT if policy == "static" else None)).path
        int8 = calibrate(CalibrateConfig(model=fp32, clips=synth / "calib.txt", output=work / f"{stem}.int8.onnx",
                                         num_clips=cfg.num_calib, holdout=synth / "val.txt", num_holdout=cfg.num_val,
                                         cache_dir=work / "cache", progress=cfg.progress)).path
        _step(f"{label}: exported and calibrated", start)
        engines = {}
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            engines[precision] = build_engine(BuildConfig(graph, work / f"{stem}.{precision}.engine",
                                                          device="cpu", threads=cfg.threads)).path
        checks = {p: validate(ValidateConfig(engine=e, reference=fp32, clips=synth / "val.txt", num_clips=cfg.num_val,
                                             progress=cfg.progress, max_drop=100.0))
                  for p, e in engines.items()}
        timing = bench(BenchConfig(engines=(engines["fp32"], engines["int8"]), device="cpu", iterations=cfg.iterations,
                                   warmup=3, eager=tag.path, threads=cfg.threads, names=("fp32", "int8"),
                                   progress=cfg.progress))
        assert isinstance(timing, BenchReport)  # the CPU is this machine: measured, not estimated
        _step(f"{label}: engines built, validated and benched", start)
        rows += _rows(label, _gmacs(fp32, policy == "dynamic", tag.gmacs_clip_given_decisions), checks, timing)
    return DemoReport(rows, time.monotonic() - start, str(work), cfg.num_val, cfg.num_calib)
