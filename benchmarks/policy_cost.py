"""What AdaFuse's policy costs on the CPU engine, in the clip graph and in the stream graph, taken apart.

    python benchmarks/policy_cost.py [--work DIR] [--synth DIR] [--small-policy CKPT] [--rounds 10]

Four graphs (edgefuse FP32 engines, ONNX Runtime CPU, the machine's 2 threads): AdaFuse-TSM with its policy in the
graph on the width-0.25 zoo model and on the trained full-width model (weights/full_width), each against its TSM; the
AdaFuse-TSN stream graph (random seeded weights, widths 0.25 and 1.0) against its clip graph / T. For each:

* a profile of the graph as exported (kernel time per call split into convolutions, the policy MLP's Gemms, the
  policy's other ops (pooling, decision, fusion) and the rest), with the weight bytes of the MLP and of the
  convolutions;
* two ablations, exported from the same weights with AdaFuse patched here (benchmark code only): "one-hot decision"
  traces the decision as a one-hot over skip / reuse / keep and multiplies its columns in (26 ops per block; what
  export wrote before ``AdaFuse.fuse_argmax``, which takes 12), its logits checked equal to the exported graph's;
  "MLP as one Linear" replaces each block's policy MLP (Linear, BN, ReLU, Linear with a hidden size of
  ``hidden_quota / width``) by one Linear(2 C_in, 3 width) with random weights: its decisions are meaningless, it
  bounds what any policy net can save;
* with ``--small-policy CKPT``: a zoo-width AdaFuse-TSM trained with one policy hidden size (``edgefuse train
  ... --policy-hidden 256``, the command in docs/adafuse_latency.md) against the zoo TSM, the same rows;
* on the zoo model, the INT8 CPU engine as edgefuse calibrates it (policy nets kept FP32 by the default excludes)
  against the same calibration with the policy nets quantized too (``default_excludes`` off, the classifier
  excluded): latency, and the decision flips calibrate reports.

Timing: round robin over every row of a part in one process (``--rounds`` rounds x 8 runs, the first of each block
dropped), p50 of the rounds' means. Writes benchmarks/results/policy_cost.{json,md}.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from adafuse_latency import STREAM_MODELS, BoundStream, machine, stream_checkpoint
from cpu_engines import time_rows

log = logging.getLogger("policy_cost")
VARIANTS = ("as exported", "one-hot decision", "MLP as one Linear")
CONV_OPS = ("Conv", "FusedConv", "NchwcConv")
MLP_OPS = ("Gemm", "FusedGemm", "MatMul", "FusedMatMul", "QGemm", "MatMulInteger")


# --- the ablations: AdaFuse patched for one export ------------------------------------------------------------------


@contextlib.contextmanager
def patched(variant: str) -> Iterator[None]:
    import torch
    import torch.nn.functional as F

    from edgefuse.models.layers.adafuse import AdaFuse

    saved = AdaFuse.lean, AdaFuse.flat_from_pooled
    if variant == "one-hot decision":  # the decide + fuse path (training's) traced instead of fuse_argmax
        AdaFuse.lean = lambda self: False  # type: ignore[method-assign]
    elif variant == "MLP as one Linear":
        def flat_from_pooled(self: Any, prev: Any, cur: Any) -> Any:
            # numpy weights: constants of the trace (a torch factory call would be traced as a random op)
            w = np.random.default_rng(0).standard_normal((3 * self.width, 2 * self.in_channels)) * 0.1
            z = torch.cat([prev, cur], dim=-1)  # (M, 2*C_in)
            return F.linear(z, torch.from_numpy(w.astype(np.float32)))  # (M, 3*width)

        AdaFuse.flat_from_pooled = flat_from_pooled  # type: ignore[method-assign]
    else:
        assert variant == "as exported", variant
    try:
        yield
    finally:
        AdaFuse.lean, AdaFuse.flat_from_pooled = saved  # type: ignore[method-assign]


# --- graphs ----------------------------------------------------------------------------------------------------------


def export_graph(out: Path, variant: str, **kw: Any) -> Path:
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    if not out.is_file():
        with patched(variant):
            export(make_config(None, out, segments=8, **kw))
    return out


def engine_of(onnx_path: Path) -> Path:
    from edgefuse.backends import BuildConfig, build_engine

    eng = onnx_path.with_suffix(".fp32.engine")
    if not eng.is_file():
        build_engine(BuildConfig(onnx_path, eng, device="cpu", backend="onnxruntime"))
    return eng


def weight_bytes(onnx_path: Path) -> dict[str, float]:
    """MB of the weights (each stored tensor once) of the policy MLP (Gemms in an adafuse scope) and of the convolutions,
    and the graph's node count."""
    import onnx

    m = onnx.load(str(onnx_path))
    size = {i.name: 4 * int(np.prod(i.dims)) for i in m.graph.initializer}
    mlp = sum(size.get(w, 0) for w in {n.input[1] for n in m.graph.node if n.op_type == "Gemm" and "/adafuse/" in n.name})
    conv = sum(size.get(w, 0) for w in {n.input[1] for n in m.graph.node if n.op_type == "Conv"})
    return {"mlp_mb": mlp / 1e6, "conv_mb": conv / 1e6, "nodes": len(m.graph.node)}


