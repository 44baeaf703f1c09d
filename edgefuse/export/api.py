"""``edgefuse export``: model + checkpoint -> checked, TensorRT-ready ONNX with metadata."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgefuse import __version__
from edgefuse.errors import EdgefuseError
from edgefuse.export.config import ExportConfig
from edgefuse.export.fold import ENGINE_CHANNEL_MULTIPLE, FoldResult, fold
from edgefuse.export.parity import Parity, clip_parity, enforce, stream_parity
from edgefuse.export.passes import fold_gemm_batchnorm, name_graph, simplifier
from edgefuse.export.report import ExportReport
from edgefuse.export.trace import to_onnx
from edgefuse.graph import hygiene, targets
from edgefuse.graph.io import save_onnx
from edgefuse.graph.metadata import set_metadata
from edgefuse.graph.passes import run_passes
from edgefuse.models import create_model, read_checkpoint
from edgefuse.models.cost import model_cost
from edgefuse.models.video import VideoClassifier
from edgefuse.utils import load_npz_clips

log = logging.getLogger(__name__)


def _check_clip_shape(clips: torch.Tensor, cfg: ExportConfig, path: Path) -> None:
    if cfg.shape == "static" and tuple(clips.shape[1:]) != (cfg.segments, 3, cfg.size, cfg.size):
        raise EdgefuseError(f"{path}: clips are {tuple(clips.shape[1:])} per clip but the export is "
                            f"({cfg.segments}, 3, {cfg.size}, {cfg.size}); resample them or pass --segments/--size")


def build_model(cfg: ExportConfig) -> tuple[VideoClassifier, dict[str, Any]]:
    facts: dict[str, Any] = {}
    ckpt = None
    if cfg.checkpoint is not None:
        ckpt = read_checkpoint(cfg.checkpoint)  # read once: facts here, weights below
        if cfg.checkpoint_format and ckpt.source != cfg.checkpoint_format:
            raise EdgefuseError(f"{cfg.checkpoint}: a {ckpt.source} checkpoint, but the preset expects "
                                f"{cfg.checkpoint_format}; use the matching preset or checkpoint")
        facts.update(checkpoint_sha256=ckpt.sha256, checkpoint_source=ckpt.source)
    model = create_model(cfg.model, num_classes=cfg.num_classes, num_segments=cfg.segments,
                         checkpoint=ckpt, input_size=cfg.size, **cfg.options)
    fuses = [f for _, f in model.adafuse_modules()]
    if any(f.decision != "argmax" for f in fuses):
        raise EdgefuseError("Gumbel decisions sample random noise and cannot go into a deployment graph; "
                            "export with decision=argmax (the default)")
    return model, facts


def _base_metadata(model: VideoClassifier, cfg: ExportConfig, opset: int) -> dict[str, Any]:
    mc = model.config
    return {
        "model": mc.name, "edgefuse_version": __version__, "arch": mc.arch, "backbone": mc.backbone,
        "num_classes": mc.num_classes, "width": mc.width, "segments": cfg.segments, "input_size": cfg.size,
        "scale_size": mc.scale_size, "mean": list(mc.mean), "std": list(mc.std),
        "channel_order": mc.channel_order, "pixel_range": mc.pixel_range,
        "class_names": list(mc.class_names) if mc.class_names else None, "policy": cfg.policy,
        "shape": cfg.shape, "opset": opset, "exporter": cfg.exporter,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in (mc.options.__dict__.items() if mc.options else [])},
    }


def export(cfg: ExportConfig) -> ExportReport:
    """Trace, simplify, annotate, check hygiene and parity, then write ``cfg.output`` atomically."""
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    model, facts = build_model(cfg)
    is_adafuse = any(True for _ in model.adafuse_modules())  # AdaFuse modules with a live policy
    if cfg.policy == "static" and not is_adafuse:
        raise EdgefuseError(f"{cfg.model} has no learned policy to fold: --policy static is for AdaFuse models; "
                            "export it with --policy dynamic")
    parity_clips = None
    if cfg.parity_clips is not None:
        parity_clips = load_npz_clips(cfg.parity_clips, "parity clips")
        _check_clip_shape(parity_clips, cfg, cfg.parity_clips)
    folded: FoldResult | None = None
    if cfg.policy == "static":
        if cfg.policy_clips is None:
            raise EdgefuseError("--policy static folds the policy observed on real clips: pass --policy-clips "
                                "(an .npz of preprocessed clips, or any clip source once clip readers exist)")
        clips = load_npz_clips(cfg.policy_clips, "policy clips")
        batches = list(torch.split(clips, 4))
        folded = fold(model, batches, tau=cfg.tau, min_agreement=cfg.min_agreement,
                      channel_multiple=ENGINE_CHANNEL_MULTIPLE, with_refit=cfg.refit)
        model = folded.model
        seconds["fold"] = time.monotonic() - t0
    t1 = time.monotonic()
    ranges = cfg.resolved_ranges()
    meta = {**_base_metadata(model, cfg, cfg.opset), **facts}
    if cfg.policy == "stream":
        onnx_model, parity, meta_extra = _export_stream(model, cfg, ranges)
        meta.update(meta_extra)
    else:
        onnx_model, parity = _export_clip(model, cfg, ranges, parity_clips)
        meta.update(input_name="clips", output_name="logits")
    seconds["trace_and_check"] = time.monotonic() - t1
    if folded is not None:
        meta["fold"] = {"tau": folded.report.tau, "agreement": folded.report.agreement,
                        "macs": dataclasses.asdict(folded.report.macs), "refit": folded.report.refit}
        # the folded structure: fold_model(create_model(...), plan) rebuilds it (its weights too where refit is false)
        meta["fold_plan"] = folded.plan.to_dict()
    if cfg.shape == "dynamic":
        meta["dynamic_ranges"] = {k: list(v) for k, v in ranges.items()}
    elif cfg.policy == "stream":  # a stream graph's batch axis N is dynamic whatever the shape: its range for engines
        meta["dynamic_ranges"] = {"N": list(ranges["N"])}
    if is_adafuse and cfg.policy == "dynamic":  # what validate needs to price the decisions the graph makes
        from edgefuse.models.cost import adafuse_macs

        am = adafuse_macs(model, cfg.segments, cfg.size)
        meta["adafuse_macs"] = {"frames": am.frames, "dense_per_clip": am.dense_per_clip,
                                "blocks": {name.removeprefix("backbone."): v.to_meta() for name, v in am.blocks.items()}}
    if cfg.target is not None:
        meta.update(target=targets.resolve(cfg.target).name, tensorrt=targets.resolve(cfg.target).tensorrt)
    onnx_model = set_metadata(onnx_model, meta)
    report = hygiene.check(onnx_model)
    if not report.ok:
        raise EdgefuseError(f"{cfg.output}: the exported graph fails hygiene: {'; '.join(report.problems[:3])}")
    if cfg.target is not None:
        _check_target(onnx_model, cfg)
    cost = model_cost(model, frames=cfg.segments if cfg.policy != "stream" else 1, size=cfg.size)
    save_onnx(onnx_model, cfg.output)
    seconds["total"] = time.monotonic() - t0
    log.debug("wrote %s (%d nodes)", cfg.output, len(onnx_model.graph.node))
    return ExportReport(path=cfg.output, model=model.config.name, policy=cfg.policy, shape=cfg.shape, opset=cfg.opset,
                        metadata=meta, hygiene=report, parity=tuple(parity), macs_per_clip=cost.macs_per_clip,
                        params=cost.params, seconds=seconds, fold=folded.report if folded is not None else None)


def _check_target(onnx_model: onnx.ModelProto, cfg: ExportConfig) -> None:
    """Every TensorRT release of ``cfg.target`` must parse the graph; the first failure is one line with the fix."""
    target = targets.resolve(str(cfg.target))
    problem = targets.failure(targets.check(onnx_model, target), target)
    if problem is not None:
        raise EdgefuseError(f"{cfg.output}: {problem}")


def _shapes(cfg: ExportConfig, ranges: dict[str, tuple[int, int, int]]) -> list[tuple[int, ...]]:
    if cfg.shape == "static":
        return [(cfg.batch, cfg.segments, 3, cfg.size, cfg.size)]
    pick = [1, 0, 2]  # opt, min, max
    return [(ranges["N"][i], ranges["T"][i], 3, ranges["H"][i], ranges["W"][i]) for i in pick]


def _passes(cfg: ExportConfig, name: str) -> list:  # type: ignore[type-arg]
    return [simplifier(cfg.simplify), fold_gemm_batchnorm, name_graph(name)]


def _export_clip(model: VideoClassifier, cfg: ExportConfig, ranges: dict[str, tuple[int, int, int]],
                 parity_clips: torch.Tensor | None) -> tuple[onnx.ModelProto, list[Parity]]:
    example = torch.randn(cfg.batch, cfg.segments, 3, cfg.size, cfg.size)
    axes = None
    if cfg.shape == "dynamic":
        axes = {"clips": {0: "N", 1: "T", 3: "H", 4: "W"}, "logits": {0: "N"}}
    onnx_model = to_onnx(model, (example,), ["clips"], ["logits"], axes, cfg.opset, cfg.exporter, ranges)
    onnx_model = run_passes(onnx_model, _passes(cfg, model.config.name))
    parity = clip_parity(model, onnx_model, _shapes(cfg, ranges), parity_clips,
                         batch=cfg.batch if cfg.shape == "static" else None, tolerance=cfg.tolerance)
    enforce(parity, cfg.tolerance, str(cfg.output))
    return onnx_model, parity


def _export_stream(model: VideoClassifier, cfg: ExportConfig, ranges: dict[str, tuple[int, int, int]]
                   ) -> tuple[onnx.ModelProto, list[Parity], dict[str, Any]]:
    from edgefuse.export import stream

    sm = stream.StreamModel(model).eval()  # checks the model can stream
    onnx_model, spec = stream.trace_stream(sm, cfg.batch, cfg.size, cfg.size, cfg.opset, cfg.exporter, ranges)
    onnx_model = run_passes(onnx_model, _passes(cfg, model.config.name + "_stream"))

    def zeros(n: int) -> list[np.ndarray]:
        return [t.numpy() for t in stream.initial_states(stream.state_spec(sm, n, cfg.size, cfg.size))]

    shapes = [(cfg.batch, cfg.segments, 3, cfg.size, cfg.size), (cfg.batch + 1, 3, 3, cfg.size, cfg.size)]
    inputs, _ = stream.io_names(spec)
    parity = stream_parity(model.frame_logits, onnx_model, inputs, zeros, shapes)
    enforce(parity, cfg.tolerance, str(cfg.output))
    return onnx_model, parity, stream.stream_metadata(spec)
