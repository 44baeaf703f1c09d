"""AdaFuse latency: FP32 and INT8 CPU engines with Jetson estimates, and stream graphs per frame, in one process.

TSM, AdaFuse-TSM with the policy in the graph (dynamic), AdaFuse-TSM folded (--policy static --policy-clips), GSF and TSN, FP32 and INT8 CPU engines side by side, beside a Jetson
roofline estimate of the same graphs; and the per-frame latency of the stream graphs (AdaFuse-TSN, TSM online)
against their clip graph's latency / T, with an ONNX Runtime profile of where a frame's time goes.

    python benchmarks/adafuse_latency.py [--groups zoo,full,r50,stream] [--full-width DIR] [--quick]

Groups: ``zoo`` (the shipped ResNet-18 width 0.25 models, 8x112), ``full`` (ResNet-18 width 1.0 checkpoints from
``--full-width DIR``, default weights/full_width where benchmarks/train_full_width.sh writes them:
synth_tsm_r18w1.pth, synth_adafuse_tsm_r18w1.pth, synth_gsf_r18w1.pth; a missing one is skipped with a note),
``r50`` (ResNet-50 8x224, random weights with BN statistics and a linear probe fitted on synthetic calib clips:
benchmarks/cpu_engines.py r50_checkpoint), ``stream`` (random seeded weights: latency only). Every row of a group is
timed round robin in one process (benchmarks/cpu_engines.py time_rows). Writes benchmarks/results/adafuse_latency.json,
benchmarks/results/adafuse_latency.md, docs/adafuse_latency.md and docs/adafuse_latency.png.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_engines import logits_of, ort_default_session, plain_export, r50_checkpoint, time_rows

log = logging.getLogger("adafuse_latency")
DEVICES = ("jetson_orin_nano", "jetson_agx_orin")
GROUPS = ("zoo", "full", "r50", "stream")
FULL_FILES = {"tsm": "synth_tsm_r18w1.pth", "adafuse": "synth_adafuse_tsm_r18w1.pth", "gsf": "synth_gsf_r18w1.pth"}
FULL_MODELS = {"tsm": "tsm_resnet18", "adafuse": "adafuse_tsm_resnet18", "gsf": "gsf_resnet18"}
# (tag, registry model, model options, input size): random seeded weights, latency only
STREAM_MODELS = {
    "adafuse_tsn_r18w025": ("adafuse_tsn_resnet18", {"width": 0.25}, 112),
    "adafuse_tsn_r18w1": ("adafuse_tsn_resnet18", {}, 112),
    "tsm_online_r18w025": ("tsm_online_resnet18", {"width": 0.25}, 112),
    "tsm_online_r18w1": ("tsm_online_resnet18", {}, 112),
    "tsm_online_mobilenetv2": ("tsm_online_mobilenetv2", {}, 224),
}
GEMM_OPS = ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "NchwcConv", "QLinearConv",
            "ConvInteger", "MatMulInteger", "QGemm")
FP32_PLAIN, FP32_ENGINE, INT8_ENGINE = "ORT FP32 plain export", "edgefuse FP32 engine", "edgefuse INT8 CPU engine"


@dataclass
class Variant:
    key: str  # tsn | tsm | adafuse_dynamic | adafuse_folded | gsf
    label: str
    model: str  # registry or pretrained name
    checkpoint: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    size: int | None = None  # None: the pretrained tag's / model's
    fold_tau: tuple[str, float] | None = None  # folded rows: fold at this tau (the option that gave it), no search


# --- part 5: clip graphs, FP32 and INT8 engines, estimates ------------------------------------------------------


def group_variants(group: str, args: argparse.Namespace) -> tuple[list[Variant], list[str]]:
    """The variants of a group and notes on what was skipped."""
    from edgefuse.models.checkpoint import read_checkpoint

    notes: list[str] = []
    if group == "zoo":
        return [Variant("tsn", "TSN", "synth_tsn_r18w025"), Variant("tsm", "TSM", "synth_tsm_r18w025"),
                Variant("adafuse_dynamic", "AdaFuse-TSM dynamic", "synth_adafuse_tsm_r18w025"),
                Variant("adafuse_folded", "AdaFuse-TSM folded", "synth_adafuse_tsm_r18w025"),
                Variant("gsf", "GSF", "synth_gsf_r18w025")], notes
    if group == "r50":
        ck = {n: r50_checkpoint(n, args.synth, args.work / "r50", args.r50_probe)
              for n in ("tsn_resnet50", "tsm_resnet50", "adafuse_tsm_resnet50", "gsf_resnet50")}
        return [Variant("tsn", "TSN-R50", "tsn_resnet50", ck["tsn_resnet50"], size=224),
                Variant("tsm", "TSM-R50", "tsm_resnet50", ck["tsm_resnet50"], size=224),
                Variant("adafuse_dynamic", "AdaFuse-TSM-R50 dynamic", "adafuse_tsm_resnet50",
                        ck["adafuse_tsm_resnet50"], size=224),
                Variant("adafuse_folded", "AdaFuse-TSM-R50 folded", "adafuse_tsm_resnet50",
                        ck["adafuse_tsm_resnet50"], size=224,
                        fold_tau=None if args.r50_tau is None else ("--r50-tau", args.r50_tau)),
                Variant("gsf", "GSF-R50", "gsf_resnet50", ck["gsf_resnet50"], size=224)], notes
    assert group == "full"
    if args.full_width is None or not args.full_width.is_dir():
        return [], [f"no full-width models in {args.full_width}: the full-width group is skipped"]
    out = []
    for key, fname in FULL_FILES.items():
        path = args.full_width / fname
        if not path.is_file():
            notes.append(f"{fname} not in {args.full_width}: its rows are skipped")
            continue
        model = read_checkpoint(path).model_name or FULL_MODELS[key]
        label = {"tsm": "TSM-R18", "adafuse": "AdaFuse-TSM-R18", "gsf": "GSF-R18"}[key]
        if key == "adafuse":
            out += [Variant("adafuse_dynamic", f"{label} dynamic", model, path, size=args.full_size),
                    Variant("adafuse_folded", f"{label} folded", model, path, size=args.full_size,
                            fold_tau=None if args.full_tau is None else ("--full-tau", args.full_tau))]
        else:
            out.append(Variant(key, label, model, path, size=args.full_size))
    return out, notes


def export_variant(v: Variant, work: Path, args: argparse.Namespace, policy_clips: Callable[[dict], Path]
                   ) -> tuple[Path, dict[str, Any], Any]:
    """(FP32 graph, its metadata, the fold report or None); cached in ``work``."""
    from edgefuse.errors import EdgefuseError
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata

    out = work / f"{v.key}.onnx"
    fold_json = work / f"{v.key}.fold.json"
    base = dict(model=v.model, checkpoint=v.checkpoint, size=v.size, segments=8, options=v.options or None,
                num_classes=10 if "resnet50" in v.model else None)
    if v.key == "adafuse_folded" and not out.is_file() and v.fold_tau is not None:
        option, tau = v.fold_tau
        clips = policy_clips(read_metadata(load_onnx(work / "adafuse_dynamic.onnx")))
        rep = export(make_config(None, out, **base, policy="static", policy_clips=clips, tau=tau))
        fold_json.write_text(json.dumps({"fold": rep.fold.to_dict(), "how": f"tau {tau} given ({option})"},
                                        default=str))
    elif v.key == "adafuse_folded" and not out.is_file():
        dyn_meta = read_metadata(load_onnx(work / "adafuse_dynamic.onnx"))
        clips = policy_clips(dyn_meta)
        try:
            rep = export(make_config(None, out, **base, policy="static", policy_clips=clips))
            how = "automatic tau (>= 99% top-1 agreement with the dynamic policy on the policy clips)"
        except EdgefuseError as e:  # no tau keeps 99%: fold at tau 1 (only channels every clip skips)
            log.warning("%s: %s; folding at tau 1.0", v.label, e)
            rep = export(make_config(None, out, **base, policy="static", policy_clips=clips, tau=1.0))
            how = f"tau 1.0 given (the automatic search failed: {e})"
        fold_json.write_text(json.dumps({"fold": rep.fold.to_dict(), "how": how}, default=str))
    elif not out.is_file():
        export(make_config(None, out, **base))
    fold = json.loads(fold_json.read_text()) if fold_json.is_file() else None
    return out, read_metadata(load_onnx(out)), fold


def calibrate_graph(fp32: Path, args: argparse.Namespace, r50: bool) -> Path:
    from edgefuse.quantize import CalibrateConfig, calibrate

    int8 = fp32.with_suffix(".int8.onnx")
    if not int8.is_file():
        calibrate(CalibrateConfig(model=fp32, clips=args.synth / "calib.txt", output=int8,
                                  num_clips=args.r50_calib if r50 else args.calib, holdout=args.synth / "val.txt",
                                  num_holdout=min(args.r50_val if r50 else args.val, 32),
                                  cache_dir=fp32.parent / "cache", progress=False))
    return int8


def estimates(fp32: Path, int8: Path) -> dict[str, dict[str, float]]:
    """Roofline estimate (edgefuse.estimate) of the FP32 graph as an FP16 TensorRT engine and of the Q/DQ graph
    (INT8 layers, the rest FP16) on each Jetson profile."""
    import onnx

    from edgefuse.devices.profiles import get_device
    from edgefuse.estimate import estimate
    from edgefuse.graph.metadata import read_metadata

    out: dict[str, dict[str, float]] = {}
    graphs = {"fp16": onnx.load(str(fp32)), "int8": onnx.load(str(int8))}
    for dev in DEVICES:
        profile = get_device(dev)
        out[dev] = {}
        for kind, g in graphs.items():
            est = estimate(g, read_metadata(g), profile, engine_precision="fp16")
            out[dev][f"{kind}_ms"] = float(est.total_ms)
            if est.uncertainty_pct is not None:
                out[dev]["uncertainty_pct"] = float(est.uncertainty_pct)
    return out


def run_group(group: str, args: argparse.Namespace) -> dict[str, Any]:
    from edgefuse.backends import BuildConfig, build_engine, load
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.export.api import build_model
    from edgefuse.export.config import make_config
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.query import node_macs

    load_start = os.getloadavg()[0]
    work = args.work / group
    work.mkdir(parents=True, exist_ok=True)
    variants, notes = group_variants(group, args)
    if not variants:
        return {"group": group, "variants": [], "notes": notes}
    r50 = group == "r50"
    clip_cache: dict[str, Any] = {}

    def clips_for(meta: dict[str, Any], which: str, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        pre = Preprocess.from_metadata(meta)
        key = f"{which}:{n}:{pre}"
        if key not in clip_cache:
            cs = open_clips(args.synth / f"{which}.txt", pre, Sampling(num_segments=int(meta["segments"])),
                            num_clips=n, progress=False)
            stacked, labels, _ = cs.stack()
            clip_cache[key] = (stacked.numpy(), labels.numpy() if labels is not None else None, cs)
        return clip_cache[key][:2]

    def policy_clips(meta: dict[str, Any]) -> Path:
        path = work / "policy_clips.npz"
        if not path.is_file():
            clips_for(meta, "calib", args.r50_policy_clips if r50 else args.policy_clips)
            pre = Preprocess.from_metadata(meta)
            key = f"calib:{args.r50_policy_clips if r50 else args.policy_clips}:{pre}"
            clip_cache[key][2].to_npz(path)
        return path

    rows: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    recs: list[dict[str, Any]] = []
    plain_of: dict[str, str] = {}
    x = None
    for v in variants:
        log.info("%s: %s: export, calibrate, build", group, v.label)
        fp32, meta, fold = export_variant(v, work, args, policy_clips)
        int8 = calibrate_graph(fp32, args, r50)
        e32 = build_engine(BuildConfig(fp32, work / f"{v.key}.fp32.engine", device="cpu",
                                       backend="onnxruntime")).path
        e8 = build_engine(BuildConfig(int8, work / f"{v.key}.int8.engine", device="cpu", backend="onnxruntime")).path
        clips, labels = clips_for(meta, "val", args.r50_val if r50 else args.val)
        if x is None:
            x = np.ascontiguousarray(clips[:1], dtype=np.float32)
        if v.key != "adafuse_folded":  # folded: the plain export a user makes is AdaFuse's own (dynamic) one
            module, _ = build_model(make_config(None, fp32, model=v.model, checkpoint=v.checkpoint, size=v.size,
                                                segments=8, options=v.options or None,
                                                num_classes=10 if r50 else None))
            rows[f"{v.label} | {FP32_PLAIN}"] = ort_default_session(plain_export(module, x, work / f"{v.key}.plain.onnx"))
            del module
            plain_of[v.key] = f"{v.label} | {FP32_PLAIN}"
        rows[f"{v.label} | {FP32_ENGINE}"] = load(e32).run
        rows[f"{v.label} | {INT8_ENGINE}"] = load(e8).run
        recs.append({"key": v.key, "label": v.label, "model": v.model,
                     "checkpoint": str(v.checkpoint) if v.checkpoint else "pretrained (shipped)",
                     "input": [1, int(meta["segments"]), 3, int(meta["input_size"]), int(meta["input_size"])],
                     "gmacs": sum(node_macs(load_onnx(fp32), meta).values()) / 1e9,
                     "fold": fold, "estimates": estimates(fp32, int8), "val_clips": len(clips)})
    assert x is not None
    rounds, block = (args.r50_rounds, args.r50_block) if r50 else (args.rounds, args.block)
    times = time_rows(rows, x, rounds, block, f"{group}: timing")
    # accuracy on the val clips: every row, against the labels and against its FP32 graph (and AdaFuse's policy)
    logits = {}
    for v, rec in zip(variants, recs):
        clips, labels = clips_for({**read_meta(work / f"{v.key}.onnx")}, "val", rec["val_clips"])
        for kind in (FP32_PLAIN, FP32_ENGINE, INT8_ENGINE):
            name = f"{v.label} | {kind}"
            if name in rows:
                logits[name] = logits_of(rows[name], clips)
        rec["labels_known"] = labels is not None
        rec["_labels"] = labels
    dyn = next((f"{v.label} | {FP32_ENGINE}" for v in variants if v.key == "adafuse_dynamic"), None)
    dyn_plain = next((plain_of[v.key] for v in variants if v.key == "adafuse_dynamic"), None)
    for v, rec in zip(variants, recs):
        ref = logits[f"{v.label} | {FP32_ENGINE}"].argmax(1)
        base_name = plain_of.get(v.key, dyn_plain)
        base = float(np.median(times[base_name])) if base_name else None
        rec["rows"] = []
        labels = rec.pop("_labels")
        for kind in (FP32_PLAIN, FP32_ENGINE, INT8_ENGINE):
            name = f"{v.label} | {kind}"
            if name not in rows:
                continue
            t = np.asarray(times[name])
            pred = logits[name].argmax(1)
            rec["rows"].append({
                "engine": kind, "p50_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
                "cov": float(t.std() / t.mean()),
                "top1": float((pred == labels).mean()) if labels is not None else None,
                "agree_fp32": float((pred == ref).mean()),
                "agree_policy": (float((pred == logits[dyn].argmax(1)).mean())
                                 if v.key == "adafuse_folded" and dyn else None),
                "speedup_vs_plain": base / float(np.median(t)) if base else None,
                "plain_baseline": base_name.split(" | ")[0] if base_name else None,
                "raw_ms": [round(float(a), 3) for a in t]})
    return {"group": group, "variants": recs, "notes": notes, "loadavg": [load_start, os.getloadavg()[0]],
            "timing": {"rounds": rounds, "block": block, "calib_clips": args.r50_calib if r50 else args.calib,
                       "policy_clips": args.r50_policy_clips if r50 else args.policy_clips}}


def read_meta(path: Path) -> dict[str, Any]:
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata

    return read_metadata(load_onnx(path))


# --- part 3: stream graphs -----------------------------------------------------------------------------------------


class NumpyStream:
    """One frame per call, fed as edgefuse's OrtRunner.run_frames feeds it: numpy frame and states in, session.run
    returns fresh numpy arrays (logits and next states), which are fed back."""

    def __init__(self, session: Any, states: list[dict[str, Any]], clip: np.ndarray) -> None:
        self.s, self.clip = session, clip  # clip (1, T, 3, H, W)
        self.names = [st["name"] for st in states]
        self.input = session.get_inputs()[0].name
        self.zero = [np.zeros(st["shape"], dtype=st.get("dtype", "float32")) for st in states]
        self.states, self.t = list(self.zero), 0

    def __call__(self, _x: np.ndarray | None = None) -> np.ndarray:
        if self.t == self.clip.shape[1]:
            self.states, self.t = list(self.zero), 0
        feeds = {self.input: self.clip[:, self.t], **dict(zip(self.names, self.states))}
        logits, *self.states = self.s.run(None, feeds)
        self.t += 1
        return logits


class BoundStream:
    """One frame per call with IOBinding: two sets of state OrtValues allocated once, two bindings (A -> B and
    B -> A) made once; a call copies the frame into its bound OrtValue, runs and swaps. No state is copied."""

    def __init__(self, session: Any, states: list[dict[str, Any]], clip: np.ndarray) -> None:
        import onnxruntime as ort

        self.s, self.clip = session, clip
        self.frames = [np.ascontiguousarray(clip[:, t]) for t in range(clip.shape[1])]
        self.frame = ort.OrtValue.ortvalue_from_numpy(self.frames[0].copy())
        outs = session.get_outputs()
        k = int(outs[0].shape[1])
        self.logits = ort.OrtValue.ortvalue_from_numpy(np.zeros((clip.shape[0], k), np.float32))
        sets = [[ort.OrtValue.ortvalue_from_numpy(np.zeros(st["shape"], dtype=st.get("dtype", "float32")))
                 for st in states] for _ in range(2)]
        self.sets = sets
        self.bindings = []
        in_name = session.get_inputs()[0].name
        for src, dst in ((sets[0], sets[1]), (sets[1], sets[0])):
            b = session.io_binding()
            b.bind_ortvalue_input(in_name, self.frame)
            b.bind_ortvalue_output(outs[0].name, self.logits)
            for st, a, o in zip(states, src, dst):
                b.bind_ortvalue_input(st["name"], a)
                b.bind_ortvalue_output(st["next_name"], o)
            self.bindings.append(b)
        self.t, self.which = 0, 0
        self.zeros = [np.zeros(st["shape"], dtype=st.get("dtype", "float32")) for st in states]

    def __call__(self, _x: np.ndarray | None = None) -> np.ndarray:
        if self.t == len(self.frames):  # a new stream: zero state (outside a frame's work in a live loop)
            for a, z in zip(self.sets[self.which], self.zeros):
                a.update_inplace(z)
            self.t = 0
        self.frame.update_inplace(self.frames[self.t])
        self.s.run_with_iobinding(self.bindings[self.which])
        self.which ^= 1
        self.t += 1
        return self.logits.numpy()


def profile_runs(engine: Path, make: Callable[[Any], Callable[[], Any]], calls: int, threads: int | None
                 ) -> dict[str, Any]:
    """ONNX Runtime's profile of ``calls`` calls (after 3 unprofiled-in-the-stats warm-ups): per call the wall time
    in Python, ONNX Runtime's model_run, the sum of its kernels, and kernel time per op type."""
    import onnxruntime as ort

    from edgefuse.graph.ort import session_options

    opts = session_options(threads, optimize=False, profile=True)
    opts.profile_file_prefix = str(engine.parent / f"prof_{engine.stem}")
    s = ort.InferenceSession(str(engine), opts, providers=["CPUExecutionProvider"])
    fn = make(s)
    for _ in range(3):
        fn()
    walls = []
    t_start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        walls.append(1000 * (time.perf_counter() - t))
    del t_start
    prof = Path(s.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    runs = [e for e in events if e.get("name") == "model_run"][-calls:]
    if not runs:
        return {}
    first = runs[0]["ts"]
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
               and e["ts"] >= first]
    by_op: dict[str, float] = {}
    count: dict[str, float] = {}
    for e in kernels:
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1000 / calls
        count[op] = count.get(op, 0.0) + 1 / calls
    run_ms = float(np.median([r["dur"] for r in runs])) / 1000
    kern_ms = sum(e["dur"] for e in kernels) / 1000 / calls
    gemm = sum(v for k, v in by_op.items() if k in GEMM_OPS)
    return {"calls": calls, "wall_ms": float(np.median(walls)), "model_run_ms": run_ms, "kernels_ms": kern_ms,
            "kernels_per_call": len(kernels) / calls, "by_op_ms": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "by_op_count": count, "conv_gemm_ms": gemm, "other_ops_ms": kern_ms - gemm,
            "other_ops_per_call": sum(v for k, v in count.items() if k not in GEMM_OPS),
            "in_run_overhead_ms": run_ms - kern_ms, "outside_run_ms": float(np.median(walls)) - run_ms}


