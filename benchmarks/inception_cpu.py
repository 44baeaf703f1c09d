"""The Inception models on this CPU at their official sizes: ONNX Runtime FP32 against edgefuse's INT8 CPU
engine (gsf_bninception and tsn_bninception 1x8x3x224x224, gsf_inceptionv3 1x8x3x229x229), and where INT8 hurts a
non-local block of tsm_nl_resnet50 at 224 px x 8 segments (the measurement behind
edgefuse.quantize.config.INT8_EXCLUDES).

    python benchmarks/inception_cpu.py [--models gsf_bninception,tsn_bninception,gsf_inceptionv3] [--segments 8]
                                       [--rounds 3] [--block 3] [--val 16] [--calib 16] [--work /tmp/edgefuse-inception]

Per model, in one process: the FP32 graph (``edgefuse export``, opset 17), its INT8 graph (``edgefuse calibrate``
with its defaults: entropy, GSF kept FP32), and three rows timed on one clip: ONNX Runtime on the FP32 graph with
its defaults, edgefuse's FP32 engine and edgefuse's INT8 CPU engine (``build-engine --device cpu --backend
onnxruntime``). Timing: every row runs ``--block`` consecutive clips in turn (the first of each block dropped),
``--rounds`` times (benchmarks/cpu_engines.py's scheme); p50 / p90 over the kept runs. Agreement: top-1 agreement
with the FP32 graph on ``--val`` synthetic val clips, and for the INT8 engine with the Q/DQ graph.

Weights: no trained checkpoint of these networks is available offline, so each model is randomly initialised
(seeded), its BatchNorm statistics are measured on the calib clips and its classifier is fitted by ridge regression
on their pooled features (a linear probe; benchmarks/cpu_engines.py ``r50_checkpoint`` does the same for ResNet-50).
The timings do not depend on the weights; the agreement figures are those of a random network, which amplifies
rounding far more than a trained one. Writes benchmarks/results/inception_cpu.md and .json.
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
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # cpu_engines.fit_probe: one probe for every benchmark's models
MODELS = ("gsf_bninception", "tsn_bninception", "gsf_inceptionv3")
log = logging.getLogger("inception_cpu")


def _clips(listing: Path, config_or_meta: Any, segments: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips

    pre = Preprocess.from_metadata(config_or_meta) if isinstance(config_or_meta, dict) else \
        Preprocess.from_model_config(config_or_meta)
    stacked, labels, _ = open_clips(listing, pre, Sampling(num_segments=segments), num_clips=n, progress=False).stack()
    return stacked.numpy(), labels.numpy() if labels is not None else None


def probe_checkpoint(name: str, synth: Path, work: Path, segments: int, num_clips: int) -> Path:
    """Seeded random weights, BatchNorm statistics from ``num_clips`` calib clips, a ridge-regression classifier on
    their pooled features; saved as an edgefuse checkpoint."""
    import torch
    from cpu_engines import fit_probe

    from edgefuse.models import create_model, get_entry
    from edgefuse.models.checkpoint import save_checkpoint

    path = work / f"{name}.probe.pth"
    if path.is_file():
        return path
    torch.manual_seed(0)
    size = get_entry(name).default.input_size
    model = create_model(name, num_classes=10, num_segments=segments, input_size=size).eval()
    clips, labels = _clips(synth / "calib.txt", model.config, segments, num_clips)
    fit_probe(model, torch.from_numpy(clips), labels)  # BN statistics and a ridge classifier on the calib clips
    return save_checkpoint(model, path, note="benchmark weights: random init, BN statistics and a linear probe on "
                                             "synthetic calib clips")


def ort_session(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime on the graph with its defaults (optimizations at load, its thread count)."""
    import onnxruntime as ort

    from edgefuse.graph.ort import session_options

    s = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})[0]


