"""``edgefuse calibrate``: an FP32 ONNX graph in, an INT8 (Q/DQ) or FP16 graph out, calibrated on
benchmark clips sampled as the model was trained, checked against FP32 on held-out clips and,
with a budget, repaired layer by layer.

Steps (one function each): read the graph and its metadata; choose and decode the clips
(:mod:`edgefuse.clips`, sampling and preprocessing from the metadata); collect activation
statistics in ONNX Runtime (:mod:`.stats`, cached by graph, clips, sampling and seed, resumable);
pick thresholds by method; write Q/DQ (:mod:`.qdq`) or FP16 (:mod:`.fp16`); compare with FP32
(:mod:`.evaluate`); with ``max_drop``, rank layers by sensitivity and return the most sensitive
ones to FP32 until the drop is within budget. Inputs (graph, clips, cache) are :mod:`.inputs`, the
typed report :mod:`.report`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import float_tensors
from edgefuse.graph.runner import OrtRunner
from edgefuse.progress import Progress
from edgefuse.quantize import qdq
from edgefuse.quantize.config import DEFAULT_EXCLUDES, SAVE_EVERY, CalibrateConfig
from edgefuse.quantize.evaluate import Comparison, compare, decisions_of
from edgefuse.quantize.fp16 import convert_fp16, fp16_blocked
from edgefuse.quantize.inputs import (
    cache_key,
    check_clip_shape,
    default_cache_dir,
    input_info,
    load_clips,
    load_fp32_graph,
)
from edgefuse.quantize.report import CalibrateReport, CalibrateResult, HeldOut, MacsSplit
from edgefuse.quantize.stats import ActivationStats, thresholds
from edgefuse.utils import write_set

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Statistics

def gated_histograms(plan: qdq.GatedGrids) -> list[str]:
    """The tensors of GSF's gating whose CPU grid is calibrated by the method (its products, sums, pools and the
    BatchNorm after it); the gates themselves are bounded and keep their full range."""
    return [t for t in plan.tensors if t not in set(plan.gates)]


def collect_stats(model: onnx.ModelProto, clips: np.ndarray, cache: Path, progress: bool = True) -> ActivationStats:
    """Histograms of every tensor INT8 could use (the activation inputs of all candidate layers and
    residual identities) and ranges of every other float tensor, over ``clips``; saved to
    ``cache/stats.npz``, with a partial file every ``SAVE_EVERY`` clips that a rerun resumes from."""
    candidates = [n.name for n in qdq.candidate_nodes(model)]
    hist_names = qdq.activation_tensors(model, candidates) + qdq.conv_outputs(model, candidates) + \
        gated_histograms(qdq.gated_grids(model))
    all_names = float_tensors(model)
    runner = OrtRunner(model, extra_outputs=all_names)
    partial = cache / "stats.partial.npz"
    stats = ActivationStats.empty(all_names)
    if partial.is_file():
        stats = ActivationStats.load(partial)
        log.info("calibration statistics: resuming after %d of %d clips (%s)", stats.clips, len(clips), partial)
    bar = Progress(len(clips), "calibration statistics", enabled=progress)
    bar.update(stats.clips)
    hist_set = set(hist_names)
    for i in range(stats.clips, len(clips)):
        outs = runner.run_all(clips[i:i + 1])
        for name, hist in stats.histograms.items():
            value = outs.get(name)
            if value is None:
                continue
            if name in hist_set:
                try:
                    hist.add(value)
                except EdgefuseError as e:
                    raise EdgefuseError(f"tensor {name}: {e}") from None
            else:
                hist.add_range(value)
        stats.clips += 1
        bar.update()
        if stats.clips % SAVE_EVERY == 0 and stats.clips < len(clips):
            stats.save(partial)
    bar.close()
    stats.save(cache / "stats.npz", {"clips": stats.clips, "histograms": sorted(hist_names)})
    if partial.is_file():
        partial.unlink()
    return stats


# ---------------------------------------------------------------------------------------------
# Building candidates

def build(model: onnx.ModelProto, cfg: CalibrateConfig, amax: dict[str, float], ranges: dict[str, float],
          fp32_nodes: Sequence[str]) -> onnx.ModelProto:
    """The INT8 or FP16 graph with ``fp32_nodes`` (excludes plus budget choices) kept FP32."""
    if cfg.precision == "int8":
        chosen, _ = qdq.select_nodes(model, cfg.excludes)
        keep = set(fp32_nodes)
        return qdq.quantize_int8(model, amax, [n for n in chosen if n not in keep])
    by_pattern, by_range = fp16_blocked(model, ranges, cfg.excludes)
    return convert_fp16(model, list(dict.fromkeys(by_pattern + by_range + list(fp32_nodes))))


def layer_candidates(model: onnx.ModelProto, cfg: CalibrateConfig) -> list[str]:
    """The layers the budget may return to FP32: quantized layers (INT8), or every converted compute node (FP16)."""
    if cfg.precision == "int8":
        return qdq.select_nodes(model, cfg.excludes)[0]
    return [n.name for n in model.graph.node if n.op_type in qdq.QUANTIZED_OPS
            and not qdq.match_any(n.name, cfg.excludes)]


def sensitivity(model: onnx.ModelProto, cfg: CalibrateConfig, amax: dict[str, float], ranges: dict[str, float],
                layers: Sequence[str], clips: np.ndarray, ref_logits: np.ndarray) -> dict[str, float]:
    """Logit MSE against FP32 when only that layer runs in low precision (INT8 with the others FP32;
    for FP16, likewise): higher is more sensitive."""
    out: dict[str, float] = {}
    bar = Progress(len(layers), "layer sensitivity", enabled=cfg.progress)
    for name in layers:
        others = [n for n in layers if n != name]
        cand = build(model, cfg, amax, ranges, others)
        logits = OrtRunner(cand).logits(clips)
        out[name] = float(np.mean((logits - ref_logits) ** 2))
        bar.update()
    bar.close()
    return out


# ---------------------------------------------------------------------------------------------
# The command

def calibrate(cfg: CalibrateConfig) -> CalibrateResult:
    from edgefuse.graph.metadata import set_metadata
    from edgefuse.graph.query import node_macs

    start = time.monotonic()
    model, meta = load_fp32_graph(cfg.model)
    _, input_dims = input_info(model, meta)
    key = cache_key(model, cfg, meta)
    cache = (cfg.cache_dir or default_cache_dir()) / key[:20]
    cache.mkdir(parents=True, exist_ok=True)
    stats_file = cache / "stats.npz"
    need_stats = cfg.from_trt_cache is None and not stats_file.is_file()
    gated = qdq.gated_grids(model)  # GSF's gating: the CPU engine's grids beyond TensorRT's placement
    calib_clips, holdout, calibration = load_clips(cfg, meta, cache, need_stats)
    check_clip_shape(cfg.model, input_dims, holdout.clips, holdout.source)
    timings: dict[str, float] = {"clips_s": time.monotonic() - start}

    t0 = time.monotonic()
    if cfg.from_trt_cache is not None:
        from edgefuse.quantize.trtcache import read_cache

        amax = read_cache(cfg.from_trt_cache)
        ranges = dict(amax)
        stats_source = f"TensorRT calibration cache {cfg.from_trt_cache}"
        num_calib = None
    else:
        if need_stats:
            assert calib_clips is not None
            check_clip_shape(cfg.model, input_dims, calib_clips, str(cfg.clips))
            stats = collect_stats(model, calib_clips, cache, cfg.progress)
            stats_source = f"{len(calib_clips)} clips of {cfg.clips}"
        else:
            stats = ActivationStats.load(stats_file)
            stats_source = f"{stats.clips} clips of {cfg.clips} (statistics from the cache {cache})"
            log.info("calibration statistics from the cache %s (%d clips)", cache, stats.clips)
        num_calib = stats.clips
        candidates = [n.name for n in qdq.candidate_nodes(model)]
        hist_names = qdq.activation_tensors(model, candidates) + qdq.conv_outputs(model, candidates)
        # the CPU engine's grids for GSF's gating: by the method where the statistics hold a histogram (a cache from
        # before they did keeps its ranges), else the full range
        hist_names += [t for t in gated_histograms(gated) if t in stats.histograms and stats.histograms[t].count]
        amax = qdq.tie_data_movement(model, thresholds(stats, cfg.method, hist_names, cfg.percentile))
        ranges = {name: h.amax for name, h in stats.histograms.items()}
        for name in stats.histograms:  # TensorRT's implicit cache wants every tensor: min/max where no histogram
            amax.setdefault(name, max(stats.histograms[name].amax, 1e-8))
    timings["statistics_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    dec = decisions_of(model)
    ref = dec.run(model, holdout.clips, cfg.progress, "FP32 reference")
    excluded = qdq.select_nodes(model, cfg.excludes)[1]
    candidate = build(model, cfg, amax, ranges, [])
    result = compare(ref, dec.run(candidate, holdout.clips, cfg.progress, f"{cfg.precision.upper()} graph"),
                     holdout.labels)
    first = result
    budget_layers: list[str] = []
    sens: dict[str, float] = {}
    def over(c: Comparison) -> bool:
        return (cfg.max_drop is not None and c.drop_points > cfg.max_drop) or \
            (cfg.min_agreement is not None and c.top1_agreement < cfg.min_agreement)

    if over(result):
        layers = layer_candidates(model, cfg)
        sens = sensitivity(model, cfg, amax, ranges, layers, holdout.clips, ref.logits)
        order = sorted(layers, key=lambda n: -sens[n])
        for name in order:
            budget_layers.append(name)
            candidate = build(model, cfg, amax, ranges, budget_layers)
            result = compare(ref, dec.run(candidate, holdout.clips), holdout.labels)
            log.info("budget: %s back to FP32 -> %.2f top-1 points, agreement %.4f", name, result.drop_points,
                     result.top1_agreement)
            if not over(result):
                break
        if over(result):
            log.warning("even with every layer in FP32 the budget does not hold: drop %.2f points, agreement %.4f",
                        result.drop_points, result.top1_agreement)
    timings["build_and_check_s"] = time.monotonic() - t0

    macs = node_macs(model, meta)
    low = set(qdq.quantized_node_names(candidate)) if cfg.precision == "int8" else \
        {n for n in layer_candidates(model, cfg) if n not in set(budget_layers)} - set(
            fp16_blocked(model, ranges, cfg.excludes)[1])
    report = CalibrateReport(
        model=str(cfg.model), output=str(cfg.output), precision=cfg.precision,
        method=cfg.method if cfg.precision == "int8" else None,
        percentile=cfg.percentile if cfg.method == "percentile" else None, clips=str(cfg.clips), num_clips=num_calib,
        seed=cfg.seed, cache_key=key, statistics=stats_source, excluded_patterns=list(cfg.excludes),
        excluded_layers=excluded, budget_layers=budget_layers, max_drop=cfg.max_drop, min_agreement=cfg.min_agreement,
        holdout=HeldOut(holdout.source, len(holdout.ids), holdout.held_out, list(holdout.ids), holdout.skipped),
        first_try=first if budget_layers else None,
        result=result, within_budget=None if cfg.max_drop is None and cfg.min_agreement is None else not over(result),
        sensitivity=dict(sorted(sens.items(), key=lambda kv: -kv[1])),
        macs=MacsSplit(cfg.precision, sum(macs.values()), sum(v for k, v in macs.items() if k in low),
                       sum(macs.get(n, 0) for n in budget_layers)),
        timings={**timings, "total_s": time.monotonic() - start},
        calibration_ids=calibration.ids if cfg.from_trt_cache is None else None,
        calibration_skipped=calibration.skipped if cfg.from_trt_cache is None else None,
    )
    facts: dict[str, object] = {}
    if cfg.precision == "int8":  # grids for what the CPU engine quantizes beyond TensorRT's placement
        grids = qdq.conv_outputs(model, qdq.quantized_node_names(candidate)) + gated.tensors
        facts["cpu_int8_ranges"] = {t: float(amax[t]) for t in grids if t in amax}
    out = set_metadata(candidate, {"precision": cfg.precision, "calibration": report.calibration(), **facts,
                                   "fp32_source_sha256": hashlib.sha256(model.SerializeToString()).hexdigest()})
    dest = Path(cfg.output)
    report_path = dest.with_suffix(".calib.json")
    with write_set(dest, report_path) as (tmp, tmp_report):  # the graph and its report appear together or not at all
        onnx.save(out, str(tmp))
        tmp_report.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    trt_path = None
    if cfg.trt_cache is not None:
        from edgefuse.quantize.trtcache import write_cache

        trt_path = write_cache(cfg.trt_cache, amax, version=cfg.trt_version)
    return CalibrateResult(dest, report_path, report, trt_path)


__all__ = ["DEFAULT_EXCLUDES", "CalibrateConfig", "CalibrateReport", "CalibrateResult", "calibrate", "collect_stats"]
