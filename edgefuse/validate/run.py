"""``validate(ValidateConfig(...))``: run the engine and its reference on the same clips and compare them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path
from edgefuse.validate.compare import compare_logits
from edgefuse.validate.report import EngineInfo, ValidateReport, default_min_agreement

CHUNK = 8  # clips per run of both


@dataclass(frozen=True)
class ValidateConfig:
    engine: Path
    reference: Path  # FP32 .onnx (or an engine), or a checkpoint (PyTorch eager, rebuilt from the metadata)
    clips: Path
    num_clips: int | None = 256
    seed: int = 0
    root: Path | None = None
    workers: int = 2
    max_drop: float = 0.5  # top-1 points: drop with labels, disagreement without
    min_agreement: float | None = None  # top-1 agreement with the reference (None: 0.98 for INT8, else 0.99)
    report: Path | None = None
    html: Path | None = None
    per_layer: bool = False
    layer_tolerance: float = 0.05  # relative error at which a tensor counts as departed
    progress: bool = True

    def __post_init__(self) -> None:
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise EdgefuseError(f"--min-agreement {self.min_agreement}: give a fraction in [0, 1], e.g. 0.99")


def _reference(cfg: ValidateConfig, metadata: dict[str, Any]) -> Any:
    """The reference runner: PyTorch eager for a checkpoint, else the engine or graph loaded as any engine."""
    from edgefuse import backends

    ext = cfg.reference.suffix.lower()
    if ext in (".pth", ".pt", ".tar", ".ckpt") or cfg.reference.name.endswith(".pth.tar"):
        from edgefuse.backends.eager import EagerRunner

        return EagerRunner(cfg.reference, metadata)
    return backends.load(cfg.reference)


def min_agreement(cfg: ValidateConfig, precision: Any) -> float:
    """The agreement floor: ``cfg.min_agreement``, else the default for the engine's precision."""
    return cfg.min_agreement if cfg.min_agreement is not None else default_min_agreement(precision)


def class_names(source: Any, meta: dict[str, Any]) -> list[str] | None:
    """The clip source's class names when it has them (they name its labels), else the graph metadata's."""
    return list(source or []) or list(meta.get("class_names") or []) or None


def _write(report: ValidateReport, cfg: ValidateConfig) -> ValidateReport:
    if cfg.report:
        with atomic_path(cfg.report) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    if cfg.html:
        from edgefuse.validate.html import write_html

        write_html(report, cfg.html)
    return report


def validate_device_logits(cfg: ValidateConfig) -> ValidateReport:
    """``cfg.engine`` is the output folder of ``device_runner.py`` (logits.npy + logits.json, run on a device where
    edgefuse cannot be installed) and ``cfg.clips`` the clip folder it ran on (``edgefuse device-clips``): the
    reference runs here on the same preprocessed arrays, and the two are compared as for any engine."""
    from edgefuse.backends.device_io import read_clip_folder, read_runner_logits
    from edgefuse.progress import Progress

    if cfg.per_layer:
        raise EdgefuseError(f"{cfg.engine}: the per-layer check needs the engine here; run it where edgefuse and "
                            "TensorRT are installed")
    clips, ids, manifest = read_clip_folder(cfg.clips)
    got = read_runner_logits(cfg.engine, expect_ids=ids)
    meta = dict(manifest.get("edgefuse") or {})
    reference = _reference(cfg, meta)
    ref_logits = []
    bar = Progress(len(clips), "validate (reference)", enabled=cfg.progress)
    for i in range(0, len(clips), CHUNK):
        ref_logits.append(reference.run(clips[i:i + CHUNK]))
        bar.update(len(clips[i:i + CHUNK]))
    bar.close()
    labels = meta.get("labels")
    names = class_names(meta.get("source_class_names"), meta)
    result = compare_logits(np.concatenate(ref_logits), got.logits, np.asarray(labels) if labels else None,
                            names, ids)
    run = got.timings
    info = EngineInfo(run.backend, run.backend_version, run.device_name or "device", meta.get("precision"))
    skipped = [(str(i), str(why)) for i, why in manifest.get("skipped") or meta.get("skipped") or []]
    return _write(ValidateReport(str(cfg.engine), str(cfg.reference), str(cfg.clips), info, cfg.max_drop, result,
                                 None, None, None, min_agreement(cfg, meta.get("precision")), skipped, names), cfg)