def logits_of(fn: Callable[[np.ndarray], np.ndarray], clips: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(np.ascontiguousarray(clips[i:i + 1])) for i in range(len(clips))])


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from edgefuse.backends import BuildConfig, build_engine, load
    from edgefuse.backends.choose import time_interleaved
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import node_macs
    from edgefuse.quantize import CalibrateConfig, calibrate

    work: Path = args.work
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    ckpt = probe_checkpoint(name, args.synth, work, args.segments, args.calib)
    seconds["weights"] = time.monotonic() - t0
    fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
    t0 = time.monotonic()
    if not fp32.is_file():
        export(make_config(None, fp32, model=name, checkpoint=ckpt, segments=args.segments))
    seconds["export"] = time.monotonic() - t0
    t0 = time.monotonic()
    if not int8.is_file():
        calibrate(CalibrateConfig(model=fp32, clips=args.synth / "calib.txt", output=int8, num_clips=args.calib,
                                  holdout=args.synth / "val.txt", num_holdout=args.val, cache_dir=work / "cache",
                                  progress=False))
    seconds["calibrate"] = time.monotonic() - t0
    calib = json.loads(int8.with_suffix(".calib.json").read_text())  # calibrate's report (this run's or a cached one)
    t0 = time.monotonic()
    engines = {
        "edgefuse FP32 engine": build_engine(BuildConfig(fp32, work / f"{name}.fp32.engine", device="cpu",
                                                         backend="onnxruntime")).path,
        "edgefuse INT8 CPU engine": build_engine(BuildConfig(int8, work / f"{name}.int8.engine", device="cpu",
                                                             backend="onnxruntime")).path,
    }
    seconds["build_engines"] = time.monotonic() - t0
    meta = read_metadata(load_onnx(fp32))
    clips, _ = _clips(args.synth / "val.txt", meta, args.segments, args.val)
    rows: dict[str, Callable[[np.ndarray], np.ndarray]] = {"ONNX Runtime FP32 (the exported graph, its defaults)":
                                                            ort_session(fp32)}
    for label, path in engines.items():
        rows[label] = load(path).run
    x = np.ascontiguousarray(clips[:1])
    load_avg = os.getloadavg()[0]
    t0 = time.monotonic()
    times = time_interleaved(rows, x, budget_s=0.0, block=args.block, min_rounds=args.rounds, max_rounds=args.rounds)
    seconds["timing"] = time.monotonic() - t0
    macs = sum(node_macs(load_onnx(fp32), meta).values())
    ref = logits_of(rows["ONNX Runtime FP32 (the exported graph, its defaults)"], clips)
    qdq_ref = logits_of(ort_session(int8), clips)  # the calibrated INT8 graph as TensorRT would get it
    out_rows = []
    for label, fn in rows.items():
        t = np.asarray(times[label])
        logits = ref if label.startswith("ONNX Runtime FP32") else logits_of(fn, clips)
        out_rows.append({
            "name": label, "p50_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "cov": float(t.std() / t.mean()), "gflops": 2 * macs / 1e9 / (float(np.median(t)) / 1000),
            "agreement": float((logits.argmax(1) == ref.argmax(1)).mean()),
            "agreement_qdq": float((logits.argmax(1) == qdq_ref.argmax(1)).mean()) if "INT8" in label else None,
            "raw_ms": [round(v, 3) for v in t.tolist()],
        })
        log.info("%s | %s: p50 %.1f ms", name, label, out_rows[-1]["p50_ms"])
    base = out_rows[0]["p50_ms"]
    for r in out_rows:
        r["speedup_vs_ort_fp32"] = base / r["p50_ms"]
    profile = {}
    if args.profile:
        from cpu_op_profile import profile_engine  # benchmarks/, beside this script

        for kind, label in (("fp32", "edgefuse FP32 engine"), ("int8", "edgefuse INT8 CPU engine")):
            prof = profile_engine(engines[label], runs=3)
            top = sorted(prof["ops"].items(), key=lambda kv: -kv[1]["ms_per_run"])[:5]
            profile[kind] = {"wall_p50_ms": prof["wall_p50_ms"], "kernel_ms": prof["kernel_ms_per_run"], "top": top}
    result: dict[str, Any] = {
        "model": name, "input": [1, args.segments, 3, int(meta["input_size"]), int(meta["input_size"])],
        "gmacs": macs / 1e9, "val_clips": len(clips), "calib_clips": args.calib, "rows": out_rows,
        "timing": {"rounds": args.rounds, "block": args.block, "load_avg_1min_before": load_avg},
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "profile": profile,
    }
    result["calibration"] = {"int8_share_of_macs": calib["macs"]["int8"] / calib["macs"]["total"],
                             "fp32_layers": len(calib["excluded_layers"]), "method": calib["method"],
                             "top1_agreement": calib["result"]["top1_agreement"], "cosine": calib["result"]["cosine"],
                             "seconds": round(calib["timings"]["total_s"], 1)}
    return result


