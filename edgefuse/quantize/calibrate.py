"""``edgefuse calibrate``: an FP32 ONNX graph in, an INT8 (Q/DQ) or FP16 graph out, calibrated on
benchmark clips sampled as the model was trained, checked against FP32 on held-out clips and,
with a budget, repaired layer by layer.

Steps (one function each): read the graph and its metadata; choose and decode the clips
(:mod:`edgefuse.clips`, sampling and preprocessing from the metadata); collect activation
statistics in ONNX Runtime (:mod:`.stats`, cached by graph, clips, sampling and seed, resumable);
pick thresholds by method; write Q/DQ (:mod:`.qdq`) or FP16 (:mod:`.fp16`); compare with FP32
(:mod:`.evaluate`); with ``max_drop``, rank layers by sensitivity and return the most sensitive
ones to FP32 until the drop is within budget.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import float_tensors
from edgefuse.graph.runner import OrtRunner
from edgefuse.progress import Progress
from edgefuse.quantize import qdq
from edgefuse.quantize.evaluate import Comparison, compare, decision_tensors
from edgefuse.quantize.fp16 import convert_fp16, fp16_blocked
from edgefuse.quantize.stats import METHODS, ActivationStats, thresholds
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp16")
# Policy-aware defaults: AdaFuse's policy nets and decisions, GSF's gate and fusion convolutions,
# and the final classifier stay in higher precision (node names follow the module scopes export
# writes: /backbone/layer1.0/adafuse/fc0/Gemm, /backbone/layer1.0/gsf/..., /fc/Gemm).
DEFAULT_EXCLUDES = ("*/adafuse/*", "*/gsf/*", "/fc/*")
MIN_CLIPS = 8
SAVE_EVERY = 16  # clips between checkpoints of the statistics (an interrupted run resumes there)
STATS_VERSION = 3  # histograms also for the convolution outputs (the CPU engine's grids)


@dataclass(frozen=True)
class CalibrateConfig:
    model: Path
    clips: Path
    output: Path
    precision: str = "int8"
    method: str = "entropy"
    num_clips: int = 256
    seed: int = 0
    max_drop: float | None = None  # top-1 points (drop with labels, disagreement without)
    min_agreement: float | None = None  # also required by the budget: top-1 agreement with FP32 (0-1)
    exclude: tuple[str, ...] = ()
    default_excludes: bool = True
    holdout: Path | None = None  # held-out clips for the report and the budget (default: from --clips)
    num_holdout: int = 100
    percentile: float = 99.99
    cache_dir: Path | None = None
    trt_cache: Path | None = None  # also write a TensorRT calibration cache
    trt_version: str = "8.6.1"
    from_trt_cache: Path | None = None  # take the scales from a TensorRT cache instead of statistics
    root: Path | None = None  # root of the clip list's relative paths
    workers: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgefuseError(f"precision {self.precision!r} is not supported by calibrate: use int8 or fp16")
        if self.method not in METHODS:
            raise EdgefuseError(f"unknown calibration method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.num_clips < MIN_CLIPS:
            raise EdgefuseError(f"--num-clips {self.num_clips}: calibrate needs at least {MIN_CLIPS} clips "
                                "(256 recommended)")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise EdgefuseError(f"--min-agreement {self.min_agreement}: give a fraction in [0, 1], e.g. 0.98")
        if self.max_drop is not None and self.max_drop < 0:
            raise EdgefuseError(f"--max-drop {self.max_drop}: give a budget >= 0 top-1 points")
        if not 50.0 < self.percentile <= 100.0:
            raise EdgefuseError(f"--percentile {self.percentile}: use a value in (50, 100]")

    @property
    def excludes(self) -> tuple[str, ...]:
        return (DEFAULT_EXCLUDES if self.default_excludes else ()) + tuple(self.exclude)


@dataclass
class CalibrateResult:
    path: Path
    report_path: Path
    report: dict[str, Any] = field(default_factory=dict)
    trt_cache: Path | None = None


# ---------------------------------------------------------------------------------------------
# Inputs

def load_fp32_graph(path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata

    model = load_onnx(path)
    if qdq.is_quantized(model):
        raise EdgefuseError(f"{path}: the graph is already quantized (it has Q/DQ or low-precision weights); "
                            "calibrate the FP32 graph from 'edgefuse export' instead")
    meta = read_metadata(model)
    missing = [k for k in ("segments", "input_size") if k not in meta]
    if missing:
        raise EdgefuseError(f"{path}: no edgefuse metadata ({', '.join(missing)} missing), so the clips' sampling "
                            "is unknown; export the model with 'edgefuse export'")
    if meta.get("stream_states"):
        raise EdgefuseError(f"{path}: a stream graph takes one frame and carries state; calibrate the clip graph "
                            "(export with --policy dynamic or static) and use its scales")
    return model, meta


def _input_info(model: onnx.ModelProto, meta: dict[str, Any]) -> tuple[str, list[int | str]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    name = meta.get("input_name") or inputs[0].name
    vi = next((i for i in inputs if i.name == name), inputs[0])
    dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in vi.type.tensor_type.shape.dim]
    return vi.name, dims


def check_clip_shape(path: Path, dims: Sequence[int | str], clips: np.ndarray, what: str) -> None:
    """Clips (N, T, 3, H, W) against the graph input's static dimensions (after N)."""
    got = tuple(clips.shape[1:])
    want = tuple(dims[1:])
    if len(got) != len(want) or any(isinstance(w, int) and w > 0 and w != g for w, g in zip(want, got)):
        raise EdgefuseError(f"{path}: the graph takes clips of shape (N, {', '.join(str(w) for w in want)}), "
                            f"but {what} gives {got}; sample the clips with the graph's segments and size "
                            "(the metadata's) or export the graph with --shape dynamic")