def jetson_ms(onnx_path: Path, device: str = "jetson_orin_nano") -> float:
    """edgefuse's roofline estimate of the graph as an FP16 TensorRT engine on ``device`` (per call)."""
    import onnx

    from edgefuse.devices.profiles import get_device
    from edgefuse.estimate import estimate
    from edgefuse.graph.metadata import read_metadata

    g = onnx.load(str(onnx_path))
    return float(estimate(g, read_metadata(g), get_device(device), engine_precision="fp16").total_ms)


def classify(op: str, name: str) -> str:
    if op in CONV_OPS:
        return "convolutions"
    if "adafuse" in name:
        return "policy MLP" if op in MLP_OPS else "policy: pooling, decision, fusion"
    return "other"


def profile(engine: Path, make: Callable[[Any], Callable[[], Any]], calls: int) -> dict[str, Any]:
    """Kernel ms per call by class (:func:`classify`), from ONNX Runtime's profile of ``calls`` calls."""
    import onnxruntime as ort

    from edgefuse.graph.ort import session_options

    opts = session_options(None, optimize=False, profile=True)
    opts.profile_file_prefix = str(engine.parent / f"prof_{engine.stem}")
    s = ort.InferenceSession(str(engine), opts, providers=["CPUExecutionProvider"])
    fn = make(s)
    for _ in range(calls):
        fn()
    prof = Path(s.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    out: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            key = classify(e.get("args", {}).get("op_name", "?"), e["name"])
            out[key] = out.get(key, 0.0) + e["dur"] / 1000 / calls
    return {"calls": calls, "kernels_ms": sum(out.values()), "by_class_ms": out}


def clip_fn(session: Any, x: np.ndarray) -> Callable[[np.ndarray | None], np.ndarray]:
    name = session.get_inputs()[0].name
    return lambda _x=None: session.run(None, {name: x})[0]


# --- parts -----------------------------------------------------------------------------------------------------------


def clip_part(label: str, tsm: dict[str, Any], ada: dict[str, Any], work: Path, x: np.ndarray,
              rounds: int) -> dict[str, Any]:
    """TSM and AdaFuse-TSM (three variants) as clip graphs, timed round robin; the exported one profiled."""
    from edgefuse.backends import load

    work.mkdir(parents=True, exist_ok=True)
    graphs = {"TSM": export_graph(work / "tsm.onnx", "as exported", **tsm)}
    for v in VARIANTS:
        graphs[f"AdaFuse-TSM, {v}"] = export_graph(work / f"adafuse.{v.replace(' ', '_')}.onnx", v, **ada)
    engines = {k: engine_of(p) for k, p in graphs.items()}
    runners = {k: load(e) for k, e in engines.items()}
    rows = {k: clip_fn(r.session, x) for k, r in runners.items()}
    ref = rows["AdaFuse-TSM, as exported"](x)
    diff = {k: float(np.abs(rows[k](x) - ref).max()) for k in rows if k.startswith("AdaFuse")}
    times = time_rows(rows, x, rounds, 8, f"{label}: timing")
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    prof = profile(engines["AdaFuse-TSM, as exported"], lambda s: clip_fn(s, x), 20)
    prof_tsm = profile(engines["TSM"], lambda s: clip_fn(s, x), 20)
    return {"label": label, "reference": "TSM", "p50_ms": p50, "max_abs_logit_diff_vs_exported": diff,
            "graphs": {k: {**weight_bytes(p), "orin_nano_fp16_ms": jetson_ms(p)} for k, p in graphs.items()},
            "profile": prof, "profile_reference": prof_tsm}


def stream_part(tag: str, work: Path, x: np.ndarray, rounds: int) -> dict[str, Any]:
    """AdaFuse-TSN: the clip graph and the stream graph (three variants), timed round robin (stream rows: one frame
    per run, IOBinding ping-pong); the exported stream graph profiled."""
    from edgefuse.backends import load

    model, options, size = STREAM_MODELS[tag]
    ckpt = stream_checkpoint(tag, work)
    kw = {"model": model, "checkpoint": ckpt, "size": size, "options": options or None}
    graphs = {"clip graph (/ T)": export_graph(work / f"{tag}.dynamic.onnx", "as exported", policy="dynamic", **kw)}
    for v in VARIANTS:
        graphs[f"stream, {v}"] = export_graph(work / f"{tag}.stream.{v.replace(' ', '_')}.onnx", v, policy="stream",
                                              **kw)
    engines = {k: engine_of(p) for k, p in graphs.items()}
    runners = {k: load(e) for k, e in engines.items()}
    rows: dict[str, Callable[[np.ndarray], Any]] = {"clip graph (/ T)": clip_fn(runners["clip graph (/ T)"].session, x)}
    states: dict[str, Any] = {}
    for k, r in runners.items():
        if k.startswith("stream"):
            states[k] = r.metadata["stream_states"]
            rows[k] = BoundStream(r.session, states[k], x)
    diff = {}
    for k in rows:
        if k.startswith("stream"):
            a = BoundStream(runners[k].session, states[k], x)
            b = BoundStream(runners["stream, as exported"].session, states["stream, as exported"], x)
            diff[k] = float(max(np.abs(a() - b()).max() for _ in range(x.shape[1])))
    # a clip row runs 8 frames, a stream row one: time the clip row per frame
    times = time_rows(rows, x, rounds, 8, f"{tag}: timing")
    p50 = {k: float(np.median(v)) / (x.shape[1] if k.startswith("clip") else 1) for k, v in times.items()}
    st = states["stream, as exported"]
    prof = profile(engines["stream, as exported"], lambda s: BoundStream(s, st, x), 64)
    return {"label": f"{tag} (stream, per frame)", "reference": "clip graph (/ T)", "p50_ms": p50,
            "max_abs_logit_diff_vs_exported": diff,
            "graphs": {k: {**weight_bytes(p), "orin_nano_fp16_ms": jetson_ms(p)} for k, p in graphs.items()},
            "profile": prof}


def int8_part(work: Path, synth: Path, x: np.ndarray, rounds: int) -> dict[str, Any]:
    """The zoo AdaFuse-TSM INT8 CPU engine, policy nets FP32 (edgefuse's default) or quantized too."""
    from edgefuse.backends import BuildConfig, build_engine, load
    from edgefuse.quantize import CalibrateConfig, calibrate

    src = work / "adafuse.as_exported.onnx"
    out: dict[str, Any] = {"engines": {}}
    rows = {}
    for label, defaults, exclude in (("policy nets FP32 (default excludes)", True, ()),
                                     ("policy nets INT8 (only the classifier excluded)", False, ("/fc/*",))):
        q = work / f"adafuse.int8.{'default' if defaults else 'policy'}.onnx"
        calibrate(CalibrateConfig(model=src, clips=synth / "calib.txt", output=q, num_clips=64,
                                  holdout=synth / "val.txt", num_holdout=100, default_excludes=defaults,
                                  exclude=exclude, cache_dir=work / "cache", progress=False))
        res = json.loads(q.with_suffix(".calib.json").read_text())["result"]
        eng = q.with_suffix(".engine")
        if not eng.is_file():
            build_engine(BuildConfig(q, eng, device="cpu", backend="onnxruntime"))
        rows[label] = clip_fn(load(eng).session, x)
        out["engines"][label] = {"top1_agreement": res["top1_agreement"], "flip_rate": res["flip_rate"],
                                 "mean_flip_rate": res.get("mean_flip_rate")}
    times = time_rows(rows, x, rounds, 8, "zoo INT8: timing")
    for k, v in times.items():
        out["engines"][k]["p50_ms"] = float(np.median(v))
    return out


# --- report ----------------------------------------------------------------------------------------------------------


def small_record(path: Path) -> dict[str, Any]:
    """The figures ``edgefuse train`` stored in the small-policy checkpoint, and the command that trains it."""
    import torch

    from edgefuse.lab.train import TrainConfig

    meta = torch.load(str(path), weights_only=True)["edgefuse"]
    cfg = TrainConfig.from_dict(meta["train_config"])
    return {"command": cfg.command("DATA").replace(f"--init {cfg.init}", "--init tsm.pth"),
            **{k: meta[k] for k in ("val_top1", "saving_pct", "gmacs_clip_given_decisions", "dense_gmacs_clip",
                                    "train_seconds")}}


def tables(res: dict[str, Any]) -> list[str]:
    lines = [("| graph | row | nodes | p50 ms | vs reference | Orin Nano FP16 estimate ms (vs reference) | max abs "
             "logit diff vs exported |"), "|---|---|---|---|---|---|---|"]
    for part in res["parts"]:
        ref = part["p50_ms"][part["reference"]]
        per = 8 if part["reference"].startswith("clip") else 1  # the stream rows: the clip graph's estimate / T
        est_ref = part["graphs"][part["reference"]]["orin_nano_fp16_ms"] / per
        for k, v in part["p50_ms"].items():
            d = part["max_abs_logit_diff_vs_exported"].get(k)
            g = part["graphs"][k]
            est = g["orin_nano_fp16_ms"] / (per if k == part["reference"] else 1)
            lines.append(f"| {part['label']} | {k} | {g['nodes']} | {v:.2f} | {v / ref:.2f}x | {est:.3f} "
                         f"({est / est_ref:.2f}x) | {'-' if d is None else f'{d:.2g}'} |")
    lines += ["", ("Profile of the exported AdaFuse graph (kernel ms per call; ONNX Runtime's profiler slows every "
              "kernel, so compare the shares, not the totals with the p50 above):"), "",
              ("| graph | kernels | convolutions | policy MLP | policy: pooling, decision, fusion | other | MLP weights MB "
              "| conv weights MB |"), "|---|---|---|---|---|---|---|---|"]
    for part in res["parts"]:
        p = part["profile"]
        c = p["by_class_ms"]
        g = part["graphs"][next(k for k in part["graphs"] if "as exported" in k)]
        lines.append(f"| {part['label']} | {p['kernels_ms']:.2f} | "
                     + " | ".join(f"{c.get(k, 0.0):.2f} ({100 * c.get(k, 0.0) / p['kernels_ms']:.0f}%)"
                                  for k in ("convolutions", "policy MLP", "policy: pooling, decision, fusion", "other"))
                     + f" | {g['mlp_mb']:.1f} | {g['conv_mb']:.1f} |")
    if res.get("small_policy"):
        sp = res["small_policy"]
        lines += ["", (f"The policy-hidden-256 model: `{sp['command']}` (tsm.pth: the zoo's "
                  f"synth_tsm_r18w025), {sp['train_seconds']:.0f} s; val top-1 {100 * sp['val_top1']:.1f}%, "
                  f"{sp['gmacs_clip_given_decisions']:.3f} GMACs/clip given its decisions (dense "
                  f"{sp['dense_gmacs_clip']:.3f}): {sp['saving_pct']:.1f}% saved. The zoo's synth_adafuse_tsm_r18w025 "
                  "(the official hidden_quota): 96.8%, 0.209 of 0.345 GMACs, 39.4% saved.")]
    if res.get("int8"):
        lines += ["", "Zoo AdaFuse-TSM INT8 CPU engines (calibrated on 64 calib clips, judged on 100 val clips):", "",
                  "| policy nets | p50 ms | top-1 agreement with FP32 | mean decision flips | worst block |",
                  "|---|---|---|---|---|"]
        for k, e in res["int8"]["engines"].items():
            worst = max(e["flip_rate"].items(), key=lambda kv: kv[1])
            lines.append(f"| {k} | {e['p50_ms']:.2f} | {100 * e['top1_agreement']:.1f}% | "
                         f"{100 * (e['mean_flip_rate'] or 0):.2f}% | {worst[0]} {100 * worst[1]:.2f}% |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse_policy_cost"))
    ap.add_argument("--synth", type=Path, default=None, help="synthetic benchmark (calib.txt, val.txt): INT8 part")
    ap.add_argument("--full-width", type=Path, default=ROOT / "weights" / "full_width")
    ap.add_argument("--small-policy", type=Path, help="a zoo-width AdaFuse-TSM trained with --policy-hidden "
                    "(its command in the results): timed against the zoo TSM as a fifth graph")
    ap.add_argument("--small-hidden", type=int, default=256, help="the --policy-hidden it was trained with")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--parts", default="zoo,small,full,stream,int8")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "policy_cost")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the .md from the .json (and --small-policy)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.docs_only:
        res = json.loads(args.out.with_suffix(".json").read_text())
        if args.small_policy is not None:
            res["small_policy"] = small_record(args.small_policy)
        write(res, args.out)
        return
    parts = args.parts.split(",")
    x = np.random.default_rng(0).standard_normal((1, 8, 3, 112, 112)).astype(np.float32)
    res: dict[str, Any] = {"command": "python benchmarks/policy_cost.py " + " ".join(sys.argv[1:]),
                           "date": time.strftime("%Y-%m-%d"), "machine": machine(), "parts": []}
    if "zoo" in parts:
        res["parts"].append(clip_part("zoo w0.25 AdaFuse-TSM, policy in graph (clip)",
                                      {"model": "synth_tsm_r18w025"}, {"model": "synth_adafuse_tsm_r18w025"},
                                      args.work / "zoo", x, args.rounds))
    if "small" in parts and args.small_policy is not None:
        opts = {"width": 0.25, "hidden_quota": 0, "hidden": args.small_hidden}
        res["parts"].append(clip_part(f"zoo w0.25 AdaFuse-TSM, policy hidden {args.small_hidden} (trained)",
                                      {"model": "synth_tsm_r18w025"},
                                      {"model": "adafuse_tsm_resnet18", "checkpoint": args.small_policy, "size": 112,
                                           "options": opts}, args.work / "small", x, args.rounds))
    if "full" in parts:
        fw = args.full_width
        res["parts"].append(clip_part("full w1.0 AdaFuse-TSM, policy in graph (clip)",
                                      {"model": "tsm_resnet18", "checkpoint": fw / "synth_tsm_r18w1.pth", "size": 112},
                                      {"model": "adafuse_tsm_resnet18", "checkpoint": fw / "synth_adafuse_tsm_r18w1.pth",
                                           "size": 112}, args.work / "full", x, args.rounds))
    if "stream" in parts:
        for tag in ("adafuse_tsn_r18w025", "adafuse_tsn_r18w1"):
            res["parts"].append(stream_part(tag, args.work / "stream", x, args.rounds))
    if "int8" in parts and args.synth is not None:
        res["int8"] = int8_part(args.work / "zoo", args.synth, x, args.rounds)
    if args.small_policy is not None:
        res["small_policy"] = small_record(args.small_policy)
    write(res, args.out)


def write(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    md = ["# What AdaFuse's policy costs on the CPU engine", "", (f"Command: `{res['command']}`, {res['date']}, "
          f"{res['machine']['cpu']} ({res['machine']['cores']} cores), ONNX Runtime {res['machine']['onnxruntime']}."),
          "", *tables(res), ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