def stream_checkpoint(tag: str, work: Path) -> Path:
    """The random seeded checkpoint of stream model ``tag`` (:data:`STREAM_MODELS`), made once in ``work``."""
    import torch

    from edgefuse.models import create_model
    from edgefuse.models.checkpoint import save_checkpoint

    model, options, size = STREAM_MODELS[tag]
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / f"{tag}.pth"
    if not ckpt.is_file():
        torch.manual_seed(0)
        save_checkpoint(create_model(model, num_classes=10, num_segments=8, input_size=size, **options), ckpt)
    return ckpt


def run_stream(tags: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from edgefuse.backends import BuildConfig, build_engine, load
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.query import node_macs

    load_start = os.getloadavg()[0]
    work = args.work / "stream"
    work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Callable[[np.ndarray], Any]] = {}
    recs = []
    x = None
    int8_note = ("FP32 rows only; INT8 stream engines (edgefuse calibrate takes a stream graph frame by frame): "
                 "benchmarks/stream_int8.py")
    for tag in tags:
        model, options, size = STREAM_MODELS[tag]
        ckpt = stream_checkpoint(tag, work)
        paths = {}
        for policy in ("dynamic", "stream"):
            paths[policy] = work / f"{tag}.{policy}.onnx"
            if not paths[policy].is_file():
                export(make_config(None, paths[policy], model=model, checkpoint=ckpt, size=size, segments=8,
                                   policy=policy, options=options or None))
        engines = {p: build_engine(BuildConfig(paths[p], work / f"{tag}.{p}.fp32.engine", device="cpu",
                                               backend="onnxruntime")).path for p in paths}
        clip_runner, stream_runner = load(engines["dynamic"]), load(engines["stream"])
        states = stream_runner.metadata["stream_states"]
        shape = (1, 8, 3, size, size)
        clip = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        if x is None or x.shape != shape:
            x = clip  # the clip rows' input (each model's own shape below)
        label = f"{tag}"
        c = clip.copy()
        rows[f"{label} | clip graph, one clip"] = (lambda r, c: (lambda _x: r.run(c)))(clip_runner, c)
        rows[f"{label} | stream, session.run numpy (as OrtRunner.run_frames)"] = NumpyStream(
            stream_runner.session, states, clip)
        rows[f"{label} | stream, IOBinding ping-pong"] = BoundStream(stream_runner.session, states, clip)
        # one intra-op thread: no thread-pool hand-off per kernel (a frame runs ~7x the kernels a clip runs per frame)
        clip_1t, stream_1t = load(engines["dynamic"], threads=1), load(engines["stream"], threads=1)
        rows[f"{label} | clip graph, one clip, 1 thread"] = (lambda r, c: (lambda _x: r.run(c)))(clip_1t, c)
        rows[f"{label} | stream, IOBinding ping-pong, 1 thread"] = BoundStream(stream_1t.session, states, clip)
        # parity: the stream's frame logits averaged against the clip graph's logits (same weights)
        ref = clip_runner.run(clip)
        ns, bs = NumpyStream(stream_runner.session, states, clip), BoundStream(stream_runner.session, states, clip)
        per_np = np.stack([ns() for _ in range(8)], 1)  # (1, T, K)
        per_b = np.stack([bs().copy() for _ in range(8)], 1)
        threads = None
        prof = {
            "clip": profile_runs(engines["dynamic"], lambda s: (lambda: s.run(None, {s.get_inputs()[0].name: c})),
                                 args.profile_calls, threads),
            "stream_numpy": profile_runs(engines["stream"], lambda s: NumpyStream(s, states, clip),
                                         8 * args.profile_calls, threads),
            "stream_iobinding": profile_runs(engines["stream"], lambda s: BoundStream(s, states, clip),
                                             8 * args.profile_calls, threads),
        }
        recs.append({
            "tag": tag, "model": model, "options": options, "size": size,
            "gmacs_clip": sum(node_macs(load_onnx_(paths["dynamic"])).values()) / 1e9,
            "gmacs_frame": sum(node_macs(load_onnx_(paths["stream"])).values()) / 1e9,
            "states": len(states),
            "state_kb": sum(4 * int(np.prod(s["shape"])) for s in states) / 1024,
            "parity_max_abs": float(np.abs(per_np.mean(1) - ref).max()),
            "iobinding_vs_numpy_max_abs": float(np.abs(per_np - per_b).max()),
            "kernels_clip_graph": prof["clip"].get("kernels_per_call"),
            "kernels_stream_graph": prof["stream_numpy"].get("kernels_per_call"),
            "profile": prof})
    assert x is not None
    # every model's rows take their own clip (captured), so x only paces the timing loop
    times = time_rows(rows, x, args.stream_rounds, args.stream_block, "stream: timing")
    for rec in recs:
        tag = rec["tag"]
        res = {}
        for name, t in times.items():
            if name.startswith(tag + " | "):
                a = np.asarray(t)
                res[name.split(" | ", 1)[1]] = {"p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
                                                "cov": float(a.std() / a.mean()),
                                                "raw_ms": [round(float(v), 3) for v in a]}
        clip_ms = res["clip graph, one clip"]["p50_ms"]
        best_clip = min(r["p50_ms"] for k, r in res.items() if k.startswith("clip"))
        rec["timing"] = res
        rec["clip_per_frame_ms"] = clip_ms / 8
        rec["best_clip_per_frame_ms"] = best_clip / 8
        for k, r in res.items():
            if k.startswith("stream"):
                r["ratio_to_clip_per_frame"] = r["p50_ms"] / (clip_ms / 8)
                r["ratio_to_best_clip_per_frame"] = r["p50_ms"] / (best_clip / 8)
    return {"models": recs, "int8": int8_note, "loadavg": [load_start, os.getloadavg()[0]],
            "timing": {"rounds": args.stream_rounds, "block": args.stream_block,
                       "profile_calls": args.profile_calls}}