def validate(cfg: ValidateConfig) -> ValidateReport:
    from edgefuse import backends
    from edgefuse.backends.sidecar import sidecar_path
    from edgefuse.clips import Preprocess, Sampling, model_reading
    from edgefuse.clips import open as open_clips
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.runner import OrtRunner
    from edgefuse.progress import Progress
    from edgefuse.quantize.evaluate import Decisions, decisions_of

    if Path(cfg.engine).is_dir():  # the output folder of device_runner.py
        return validate_device_logits(cfg)
    # AdaFuse: the decisions of both come out of the same runs as the logits (ONNX Runtime graphs with a policy)
    is_graph = cfg.reference.suffix.lower() == ".onnx" and not sidecar_path(cfg.reference).is_file()
    ref_graph = load_onnx(cfg.reference) if is_graph else None
    decisions = decisions_of(ref_graph) if ref_graph is not None else Decisions()
    engine = backends.load(cfg.engine, extra_outputs=decisions.names)
    meta = dict(engine.metadata)
    if not meta.get("segments") or not meta.get("input_size"):
        raise EdgefuseError(f"{cfg.engine}: no edgefuse metadata (segments, input size), so the clips' sampling is "
                            "unknown; build the engine from an 'edgefuse export' graph")
    reference = OrtRunner(ref_graph, extra_outputs=decisions.names) if ref_graph is not None else _reference(cfg, meta)
    decisions = decisions.restricted(engine.names) if isinstance(engine, OrtRunner) else Decisions()
    dec_names = decisions.names
    clip_set = open_clips(cfg.clips, Preprocess.from_metadata(meta, source=str(cfg.engine)),
                          Sampling(num_segments=int(meta["segments"])), root=cfg.root, num_clips=cfg.num_clips,
                          seed=cfg.seed, workers=cfg.workers, progress=cfg.progress, **model_reading(meta))
    data, labels, ids = clip_set.stack()
    clips = data.numpy()

    ref_logits, eng_logits = [], []
    a: dict[str, list[np.ndarray]] = {d: [] for d in dec_names}
    b: dict[str, list[np.ndarray]] = {d: [] for d in dec_names}
    bar = Progress(len(clips), "validate", enabled=cfg.progress)
    for i in range(0, len(clips), CHUNK):
        chunk = clips[i:i + CHUNK]
        if dec_names:  # both are ONNX Runtime runners here
            r_out, e_out = reference.run_logits_and(chunk, dec_names), engine.run_logits_and(chunk, dec_names)
            ref_logits.append(r_out.logits)
            eng_logits.append(e_out.logits)
            for d in dec_names:
                a[d].append(r_out.tensors[d])
                b[d].append(e_out.tensors[d])
        else:
            ref_logits.append(reference.run(chunk))
            eng_logits.append(engine.run(chunk))
        bar.update(len(chunk))
    bar.close()
    names = class_names(clip_set.class_names, meta)
    result = compare_logits(np.concatenate(ref_logits), np.concatenate(eng_logits),
                            labels.numpy() if labels is not None else None, names, ids)
    policy = realized = per_layer = None
    if dec_names:
        from edgefuse.validate.policy import policy_blocks
        from edgefuse.validate.policy import realized as realized_of

        ref_dec = decisions.as_onehots({d: np.concatenate(v) for d, v in a.items()})
        eng_dec = decisions.as_onehots({d: np.concatenate(v) for d, v in b.items()})
        policy = policy_blocks(ref_dec, eng_dec)
        if meta.get("adafuse_macs"):
            realized = realized_of(ref_dec, eng_dec, meta["adafuse_macs"], len(clips))
    if cfg.per_layer:
        per_layer = _per_layer(cfg, ref_graph, engine, clips[:1])
    info = engine.info
    precision = info.get("precision") or meta.get("precision")
    report = ValidateReport(str(cfg.engine), str(cfg.reference), str(cfg.clips),
                            EngineInfo(info.get("backend"), info.get("backend_version"), info.get("device"),
                                       info.get("precision")),
                            cfg.max_drop, result, policy, realized, per_layer, min_agreement(cfg, precision),
                            list(clip_set.skipped), names)
    return _write(report, cfg)


def _per_layer(cfg: ValidateConfig, ref_graph: Any, engine: Any, probe: np.ndarray) -> Any:
    import onnx

    from edgefuse.graph.runner import OrtRunner
    from edgefuse.validate.per_layer import first_departure, ort_engine_tensors, trt_engine_tensors

    if ref_graph is None:
        raise EdgefuseError("the per-layer check compares tensors inside both graphs: give the FP32 .onnx as the "
                            "reference")
    tensors = (ort_engine_tensors(onnx.load(str(cfg.engine)), probe) if isinstance(engine, OrtRunner)
               else trt_engine_tensors(Path(cfg.engine), engine.info, probe))
    return first_departure(ref_graph, tensors, probe, cfg.layer_tolerance)