def nonlocal_errors(calib_list: Path, clips: int = 2, size: int = 224, segments: int = 8) -> list[dict[str, Any]]:
    """Where INT8 hurts a non-local block: each block of a data-initialised tsm_nl_resnet50 (BatchNorm statistics
    from ``clips`` calib clips, the blocks switched on: W's BatchNorm scale 1) on its real input, run with pieces
    fake-quantised (per-tensor symmetric activations and per-channel weights, thresholds at max |x|: no clipping,
    rounding alone). Per block: the relative error of the block's branch W(y) with theta / phi INT8, g / W INT8,
    the two products' inputs INT8, and everything; the attention's sharpness (exp of its entropy: how many keys a
    query effectively reads). The last row: a backbone convolution (layer2.1.conv1) with its input and weights INT8,
    for scale."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from edgefuse.models import create_model
    from edgefuse.models.layers import NonLocal

    torch.manual_seed(0)
    model = create_model("tsm_nl_resnet50", num_classes=10, num_segments=segments, input_size=size)
    x, _ = _clips(calib_list, model.config, segments, clips)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
            if not m.weight.any():
                nn.init.ones_(m.weight)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
    model.eval()
    inputs: dict[str, torch.Tensor] = {}
    for name, m in model.backbone.named_modules():
        if isinstance(m, NonLocal):
            m.register_forward_pre_hook(lambda _m, a, name=name: inputs.__setitem__(name, a[0].clone()))
    with torch.no_grad():
        model(torch.from_numpy(x))

    def fq(v: torch.Tensor) -> torch.Tensor:
        s = float(v.abs().max()) / 127
        return torch.clamp(torch.round(v / s), -127, 127) * s

    def fq_w(w: torch.Tensor) -> torch.Tensor:
        s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127
        return torch.round(w / s) * s

    def conv(c: nn.Conv2d, v: torch.Tensor, q: bool) -> torch.Tensor:
        return F.conv2d(fq(v), fq_w(c.weight), c.bias) if q else c(v)

    def branch(nl: NonLocal, v: torch.Tensor, qk: bool = False, gw: bool = False, mm: bool = False
               ) -> tuple[torch.Tensor, float]:
        """W(y) of ``nl`` as NonLocal.forward computes it, with the chosen pieces fake-quantised."""
        t, ci = segments, nl.inter
        _, _, h, w = v.shape
        query = conv(nl.theta, v, qk).reshape(-1, t, ci, h * w).transpose(2, 3).reshape(-1, t * h * w, ci)
        key = nl.phi[1](conv(nl.phi[0], v, qk))
        hk, wk = key.shape[-2:]
        key = key.reshape(-1, t, ci, hk * wk).transpose(1, 2).reshape(-1, ci, t * hk * wk)
        value = nl.g[1](conv(nl.g[0], v, gw)).reshape(-1, t, ci, hk * wk).transpose(2, 3).reshape(-1, t * hk * wk, ci)
        if mm:
            query, key = fq(query), fq(key)
        affinity = F.softmax(torch.matmul(query, key), dim=-1)
        sharpness = float((-(affinity * torch.log(affinity + 1e-30)).sum(-1)).mean().exp())
        if mm:
            affinity, value = fq(affinity), fq(value)
        y = torch.matmul(affinity, value).reshape(-1, t, h * w, ci).transpose(2, 3).reshape(-1, ci, h, w)
        return nl.W[1](conv(nl.W[0], y, gw)), sharpness

    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for name, m in model.backbone.named_modules():
            if not isinstance(m, NonLocal):
                continue
            v = inputs[name]
            ref, sharpness = branch(m, v)
            row: dict[str, Any] = {"block": name, "keys": int(segments * (v.shape[2] // 2) * (v.shape[3] // 2)),
                                   "effective_keys": round(sharpness, 1)}
            for label, kw in (("theta_phi", {"qk": True}), ("g_W", {"gw": True}), ("matmuls", {"mm": True}),
                              ("all", {"qk": True, "gw": True, "mm": True})):
                got, _ = branch(m, v, **kw)
                row[label] = round(float((got - ref).norm() / ref.norm()), 4)
            rows.append(row)
        c = model.backbone.layer2[1].conv1
        v = inputs["layer2.0.nl"]
        ref = c(v)
        rows.append({"backbone_conv": round(float((conv(c, v, True) - ref).norm() / ref.norm()), 4)})
    return rows


def write_results(results: list[dict[str, Any]], nl: list[dict[str, Any]] | None, command: str,
                  seconds: float) -> None:
    import onnxruntime
    import torch

    from edgefuse.backends.ort.cpu import cpu_identity

    cpu = cpu_identity()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    facts = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "platform": platform.platform(),
             "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "wall_s": round(seconds, 1),
             "results": results, "nonlocal": nl}
    (out / "inception_cpu.json").write_text(json.dumps(facts, indent=1) + "\n")
    lines = [
        "# The Inception models on the CPU: ONNX Runtime FP32 against edgefuse's INT8 CPU engine", "",
        f"Command: `{command}`, {facts['date']}, one process, {seconds / 60:.1f} min.",
        (f"Machine: {cpu['name']}, {cpu['cores']} cores ({', '.join(cpu['isa'])}), {platform.platform()}; "
         f"ONNX Runtime {onnxruntime.__version__}, torch {torch.__version__}. Load: the 1-minute load average "
         "as each model's timing started (other users' work on this shared machine included)."), "",
        ("Weights: seeded random, BatchNorm statistics and a ridge-regression classifier from the synthetic calib "
         "clips (no trained checkpoint offline). Timings do not depend on the weights; agreement is that of a "
         "random network, which amplifies INT8 rounding far more than a trained one (docs/cpu_engines.md shows "
         "the same for the random ResNet-50s). INT8: `edgefuse calibrate` defaults (entropy; GSF and the "
         "classifier FP32)."), "",
        ("| model | input | GMACs/clip | runs as | p50 ms | p90 ms | CoV | vs ORT FP32 | GFLOP/s | agrees with FP32 "
         "| agrees with Q/DQ | load |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            qdq = f"{100 * r['agreement_qdq']:.1f}%" if r["agreement_qdq"] is not None else "-"
            lines.append(f"| {res['model']} | {'x'.join(map(str, res['input']))} | {res['gmacs']:.2f} | {r['name']} | "
                         f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {100 * r['cov']:.1f}% | "
                         f"{r['speedup_vs_ort_fp32']:.2f}x | {r['gflops']:.0f} | {100 * r['agreement']:.1f}% | {qdq} | "
                         f"{res['timing']['load_avg_1min_before']:.2f} |")
    lines += ["", (f"Timing: {results[0]['timing']['rounds']} rounds x {results[0]['timing']['block']} kept runs per "
                   f"row (one clip each, rows interleaved); agreement on {results[0]['val_clips']} val clips; INT8 "
                   f"calibrated on {results[0]['calib_clips']} calib clips."), ""]
    for res in results:
        c = res["calibration"]
        lines.append(f"- {res['model']}: {100 * c['int8_share_of_macs']:.1f}% of MACs in INT8, {c['fp32_layers']} "
                     f"layers kept FP32 ({c['method']} calibration, {c['seconds']:.0f} s); calibrate's own check on "
                     f"the held-out clips: top-1 agreement {100 * c['top1_agreement']:.1f}%, cosine "
                     f"{c['cosine']:.4f}; this run's stage times (0 where cached) "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items()) + ".")
    if any(res.get("profile") for res in results):
        lines += ["", "## Where the engines spend their time (ONNX Runtime's profiler, kernel ms per clip)", "",
                  "| model | engine | wall p50 ms | kernels ms | top operators (nodes, ms) |", "|---|---|---|---|---|"]
        for res in results:
            for kind, prof in res.get("profile", {}).items():
                top = ", ".join(f"{op} ({v['nodes']}, {v['ms_per_run']:.0f})" for op, v in prof["top"])
                lines.append(f"| {res['model']} | {kind} | {prof['wall_p50_ms']:.0f} | {prof['kernel_ms']:.0f} | {top} |")
    if nl:
        conv = nl[-1]["backbone_conv"]
        lines += ["", "## Non-local blocks: where INT8 hurts (tsm_nl_resnet50, 224 px x 8 segments)", "",
                  ("Relative error of each block's branch W(y) (what the block adds to its input) with the named "
                   "pieces fake-quantised (per-tensor activations, per-channel weights, thresholds at max |x|), on "
                   "its real input (data-initialised weights, 2 calib clips). Effective keys: exp of the attention's "
                   "entropy. For scale, a backbone convolution (layer2.1.conv1) with input and weights INT8: "
                   f"{100 * conv:.1f}%."),
                  "", "| block | keys | effective keys | theta, phi INT8 | g, W INT8 | products INT8 | all |",
                  "|---|---|---|---|---|---|---|"]
        for r in nl[:-1]:
            lines.append(f"| {r['block']} | {r['keys']} | {r['effective_keys']} | {100 * r['theta_phi']:.1f}% | "
                         f"{100 * r['g_W']:.1f}% | {100 * r['matmuls']:.1f}% | {100 * r['all']:.1f}% |")
        lines += ["", ("Hence edgefuse calibrate's INT8 defaults: g and W INT8; theta and phi FP32 (INT8_EXCLUDES); "
                       "the two products (MatMul of two activations) without Q/DQ.")]
    (out / "inception_cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--block", type=int, default=3)
    p.add_argument("--val", type=int, default=16)
    p.add_argument("--calib", type=int, default=16)
    p.add_argument("--no-nonlocal", action="store_true", help="skip the non-local measurement")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip ONNX Runtime's per-operator profile of the two engines")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-inception"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("edgefuse").setLevel(logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    args.synth = args.work / "synth"
    start = time.monotonic()
    if not (args.synth / "val.txt").is_file():
        from edgefuse.lab.synth import SynthConfig, generate

        generate(SynthConfig(out=args.synth, train=0, val=max(args.val, 16), calib=max(args.calib, 16),
                             formats=("frames",)))
    results = [run_model(name, args) for name in args.models.split(",") if name]
    nl = None if args.no_nonlocal else nonlocal_errors(args.synth / "calib.txt")
    command = "python benchmarks/inception_cpu.py " + " ".join(sys.argv[1:])
    write_results(results, nl, command.strip(), time.monotonic() - start)


if __name__ == "__main__":
    main()
