"""``edgefuse validate``: an engine against its FP32 reference on the same clips.

The clips are sampled and preprocessed from the engine's metadata (the training-time sampling).
Reported: top-1 / top-5 of both with labels, top-1 agreement, logit cosine similarity, max absolute
error and KL divergence, the classes whose accuracy moved most, and for AdaFuse the decision flip
rate and the skip / reuse / keep fractions of every block. The JSON keeps every clip's figures so
each summary can be recomputed; ``--per-layer`` names the first tensor where the engine departs
from the reference (ONNX Runtime engines: intermediate tensors exposed in both graphs).
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)


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
    report: Path | None = None
    html: Path | None = None
    per_layer: bool = False
    layer_tolerance: float = 0.05  # relative error at which a tensor counts as departed
    progress: bool = True


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(cfg: ValidateConfig, metadata: dict[str, Any]):  # type: ignore[no-untyped-def]
    from edgefuse import backends

    ext = cfg.reference.suffix.lower()
    if ext in (".pth", ".pt", ".tar", ".ckpt") or cfg.reference.name.endswith(".pth.tar"):
        from edgefuse.backends.eager import EagerRunner

        return EagerRunner(cfg.reference, metadata)
    return backends.load(cfg.reference)


def _decisions(runner: Any, clips: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    from edgefuse.graph.runner import OrtRunner

    if not names or not isinstance(runner, OrtRunner):
        return {}
    return runner.run_logits_and(clips, names).tensors


def _fractions(onehots: np.ndarray) -> dict[str, float]:
    """skip / reuse / keep fractions of one block's decisions: a one-hot whose last axis is the
    choice (the exported tensor is (N*T, C, 3); stacked per clip it is flattened, the order kept)."""
    sums = onehots.reshape(-1, 3).sum(axis=0)  # (3,)
    total = float(sums.sum())
    return {k: float(v / total) for k, v in zip(("skip", "reuse", "keep"), sums)} if total else {}


def realized_macs(decisions: dict[str, np.ndarray], macs: dict[str, Any], clips: int) -> np.ndarray:
    """MACs per clip (N,) given each block's decisions, priced as :func:`edgefuse.models.cost.decision_savings`
    does (the cost model training used), from the conv MACs export put in the metadata."""
    import torch

    from edgefuse.models.cost import decision_savings
    from edgefuse.quantize.evaluate import block_of

    per_clip = np.full(clips, float(macs["dense_per_clip"]))
    frames = int(macs["frames"])
    for name, onehot in decisions.items():
        block = block_of(name)
        conv = macs["blocks"].get(block)
        if conv is None:
            continue
        mask = onehot.reshape(clips, frames, -1, 3)  # (N, T, C, 3) one-hot over skip / reuse / keep
        for i in range(clips):
            per_clip[i] -= decision_savings(torch.from_numpy(mask[i:i + 1].astype(np.float32)), conv[0], conv[1])
    return per_clip


def compare_logits(ref: np.ndarray, eng: np.ndarray, labels: np.ndarray | None,
                   class_names: list[str] | None) -> dict[str, Any]:
    r, e = ref.astype(np.float64), eng.astype(np.float64)
    p, q = _softmax(r), _softmax(e)
    kl = np.sum(p * (np.log(np.maximum(p, 1e-12)) - np.log(np.maximum(q, 1e-12))), axis=1)
    cos = np.sum(r * e, axis=1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(e, axis=1), 1e-30)
    err = np.abs(r - e).max(axis=1)
    out: dict[str, Any] = {
        "clips": int(len(r)), "top1_agreement": float(np.mean(r.argmax(1) == e.argmax(1))),
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "max_abs_error": float(err.max()),
        "mean_abs_error": float(np.abs(r - e).mean()), "kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
        "per_clip": {"max_abs_error": err.tolist(), "kl": kl.tolist(), "cosine": cos.tolist(),
                     "reference_top1": r.argmax(1).tolist(), "engine_top1": e.argmax(1).tolist()},
    }
    if labels is not None:
        k = min(5, r.shape[1])
        top5 = (lambda x: float(np.mean([lab in row for lab, row in zip(labels, np.argsort(-x, 1)[:, :k])])))
        out.update(top1_reference=float(np.mean(r.argmax(1) == labels)), top1_engine=float(np.mean(e.argmax(1) == labels)),
                   top5_reference=top5(r), top5_engine=top5(e))
        classes = []
        for c in sorted(set(labels.tolist())):
            m = labels == c
            ra, ea = float(np.mean(r.argmax(1)[m] == c)), float(np.mean(e.argmax(1)[m] == c))
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            classes.append({"class": name, "clips": int(m.sum()), "reference": ra, "engine": ea, "delta": ea - ra})
        out["per_class"] = sorted(classes, key=lambda x: x["delta"])
        out["per_clip"]["label"] = labels.tolist()
    return out


def drop_points(result: dict[str, Any]) -> float:
    if "top1_reference" in result:
        return 100.0 * (result["top1_reference"] - result["top1_engine"])
    return 100.0 * (1.0 - result["top1_agreement"])


# ---------------------------------------------------------------------------------------------
# Per layer

def _compute_ancestors(tensor: str, producer: dict[str, onnx.NodeProto]) -> list[str]:
    """Conv / Gemm / MatMul nodes whose output reaches ``tensor`` (names, any order)."""
    seen: set[str] = set()
    out, stack = [], [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            out.append(node.name)
        stack.extend(i for i in node.input if i)
    return out


def _suspects(departed: str, good: list[str], model: onnx.ModelProto) -> list[str]:
    """The layers that feed the departed tensor but none of the tensors that still matched, in graph
    order: the first is where the damage most likely sits (an ONNX Runtime engine fuses a Conv with
    what follows it, so the Conv's own output may not exist in the engine to check)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    cleared: set[str] = set()
    for t in good:
        cleared |= set(_compute_ancestors(t, producer))
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(set(_compute_ancestors(departed, producer)) - cleared, key=lambda n: order.get(n, 0))


def ort_engine_tensors(engine: onnx.ModelProto, clips: np.ndarray) -> Any:
    """For :func:`first_departure`: an ONNX Runtime engine's tensors (those it still has) on ``clips``."""
    from edgefuse.graph.runner import OrtRunner

    present = {o for n in engine.graph.node for o in n.output}

    def run(names: list[str]) -> dict[str, np.ndarray]:
        common = [t for t in names if t in present]
        return OrtRunner(engine, extra_outputs=common, optimize=False).run_all(clips) if common else {}
    return run


def trt_engine_tensors(engine_path: Path, info: dict[str, Any], clips: np.ndarray) -> Any:
    """For :func:`first_departure` on TensorRT: rebuild the engine from its source graph with the wanted
    tensors marked as outputs (a debug engine beside it), run it, return those it produced. Not run in
    edgefuse's CI: no GPU there."""
    from edgefuse.backends.plan import trt_major
    from edgefuse.backends.trt import adapter

    def run(names: list[str]) -> dict[str, np.ndarray]:
        source = Path(info.get("source_onnx") or "")
        if not source.is_file():
            raise EdgefuseError(f"{engine_path}: --per-layer rebuilds the engine from its source graph {source}, which "
                                "is not on this machine; copy it beside the engine")
        debug = engine_path.with_name(engine_path.name + ".per-layer.plan")
        settings = info.get("settings") or {}
        adapter.build_engine_file(source, debug, trt_major(str(info["backend_version"])), settings.get("flags", []),
                                  settings.get("network_flags", []), info.get("profiles") or {}, mark=names)
        runner = adapter.TrtRunner(debug, info)
        return runner.run_feeds({runner.inputs[0]: clips})
    return run


def first_departure(reference: onnx.ModelProto, engine_tensors: Any, clips: np.ndarray,
                    tolerance: float) -> dict[str, Any]:
    """Run the reference with every float tensor exposed and the engine with the same names asked for
    (``engine_tensors(names) -> {name: array}``: ONNX Runtime exposes them, TensorRT marks them as outputs);
    the first tensor (in the reference's order) whose relative error max|a - b| / max|a| exceeds
    ``tolerance``, with the node making it and the layers that may be at fault."""
    from edgefuse.graph.query import float_tensors
    from edgefuse.graph.runner import OrtRunner

    ref_names = float_tensors(reference)
    b = engine_tensors(ref_names)
    common = [t for t in ref_names if t in b]
    if not common:
        raise EdgefuseError("the engine and the reference share no tensor names; --per-layer needs an engine "
                            "built from this reference's graph")
    a = OrtRunner(reference, extra_outputs=common).run_all(clips)
    producer = {o: n for n in reference.graph.node for o in n.output}
    checked = []
    for t in common:
        if t not in a or t not in b or a[t].shape != b[t].shape:
            continue
        scale = float(np.abs(a[t]).max()) or 1.0
        rel = float(np.abs(a[t].astype(np.float64) - b[t]).max() / scale)
        checked.append((t, rel))
        if rel > tolerance:
            node = producer.get(t)
            suspects = _suspects(t, [n for n, _ in checked[:-1]], reference)
            return {"tensor": t, "node": node.name if node else None, "op": node.op_type if node else None,
                    "layer": suspects[0] if suspects else None, "suspects": suspects,
                    "relative_error": rel, "tensors_checked": len(checked), "tolerance": tolerance,
                    "before": [{"tensor": n, "relative_error": r} for n, r in checked[-4:-1]]}
    return {"tensor": None, "tensors_checked": len(checked), "tolerance": tolerance,
            "worst": max(checked, key=lambda x: x[1]) if checked else None}


# ---------------------------------------------------------------------------------------------
# Reports

def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: per-class accuracy (with labels) and the distribution of per-clip logit error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    res = report["result"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(res["per_clip"]["max_abs_error"], bins=30)
    ax.set_xlabel("max |logit error| per clip")
    ax.set_ylabel("clips")
    out["logit_error"] = _png(fig)
    plt.close(fig)
    if "per_class" in res:
        classes = sorted(res["per_class"], key=lambda c: c["class"])
        fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.5), 3))
        x = np.arange(len(classes))
        ax.bar(x - 0.2, [c["reference"] for c in classes], 0.4, label="reference")
        ax.bar(x + 0.2, [c["engine"] for c in classes], 0.4, label="engine")
        ax.set_xticks(x, [c["class"] for c in classes], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("top-1")
        ax.legend()
        out["per_class"] = _png(fig)
        plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_html(report: dict[str, Any], path: Path) -> Path:
    res = report["result"]
    summary = [{"figure": k, "value": res[k]} for k in ("clips", "top1_agreement", "top1_reference", "top1_engine",
                                                        "top5_reference", "top5_engine", "cosine_mean",
                                                        "max_abs_error", "kl_mean") if k in res]
    parts = [f"<h1>edgefuse validate</h1><p>engine <code>{html.escape(report['engine'])}</code> vs reference "
             f"<code>{html.escape(report['reference'])}</code> on {res['clips']} clips of "
             f"<code>{html.escape(report['clips'])}</code>; verdict: <b>{report['verdict']}</b> "
             f"(drop {report['drop_points']:.2f} points, budget {report['max_drop']})</p>",
             _table(summary, ["figure", "value"])]
    if "per_class" in res:
        parts += ["<h2>Classes that moved most</h2>", _table(res["per_class"][:10], ["class", "clips", "reference",
                                                                                    "engine", "delta"])]
    if report.get("policy"):
        parts += ["<h2>AdaFuse decisions</h2>", _table(report["policy"], ["block", "flip_rate", "engine_skip",
                                                                          "engine_reuse", "engine_keep"])]
    if report.get("per_layer"):
        parts += ["<h2>First departing tensor</h2>", f"<pre>{html.escape(json.dumps(report['per_layer'], indent=1))}</pre>"]
    for name, png in plots(report).items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2><img src='data:image/png;base64,{png}'>")
    page = ("<!doctype html><meta charset='utf-8'><title>edgefuse validate</title><style>body{font-family:sans-serif;"
            "max-width:60em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            + "".join(parts))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def validate(cfg: ValidateConfig) -> dict[str, Any]:
    from edgefuse import backends
    from edgefuse.backends.sidecar import sidecar_path
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.runner import OrtRunner
    from edgefuse.quantize.evaluate import block_of, decision_tensors, flip_rate

    # AdaFuse: the decisions of both come out of the same runs as the logits (ONNX Runtime graphs with a policy)
    is_graph = cfg.reference.suffix.lower() == ".onnx" and not sidecar_path(cfg.reference).is_file()
    ref_graph = load_onnx(cfg.reference) if is_graph else None
    dec_names = decision_tensors(ref_graph) if ref_graph is not None else []
    engine = backends.load(cfg.engine, extra_outputs=dec_names)
    meta = dict(engine.metadata)
    if not meta.get("segments") or not meta.get("input_size"):
        raise EdgefuseError(f"{cfg.engine}: no edgefuse metadata (segments, input size), so the clips' sampling is "
                            "unknown; build the engine from an 'edgefuse export' graph")
    reference = OrtRunner(ref_graph, extra_outputs=dec_names) if ref_graph is not None else _reference(cfg, meta)
    if isinstance(engine, OrtRunner):
        dec_names = [d for d in dec_names if d in engine.names]
    else:
        dec_names = []
    clip_set = open_clips(cfg.clips, Preprocess.from_metadata(meta, source=str(cfg.engine)),
                          Sampling(num_segments=int(meta["segments"])), root=cfg.root, num_clips=cfg.num_clips,
                          seed=cfg.seed, workers=cfg.workers, progress=cfg.progress)
    data, labels, ids = clip_set.stack()
    clips = data.numpy()
    label_arr = labels.numpy() if labels is not None else None
    from edgefuse.progress import Progress

    ref_logits, eng_logits = [], []
    a: dict[str, list[np.ndarray]] = {d: [] for d in dec_names}
    b: dict[str, list[np.ndarray]] = {d: [] for d in dec_names}
    bar = Progress(len(clips), "validate", enabled=cfg.progress)
    for i in range(0, len(clips), 8):
        chunk = clips[i:i + 8]
        if dec_names:
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
    ref, eng = np.concatenate(ref_logits), np.concatenate(eng_logits)
    names = list(meta.get("class_names") or []) or list(clip_set.class_names or [])
    result = compare_logits(ref, eng, label_arr, names or None)
    result["per_clip"]["id"] = ids
    report: dict[str, Any] = {"engine": str(cfg.engine), "reference": str(cfg.reference), "clips": str(cfg.clips),
                              "engine_info": {k: engine.info.get(k) for k in ("backend", "backend_version", "device",
                                                                               "precision")},
                              "max_drop": cfg.max_drop, "result": result}
    if dec_names:
        ref_dec = {d: np.concatenate(v) for d, v in a.items()}
        eng_dec = {d: np.concatenate(v) for d, v in b.items()}
        report["policy"] = [{"block": block_of(d), "flip_rate": flip_rate(ref_dec[d], eng_dec[d]),
                             **{f"engine_{k}": v for k, v in _fractions(eng_dec[d]).items()}} for d in dec_names]
        macs = meta.get("adafuse_macs")
        if macs:
            report["realized_gmacs_per_clip"] = (realized_macs(eng_dec, macs, len(clips)) / 1e9).tolist()
            report["realized_gmacs_per_clip_reference"] = (realized_macs(ref_dec, macs, len(clips)) / 1e9).tolist()
            report["dense_gmacs_per_clip"] = macs["dense_per_clip"] / 1e9
    if cfg.per_layer:
        if ref_graph is None:
            raise EdgefuseError("--per-layer compares tensors inside both graphs: give the FP32 .onnx as --reference")
        probe = clips[:1]
        tensors = (ort_engine_tensors(onnx.load(str(cfg.engine)), probe) if isinstance(engine, OrtRunner)
                   else trt_engine_tensors(Path(cfg.engine), engine.info, probe))
        report["per_layer"] = first_departure(ref_graph, tensors, probe, cfg.layer_tolerance)
    report["drop_points"] = drop_points(result)
    report["verdict"] = "pass" if report["drop_points"] <= cfg.max_drop else "fail"
    if cfg.report:
        with atomic_path(cfg.report) as tmp:
            tmp.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    if cfg.html:
        write_html(report, cfg.html)
    return report