def load_onnx_(path: Path) -> Any:
    from edgefuse.graph.io import load_onnx

    return load_onnx(path)


# --- goals, docs, plot -------------------------------------------------------------------------------------------


def p50(rec: dict[str, Any], engine: str) -> float | None:
    return next((r["p50_ms"] for r in rec["rows"] if r["engine"] == engine), None)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for g in results["groups"]:
        by = {v["key"]: v for v in g["variants"]}
        tsm, dyn, fol = by.get("tsm"), by.get("adafuse_dynamic"), by.get("adafuse_folded")
        for eng in (FP32_ENGINE, INT8_ENGINE):
            tag = "FP32" if eng == FP32_ENGINE else "INT8"
            if tsm and fol:
                mac_saving = 1 - fol["gmacs"] / tsm["gmacs"]
                lat_saving = 1 - p50(fol, eng) / p50(tsm, eng)
                out.append({"group": g["group"], "goal": f"folded saves >= 70% of its MAC saving vs TSM as latency "
                                                         f"({tag} engines)",
                            "value": f"MACs {-100 * mac_saving:+.1f}%, latency {-100 * lat_saving:+.1f}% "
                                     f"({100 * lat_saving / mac_saving:.1f}% of it)" if mac_saving > 0 else
                                     f"no MAC saving (folded {fol['gmacs']:.3f} vs TSM {tsm['gmacs']:.3f} GMACs)",
                            "met": bool(mac_saving > 0 and lat_saving >= 0.7 * mac_saving)})
                if g["group"] == "r50":  # an untrained policy: what it skips (and so the MAC saving) means nothing
                    out[-1]["value"] += "; random weights: the policy is untrained, so this says nothing of the goal"
                    out[-1]["met"] = None
            if tsm and dyn:
                r = p50(dyn, eng) / p50(tsm, eng)
                out.append({"group": g["group"], "goal": f"policy in graph within 1.2x TSM ({tag} engines)",
                            "value": f"{r:.2f}x", "met": bool(r <= 1.2)})
        if g["group"] == "r50":
            for key, want in (("gsf", 3.0), ("tsn", 3.5), ("tsm", 3.5), ("adafuse_dynamic", 3.5),
                              ("adafuse_folded", 3.5)):
                if key in by:
                    row = next(r for r in by[key]["rows"] if r["engine"] == INT8_ENGINE)
                    out.append({"group": "r50", "goal": f"{by[key]['label']} INT8 CPU engine >= {want}x ORT FP32 of "
                                                        f"the plain export ({row['plain_baseline']})",
                                "value": f"{row['speedup_vs_plain']:.2f}x", "met": bool(row["speedup_vs_plain"] >= want)})
    st = results.get("stream")
    if st:
        for m in st["models"]:
            t = m["timing"]
            for k, r in t.items():
                if k.startswith("stream") and "1 thread" not in k:
                    out.append({"group": "stream", "goal": f"{m['tag']}: stream per-frame <= 1.2x clip / T ({k}; "
                                                           "both at ONNX Runtime's default threads)",
                                "value": f"{r['p50_ms']:.2f} ms vs {m['clip_per_frame_ms']:.2f} ms = "
                                         f"{r['ratio_to_clip_per_frame']:.2f}x",
                                "met": bool(r["ratio_to_clip_per_frame"] <= 1.2)})
            best_k, best = min(((k, r) for k, r in t.items() if k.startswith("stream")), key=lambda kr: kr[1]["p50_ms"])
            out.append({"group": "stream", "goal": f"{m['tag']}: best stream per-frame <= 1.2x best clip / T ({best_k})",
                        "value": f"{best['p50_ms']:.2f} ms vs {m['best_clip_per_frame_ms']:.2f} ms = "
                                 f"{best['ratio_to_best_clip_per_frame']:.2f}x",
                        "met": bool(best["ratio_to_best_clip_per_frame"] <= 1.2)})
    return out