def _file_digest(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def cache_key(graph: onnx.ModelProto, cfg: CalibrateConfig, meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(graph.graph.SerializeToString())
    facts = {"clips": _file_digest(cfg.clips), "num_clips": cfg.num_clips, "seed": cfg.seed,
             "holdout": _file_digest(cfg.holdout) if cfg.holdout else None, "num_holdout": cfg.num_holdout,
             "root": str(cfg.root) if cfg.root else None,
             "sampling": {"segments": meta.get("segments"), "mode": "tsn"}, "statistics": STATS_VERSION,
             "preprocess": {k: meta.get(k) for k in ("input_size", "scale_size", "mean", "std", "channel_order",
                                                     "pixel_range")}}
    h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("EDGEFUSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgefuse")
    return Path(base) / "calibrate"


def _open(src: Path, meta: dict[str, Any], cfg: CalibrateConfig, n: int | None, seed: int):  # type: ignore[no-untyped-def]
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips

    pre = Preprocess.from_metadata(meta, source=str(cfg.model))
    sampling = Sampling(num_segments=int(meta["segments"]))
    return open_clips(src, pre, sampling, root=cfg.root, num_clips=n, seed=seed, workers=cfg.workers,
                      progress=cfg.progress)


def _as_arrays(clipset) -> tuple[np.ndarray, np.ndarray | None, list[str]]:  # type: ignore[no-untyped-def]
    data, labels, ids = clipset.stack()
    if data.ndim != 5:
        raise EdgefuseError(f"{clipset.source}: calibration takes one view per clip (N, T, 3, H, W), got "
                            f"{tuple(data.shape)}")
    return data.numpy(), (labels.numpy() if labels is not None else None), ids


def _rounded(clips: np.ndarray) -> np.ndarray:
    """Held-out clips are kept as float16 in the cache; round them the same way on the first run so a
    cached rerun gives the same figures and the same graph."""
    return clips.astype(np.float16).astype(np.float32)


def load_clips(cfg: CalibrateConfig, meta: dict[str, Any], cache: Path, need_calibration: bool
               ) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(calibration clips or None when not needed, held-out {clips, labels, ids, source}); the held-out
    set comes from the cache when present."""
    holdout_file = cache / "holdout.npz"
    calib = None
    holdout: dict[str, Any] | None = None
    if holdout_file.is_file():
        with np.load(holdout_file) as z:
            holdout = {"clips": z["clips"].astype(np.float32), "labels": z["labels"] if "labels" in z else None,
                       "ids": [str(i) for i in z["ids"]], "source": str(z["source"])}
        if not need_calibration:
            log.info("clips: held-out set from the cache %s; calibration statistics cached, no decoding", cache)
            return None, holdout
    if cfg.holdout is not None:
        if need_calibration:
            calib = _as_arrays(_open(cfg.clips, meta, cfg, cfg.num_clips, cfg.seed))
        if holdout is None:
            data, labels, ids = _as_arrays(_open(cfg.holdout, meta, cfg, cfg.num_holdout, cfg.seed))
            holdout = {"clips": _rounded(data), "labels": labels, "ids": ids, "source": str(cfg.holdout)}
    else:
        clipset = _open(cfg.clips, meta, cfg, cfg.num_clips + cfg.num_holdout, cfg.seed)
        data, labels, ids = _as_arrays(clipset)
        n = len(ids)
        if n < MIN_CLIPS:
            raise EdgefuseError(f"{cfg.clips}: only {n} clip(s) could be read; calibrate needs at least {MIN_CLIPS}")
        spare = n - cfg.num_clips
        if spare >= 32:
            from edgefuse.clips import balanced_subset

            held = set(balanced_subset(list(labels) if labels is not None else [None] * n, spare, cfg.seed + 1))
            hold_idx = sorted(held)
            calib_idx = [i for i in range(n) if i not in held]
            source = f"{cfg.clips} (held out from calibration)"
        else:
            log.warning("%s: %d clips, too few to hold any out of calibration; the report compares FP32 and %s on "
                        "the calibration clips themselves (pass --holdout, e.g. the val list, for unbiased figures)",
                        cfg.clips, n, cfg.precision.upper())
            hold_idx, calib_idx = list(range(n)), list(range(n))
            source = f"{cfg.clips} (the calibration clips: no held-out set)"
        calib = (data[calib_idx], labels[calib_idx] if labels is not None else None, [ids[i] for i in calib_idx])
        if holdout is None:
            holdout = {"clips": _rounded(data[hold_idx]), "labels": labels[hold_idx] if labels is not None else None,
                       "ids": [ids[i] for i in hold_idx], "source": source}
    if not holdout_file.is_file():
        arrays = {"clips": holdout["clips"].astype(np.float16), "ids": np.array(holdout["ids"], dtype=str),
                  "source": np.array(holdout["source"])}
        if holdout["labels"] is not None:
            arrays["labels"] = holdout["labels"]
        with atomic_path(holdout_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    assert calib is not None or not need_calibration
    if calib is not None and len(calib[2]) < MIN_CLIPS:
        raise EdgefuseError(f"{cfg.clips}: only {len(calib[2])} calibration clip(s); calibrate needs at least "
                            f"{MIN_CLIPS}")
    return (calib[0] if calib is not None else None), holdout


# ---------------------------------------------------------------------------------------------
# Statistics

def collect_stats(model: onnx.ModelProto, clips: np.ndarray, cache: Path, progress: bool = True) -> ActivationStats:
    """Histograms of every tensor INT8 could use (the activation inputs of all candidate layers and
    residual identities) and ranges of every other float tensor, over ``clips``; saved to
    ``cache/stats.npz``, with a partial file every ``SAVE_EVERY`` clips that a rerun resumes from."""
    candidates = [n.name for n in qdq.candidate_nodes(model)]
    hist_names = qdq.activation_tensors(model, candidates) + qdq.conv_outputs(model, candidates)
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


def _drop(c: Comparison) -> float:
    """Top-1 points lost: accuracy drop with labels, disagreement without."""
    if c.top1_reference is not None and c.top1_candidate is not None:
        return 100.0 * (c.top1_reference - c.top1_candidate)
    return 100.0 * (1.0 - c.top1_agreement)


# ---------------------------------------------------------------------------------------------
# The command

def calibrate(cfg: CalibrateConfig) -> CalibrateResult:
    from edgefuse.graph.metadata import set_metadata
    from edgefuse.graph.query import node_macs

    start = time.monotonic()
    model, meta = load_fp32_graph(cfg.model)
    input_name, dims = _input_info(model, meta)
    key = cache_key(model, cfg, meta)
    cache = (cfg.cache_dir or default_cache_dir()) / key[:20]
    cache.mkdir(parents=True, exist_ok=True)
    stats_file = cache / "stats.npz"
    need_stats = cfg.from_trt_cache is None and not stats_file.is_file()
    calib_clips, holdout = load_clips(cfg, meta, cache, need_stats)
    check_clip_shape(cfg.model, dims, holdout["clips"], str(holdout["source"]))
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
            check_clip_shape(cfg.model, dims, calib_clips, str(cfg.clips))
            stats = collect_stats(model, calib_clips, cache, cfg.progress)
            stats_source = f"{len(calib_clips)} clips of {cfg.clips}"
        else:
            stats = ActivationStats.load(stats_file)
            stats_source = f"{stats.clips} clips of {cfg.clips} (statistics from the cache {cache})"
            log.info("calibration statistics from the cache %s (%d clips)", cache, stats.clips)
        num_calib = stats.clips
        candidates = [n.name for n in qdq.candidate_nodes(model)]
        hist_names = qdq.activation_tensors(model, candidates) + qdq.conv_outputs(model, candidates)
        amax = qdq.tie_data_movement(model, thresholds(stats, cfg.method, hist_names, cfg.percentile))
        ranges = {name: h.amax for name, h in stats.histograms.items()}
        for name in stats.histograms:  # TensorRT's implicit cache wants every tensor: min/max where no histogram
            amax.setdefault(name, max(stats.histograms[name].amax, 1e-8))
    timings["statistics_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    decisions = decision_tensors(model)
    reference_runner = OrtRunner(model, extra_outputs=decisions)
    ref = reference_runner.run_logits_and(holdout["clips"], decisions, cfg.progress, "FP32 reference")
    excluded = qdq.select_nodes(model, cfg.excludes)[1]
    candidate = build(model, cfg, amax, ranges, [])
    result = compare(ref, OrtRunner(candidate, extra_outputs=decisions).run_logits_and(
        holdout["clips"], decisions, cfg.progress, f"{cfg.precision.upper()} graph"), holdout["labels"])
    first = result
    budget_layers: list[str] = []
    sens: dict[str, float] = {}
    def over(c: Comparison) -> bool:
        return (cfg.max_drop is not None and _drop(c) > cfg.max_drop) or \
            (cfg.min_agreement is not None and c.top1_agreement < cfg.min_agreement)

    if over(result):
        layers = layer_candidates(model, cfg)
        sens = sensitivity(model, cfg, amax, ranges, layers, holdout["clips"], ref.logits)
        order = sorted(layers, key=lambda n: -sens[n])
        for name in order:
            budget_layers.append(name)
            candidate = build(model, cfg, amax, ranges, budget_layers)
            result = compare(ref, OrtRunner(candidate, extra_outputs=decisions).run_logits_and(
                holdout["clips"], decisions, False, ""), holdout["labels"])
            log.info("budget: %s back to FP32 -> %.2f top-1 points, agreement %.4f", name, _drop(result),
                     result.top1_agreement)
            if not over(result):
                break
        if over(result):
            log.warning("even with every layer in FP32 the budget does not hold: drop %.2f points, agreement %.4f",
                        _drop(result), result.top1_agreement)
    timings["build_and_check_s"] = time.monotonic() - t0

    macs = node_macs(model, meta)
    low = set(qdq.quantized_node_names(candidate)) if cfg.precision == "int8" else \
        {n for n in layer_candidates(model, cfg) if n not in set(budget_layers)} - set(
            fp16_blocked(model, ranges, cfg.excludes)[1])
    macs_low = sum(v for k, v in macs.items() if k in low)
    macs_total = sum(macs.values())
    calibration = {
        "precision": cfg.precision, "method": cfg.method if cfg.precision == "int8" else None,
        "percentile": cfg.percentile if cfg.method == "percentile" else None,
        "clips": str(cfg.clips), "num_clips": num_calib, "seed": cfg.seed, "cache_key": key,
        "statistics": stats_source, "excluded_patterns": list(cfg.excludes), "excluded_layers": excluded,
        "budget_layers": budget_layers, "max_drop": cfg.max_drop, "min_agreement": cfg.min_agreement,
    }
    facts: dict[str, Any] = {}
    if cfg.precision == "int8":  # grids for what the CPU engine quantizes beyond TensorRT's placement
        facts["cpu_int8_ranges"] = {t: float(amax[t]) for t in qdq.conv_outputs(
            model, qdq.quantized_node_names(candidate)) if t in amax}
    out = set_metadata(candidate, {"precision": cfg.precision, "calibration": calibration, **facts,
                                   "fp32_source_sha256": hashlib.sha256(model.SerializeToString()).hexdigest()})
    report = {
        "model": str(cfg.model), "output": str(cfg.output), **calibration,
        "holdout": {"source": holdout["source"], "clips": int(len(holdout["ids"]))},
        "first_try": first.to_dict() if budget_layers else None,
        "result": result.to_dict(), "drop_points": _drop(result),
        "within_budget": None if cfg.max_drop is None and cfg.min_agreement is None else not over(result),
        "sensitivity": dict(sorted(sens.items(), key=lambda kv: -kv[1])),
        "macs": {"total": macs_total, cfg.precision: macs_low, "fp32": macs_total - macs_low,
                 "above_int8_fp32": (macs_total - macs_low) if cfg.precision == "int8" else None,
                 "budget_layers_macs": sum(macs.get(n, 0) for n in budget_layers)},
        "timings": {**timings, "total_s": time.monotonic() - start},
    }
    dest = Path(cfg.output)
    with atomic_path(dest) as tmp:
        onnx.save(out, str(tmp))
    report_path = dest.with_suffix(".calib.json")
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    trt_path = None
    if cfg.trt_cache is not None:
        from edgefuse.quantize.trtcache import write_cache

        trt_path = write_cache(cfg.trt_cache, amax, version=cfg.trt_version)
    return CalibrateResult(dest, report_path, report, trt_path)