def fmt(v: float | None, spec: str = ".1f", scale: float = 1.0, suffix: str = "") -> str:
    return "-" if v is None else f"{scale * v:{spec}}{suffix}"


def group_table(g: dict[str, Any]) -> list[str]:
    head = ("| model | GMACs/clip | engine | p50 ms | p99 ms | vs ORT FP32 plain | top-1 (labels) | agrees with FP32 "
            "graph | agrees with AdaFuse policy | " + " | ".join(f"{d} FP16 / INT8 est. ms" for d in DEVICES) + " |")
    lines = [head, "|" + "---|" * (9 + len(DEVICES))]
    for v in g["variants"]:
        gm = f"{v['gmacs']:.3f}"
        if v.get("fold"):
            f = v["fold"]["fold"]
            gm += f" (dynamic expected {f['macs']['dynamic_expected'] / 1e9:.3f}; tau {f['tau']:.2f})"
        for i, r in enumerate(v["rows"]):
            est = " | ".join(f"{v['estimates'][d]['fp16_ms']:.2f} / {v['estimates'][d]['int8_ms']:.2f}"
                             if i == 0 else "" for d in DEVICES)
            lines.append(f"| {v['label'] if i == 0 else ''} | {gm if i == 0 else ''} | {r['engine']} | "
                         f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {fmt(r['speedup_vs_plain'], '.2f', suffix='x')} | "
                         f"{fmt(r['top1'], '.1f', 100, '%')} | {fmt(r['agree_fp32'], '.1f', 100, '%')} | "
                         f"{fmt(r['agree_policy'], '.1f', 100, '%')} | {est} |")
    return lines


def stream_tables(st: dict[str, Any]) -> list[str]:
    ways = ("clip graph, one clip", "clip graph, one clip, 1 thread",
            "stream, session.run numpy (as OrtRunner.run_frames)", "stream, IOBinding ping-pong",
            "stream, IOBinding ping-pong, 1 thread")
    lines = ["| stream model | GMACs/clip (T=8) | states (KB) | kernels per clip / per frame | " + " | ".join(
        f"{w} p50 ms" + (" (/T)" if w.startswith("clip") else " (vs clip / T)") for w in ways)
        + " | stream vs clip max abs logit diff |", "|" + "---|" * (5 + len(ways))]
    for m in st["models"]:
        t = m["timing"]
        cells = []
        for w in ways:
            r = t.get(w)
            if r is None:
                cells.append("-")
            elif w.startswith("clip"):
                cells.append(f"{r['p50_ms']:.2f} ({r['p50_ms'] / 8:.3f})")
            else:
                cells.append(f"{r['p50_ms']:.3f} ({r['ratio_to_clip_per_frame']:.2f}x)")
        lines.append(f"| {m['tag']} ({m['size']}px) | {m['gmacs_clip']:.3f} | {m['states']} ({m['state_kb']:.0f}) | "
                     f"{fmt(m['kernels_clip_graph'], '.0f')} / {fmt(m['kernels_stream_graph'], '.0f')} | "
                     + " | ".join(cells) + f" | {m['parity_max_abs']:.1e} |")
    lines += ["", "ONNX Runtime profile (separate profiled sessions; ms per frame, the clip graph's per clip / 8): wall "
              "time of the Python call, ONNX Runtime's model_run, the sum of its kernels, what model_run spends "
              "outside kernels, what the call spends outside model_run (feeds, output copies, binding), and the "
              "three op types that take longest.", "",
              "| stream model | run as | wall | model_run | kernels | of which Conv/Gemm | other ops (count) | in run, "
              "not kernels | outside run | kernels per frame | top op types (ms per frame) |", "|" + "---|" * 11]
    for m in st["models"]:
        for what, div in (("clip", 8), ("stream_numpy", 1), ("stream_iobinding", 1)):
            p = m["profile"].get(what) or {}
            if not p:
                continue
            ops = ", ".join(f"{k} {v / div:.3f}" for k, v in list(p["by_op_ms"].items())[:3])
            lines.append(f"| {m['tag']} | {what.replace('_', ' ')}{' (/8)' if div == 8 else ''} | "
                         f"{p['wall_ms'] / div:.3f} | {p['model_run_ms'] / div:.3f} | {p['kernels_ms'] / div:.3f} | "
                         f"{p['conv_gemm_ms'] / div:.3f} | {p['other_ops_ms'] / div:.3f} "
                         f"({p['other_ops_per_call'] / div:.1f}) | "
                         f"{p['in_run_overhead_ms'] / div:.3f} | {p['outside_run_ms'] / div:.3f} | "
                         f"{p['kernels_per_call'] / div:.1f} | {ops} |")
    return lines


def write_docs(results: dict[str, Any]) -> None:
    from edgefuse.backends.ort.cpu import cpu_identity

    cpu = cpu_identity()
    m = results["machine"]
    pre = results.get("preliminary")
    lines = ["# AdaFuse latency: CPU engines, Jetson estimates, stream graphs", ""]
    if pre:
        loads = [v for g in results["groups"] for v in g.get("loadavg", [])]
        loads += (results.get("stream") or {}).get("loadavg", [])
        load = f" (1-minute load average {min(loads):.1f} to {max(loads):.1f} on its cores during the runs)" if loads else ""
        lines += [f"**{pre}.** The figures below come from `--quick` runs (fewer clips and rounds) on a machine other "
                  f"jobs shared{load}: expect them to move by tens of percent on a quiet machine; the verdicts on the "
                  "goals are preliminary.", ""]
    if results.get("commands"):
        lines += ["Commands (each group in one process; the results merged with `--merge`): "
                  + "; ".join(f"`{c}`" for c in results["commands"]) + f", {results['date']}."]
    else:
        lines += [f"Command: `{results['command']}`, {results['date']}, one process."]
    lines += [
              f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), {m['platform']}; ONNX Runtime "
              f"{m['onnxruntime']}, torch {m['torch']}; threads = ONNX Runtime's default (one per physical core).", "",
              "Timing: one clip (batch 1) per run, every row of a group runs a block of consecutive runs in turn (the "
              "first of each block dropped), repeated (benchmarks/cpu_engines.py time_rows); p50 / p99 over the kept "
              "runs. GMACs/clip: the FP32 graph's (AdaFuse dynamic: the dense graph, every channel computed; folded: "
              "the smaller folded graph; in brackets the MACs the dynamic policy's decisions would cost on the policy "
              "clips). vs ORT FP32 plain: ONNX Runtime with its defaults on a plain torch.onnx.export of the same "
              "model (folded rows: AdaFuse's own plain export). Agreement: top-1 agreement on the val clips with the "
              "row's FP32 graph, and for folded rows with the dynamic AdaFuse graph (its policy). Top-1 against the "
              "labels is meaningful for the trained models only (zoo, full width); the ResNet-50 rows carry random "
              "convolutions with BN statistics and a linear probe (benchmarks/cpu_engines.py r50_checkpoint). "
              "Estimates: edgefuse.estimate (roofline fitted on published Jetson measurements) of the FP32 graph as "
              "an FP16 TensorRT engine and of the calibrated Q/DQ graph (INT8 layers, the rest FP16), batch 1.", ""]
    lines += ["## Goals: the targets these engines are measured against", "", "| group | goal | measured | met |", "|---|---|---|---|"]
    for gl in results["goals"]:
        met = "n/a" if gl["met"] is None else "yes" if gl["met"] else "no"
        lines.append(f"| {gl['group']} | {gl['goal']} | {gl['value']} | {met} |")
    lines.append("")
    for g in results["groups"]:
        title = {"zoo": "Zoo: ResNet-18 width 0.25, 8x112, trained on edgefuse synth",
                 "full": "Full width: ResNet-18 width 1.0, trained on edgefuse synth",
                 "r50": "ResNet-50 8x224 (random weights, BN statistics and linear probe)"}[g["group"]]
        lines += [f"## {title}", ""]
        for n in g["notes"]:
            lines.append(f"- {n}")
        if g["notes"]:
            lines.append("")
        if not g["variants"]:
            continue
        tm = g["timing"]
        lines += [f"{g['variants'][0]['val_clips']} val clips; INT8 calibrated on {tm['calib_clips']} calib clips; "
                  f"folded on {tm['policy_clips']} calib clips; {tm['rounds']} rounds x {tm['block']} runs per row.", ""]
        lines += group_table(g)
        for v in g["variants"]:
            if v.get("fold"):
                f = v["fold"]["fold"]
                lines += ["", f"{v['label']}: {v['fold']['how']}; tau {f['tau']:.2f}, top-1 agreement with the dynamic "
                              f"policy on the policy clips {100 * f['agreement']:.1f}%, MACs dense "
                              f"{f['macs']['dense'] / 1e9:.3f} / dynamic expected {f['macs']['dynamic_expected'] / 1e9:.3f}"
                              f" / folded {f['macs']['folded'] / 1e9:.3f} G per clip."]
        lines.append("")
    st = results.get("stream")
    if st:
        lines += ["## Stream graphs: per-frame latency against the clip graph's latency / T", "",
                  "Random seeded weights (latency only); the clip graph is the same model exported with "
                  "`--policy dynamic` (T = 8), the stream graph with `--policy stream`, both as edgefuse FP32 engines "
                  "(ONNX Runtime CPU). A stream row's run is one frame; its states are fed back frame after frame "
                  "and reset to zero every 8 frames. Two ways of feeding the states: `session.run` with numpy "
                  "arrays (what edgefuse's OrtRunner.run_frames does: states copied in and out each call) and "
                  "IOBinding with two sets of state OrtValues bound once and swapped each frame (no state copied). "
                  f"{st['timing']['rounds']} rounds x {st['timing']['block']} runs per row; the profile over "
                  f"{st['timing']['profile_calls']} clips / {8 * st['timing']['profile_calls']} frames.", "",
                  f"INT8: {st['int8']}", ""]
        lines += stream_tables(st)
        lines.append("")
    if results.get("reading"):
        lines += ["## Reading", ""] + results["reading"] + [""]
    lines += ["![p50 latency against GMACs per clip](adafuse_latency.png)", ""]
    (ROOT / "docs" / "adafuse_latency.md").write_text("\n".join(lines) + "\n")
    res_md = ROOT / "benchmarks" / "results" / "adafuse_latency.md"
    res_md.write_text("\n".join(lines).replace("](adafuse_latency.png)", "](../../docs/adafuse_latency.png)") + "\n")
    del cpu
    plot(results, ROOT / "docs" / "adafuse_latency.png")


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        log.info("matplotlib not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in results["groups"] if g["variants"]]
    n = len(groups) + (1 if results.get("stream") else 0)
    if not n:
        return
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    marks = {FP32_PLAIN: ("tab:gray", "s"), FP32_ENGINE: ("tab:blue", "o"), INT8_ENGINE: ("tab:red", "^")}
    for ax, g in zip(axes[0], groups):
        for eng, (color, mark) in marks.items():
            pts = [(v["gmacs"], p50(v, eng), v["label"]) for v in g["variants"] if p50(v, eng) is not None]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, marker=mark, label=eng)
            if eng == FP32_ENGINE:
                for gm, ms, lab in pts:
                    ax.annotate(lab, (gm, ms), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("GMACs per clip (graph)")
        ax.set_ylabel("p50 ms per clip (CPU)")
        ax.set_title(g["group"], fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    if results.get("stream"):
        ax = axes[0][-1]
        for m in results["stream"]["models"]:
            t = m["timing"]
            gm = m["gmacs_clip"] / 8
            ax.scatter([gm], [m["clip_per_frame_ms"]], c="tab:blue", marker="o")
            ax.scatter([gm], [t["stream, session.run numpy (as OrtRunner.run_frames)"]["p50_ms"]], c="tab:orange",
                       marker="x")
            ax.scatter([gm], [t["stream, IOBinding ping-pong"]["p50_ms"]], c="tab:green", marker="+")
            ax.annotate(m["tag"], (gm, m["clip_per_frame_ms"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.scatter([], [], c="tab:blue", marker="o", label="clip graph / T")
        ax.scatter([], [], c="tab:orange", marker="x", label="stream, session.run numpy")
        ax.scatter([], [], c="tab:green", marker="+", label="stream, IOBinding")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("GMACs per frame")
        ax.set_ylabel("p50 ms per frame")
        ax.set_title("stream graphs (FP32)", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def machine() -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from edgefuse.backends.ort.cpu import cpu_identity

    cpu = cpu_identity()
    return {"cpu": cpu["name"], "cores": cpu["cores"], "isa": list(cpu["isa"]), "platform": platform.platform(),
            "onnxruntime": ort.__version__, "torch": torch.__version__}


def finish(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The reading (--reading), the goals' verdicts, then the JSON and the docs written from ``results``."""
    if args.reading:
        results["reading"] = args.reading.read_text().rstrip("\n").splitlines()
    results["goals"] = goals(results)
    args.json_out.write_text(json.dumps(results, indent=1, default=str))
    write_docs(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="zoo,full,r50,stream", help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--full-width", type=Path, default=ROOT / "weights" / "full_width",
                    help="folder of the full-width models (benchmarks/train_full_width.sh writes them there): "
                    + ", ".join(FULL_FILES.values()))
    ap.add_argument("--full-size", type=int, default=112, help="input size the full-width models were trained at")
    ap.add_argument("--stream-models", default=",".join(STREAM_MODELS), help="comma list of " + ", ".join(STREAM_MODELS))
    ap.add_argument("--quick", action="store_true", help="fewer clips and rounds (a check, not a measurement)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-bench-adafuse"))
    ap.add_argument("--synth", type=Path, default=Path("/tmp/edgefuse-bench-synth"))
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--val", type=int, default=250)
    ap.add_argument("--policy-clips", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--full-tau", type=float, help="fold the full-width AdaFuse-TSM at this tau instead of searching "
                    "it (e.g. the tau benchmarks/full_width_fidelity.py found)")
    ap.add_argument("--r50-calib", type=int, default=32)
    ap.add_argument("--r50-val", type=int, default=64)
    ap.add_argument("--r50-probe", type=int, default=64, help="calib clips for the ResNet-50 BN statistics and probe")
    ap.add_argument("--r50-policy-clips", type=int, default=16)
    ap.add_argument("--r50-tau", type=float, help="fold AdaFuse-TSM-R50 at this tau instead of searching it "
                    "(the search runs the model in PyTorch over the policy clips once per tau tried)")
    ap.add_argument("--r50-rounds", type=int, default=5)
    ap.add_argument("--r50-block", type=int, default=3)
    ap.add_argument("--stream-rounds", type=int, default=10)
    ap.add_argument("--stream-block", type=int, default=16)
    ap.add_argument("--profile-calls", type=int, default=10, help="clips profiled per stream model (x8 frames)")
    ap.add_argument("--preliminary", help="a line the docs open with (e.g. 'shared machine, preliminary')")
    ap.add_argument("--reading", type=Path, help="a markdown file of bullet lines for the docs' Reading section")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs from --json-out")
    ap.add_argument("--merge", type=Path, nargs="+", help="result JSONs of earlier runs (e.g. one per group): "
                    "combined into --json-out and the docs")
    ap.add_argument("--json-out", type=Path, default=ROOT / "benchmarks" / "results" / "adafuse_latency.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.docs_only:
        results = json.loads(args.json_out.read_text())
        if args.preliminary is not None:
            results["preliminary"] = args.preliminary
        finish(results, args)
        return
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        order = {g: i for i, g in enumerate(GROUPS)}
        results = {"command": "; ".join(p["command"] for p in parts), "commands": [p["command"] for p in parts],
                   "date": max(p["date"] for p in parts), "machine": parts[0]["machine"],
                   "quick": any(p.get("quick") for p in parts),
                   "preliminary": args.preliminary or next((p["preliminary"] for p in parts if p.get("preliminary")),
                                                           None),
                   "groups": sorted([g for p in parts for g in p["groups"]], key=lambda g: order[g["group"]]),
                   "stream": next((p["stream"] for p in parts if p.get("stream")), None)}
        finish(results, args)
        return
    if args.quick:  # a check of the script end to end, not a measurement
        args.calib, args.val, args.policy_clips, args.rounds, args.block = 32, 48, 32, 4, 6
        args.r50_calib, args.r50_val, args.r50_probe, args.r50_policy_clips = 8, 12, 16, 8
        args.r50_rounds, args.r50_block = 2, 2
        args.r50_tau = args.r50_tau if args.r50_tau is not None else 0.75
        args.stream_rounds, args.stream_block, args.profile_calls = 4, 16, 5
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise SystemExit(f"unknown group(s) {', '.join(bad)}; choose from {', '.join(GROUPS)}")
    if not (args.synth / "val.txt").is_file():
        import subprocess

        subprocess.run([sys.executable, "-m", "edgefuse", "synth", "-o", str(args.synth), "--train", "0",
                        "--formats", "frames"], check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/adafuse_latency.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                               "quick": args.quick, "preliminary": args.preliminary, "groups": [], "stream": None}
    if args.reading:
        results["reading"] = args.reading.read_text().rstrip("\n").splitlines()

    def save() -> None:
        results["goals"] = goals(results)
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=1, default=str))
        write_docs(results)

    for g in groups:
        if g == "stream":
            tags = [t.strip() for t in args.stream_models.split(",") if t.strip()]
            results["stream"] = run_stream(tags, args)
        else:
            results["groups"].append(run_group(g, args))
        save()
    log.info("wrote %s, docs/adafuse_latency.md", args.json_out)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
