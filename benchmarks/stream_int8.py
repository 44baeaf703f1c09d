"""INT8 stream engines: per-frame latency of the stream graphs as FP32 and INT8 CPU engines, against the clip graph's
latency / T in the same precision.

    python benchmarks/stream_int8.py --synth DIR [--work DIR] [--models a,b] [--rounds 8]

For each stream model (random seeded weights, as in benchmarks/adafuse_latency.py's stream group: latency only), the
clip graph (``--policy dynamic``) and the stream graph (``--policy stream``) are exported, both calibrated by
``edgefuse calibrate`` (entropy, ``--num-clips`` synth calib clips; the stream graph frame by frame) and built as
edgefuse CPU engines. Timed round robin in one process: the clip rows run one clip (8 frames) and are reported per
frame; the stream rows run one frame with IOBinding ping-pong (states bound once, swapped each frame). calibrate's
report gives each INT8 graph's agreement with its FP32 graph on held-out clips (random weights: a check that the
graph computes the same function, not an accuracy). Writes benchmarks/results/stream_int8.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from adafuse_latency import STREAM_MODELS, BoundStream, machine, stream_checkpoint
from cpu_engines import time_rows

DEFAULT_MODELS = ("tsm_online_r18w1", "tsm_online_mobilenetv2", "adafuse_tsn_r18w025", "adafuse_tsn_r18w1")


def graphs_of(tag: str, work: Path, synth: Path, num_clips: int) -> dict[str, dict[str, Any]]:
    """{(policy, precision): {"engine": path, "report": calibrate's comparison or None}} for one model."""
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.quantize import CalibrateConfig, calibrate

    model, options, size = STREAM_MODELS[tag]
    ckpt = stream_checkpoint(tag, work)
    out: dict[str, dict[str, Any]] = {}
    for policy in ("dynamic", "stream"):
        fp32 = work / f"{tag}.{policy}.onnx"
        if not fp32.is_file():
            export(make_config(None, fp32, model=model, checkpoint=ckpt, size=size, segments=8, policy=policy,
                               options=options or None))
        int8 = work / f"{tag}.{policy}.int8.onnx"
        if not int8.is_file():
            calibrate(CalibrateConfig(model=fp32, clips=synth / "calib.txt", output=int8, num_clips=num_clips,
                                      holdout=synth / "val.txt", num_holdout=16, cache_dir=work / "cache",
                                      progress=False))
        report = json.loads(int8.with_suffix(".calib.json").read_text())["result"]
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            eng = work / f"{tag}.{policy}.{precision}.engine"
            if not eng.is_file():
                build_engine(BuildConfig(graph, eng, device="cpu", backend="onnxruntime"))
            out[f"{policy} {precision}"] = {"engine": str(eng), "report": report if precision == "int8" else None}
    return out


def clip_row(runner: Any, clip: np.ndarray) -> Any:
    """A timing row running ``clip`` (the timing loop's own input is ignored)."""
    return lambda _x: runner.run(clip)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgefuse.backends import load

    models = []
    for tag in args.models.split(","):
        size = STREAM_MODELS[tag][2]
        g = graphs_of(tag, args.work, args.synth, args.num_clips)
        clip = np.random.default_rng(0).standard_normal((1, 8, 3, size, size)).astype(np.float32)
        rows = {}
        for key, rec in g.items():
            r = load(rec["engine"])
            if key.startswith("stream"):
                rows[key] = BoundStream(r.session, r.metadata["stream_states"], clip)
            else:
                rows[key] = clip_row(r, clip)
        times = time_rows(rows, clip, args.rounds, args.block, f"{tag}: timing")
        p50 = {k: float(np.median(v)) / (8 if k.startswith("dynamic") else 1) for k, v in times.items()}
        models.append({"tag": tag, "size": size, "p50_ms_per_frame": p50,
                       "int8_vs_fp32": {p: {k: g[f"{p} int8"]["report"][k] for k in ("top1_agreement", "cosine",
                                                                                      "mean_flip_rate")}
                                        for p in ("dynamic", "stream")}})
    return {"command": "python benchmarks/stream_int8.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
            "machine": machine(), "num_clips": args.num_clips, "rounds": args.rounds, "block": args.block,
            "models": models}


def write(res: dict[str, Any], out: Path) -> None:
    m = res["machine"]
    lines = ["# INT8 stream engines: per-frame latency", "",
             (f"Command: `{res['command']}`, {res['date']}, {m['cpu']} ({m['cores']} cores; {', '.join(m['isa'])}), "
             f"ONNX Runtime {m['onnxruntime']}. Random seeded weights (latency only); INT8 calibrated on "
             f"{res['num_clips']} synth clips by `edgefuse calibrate` (the stream graph frame by frame). Per frame: "
             "the clip graph's p50 for one clip / 8; the stream graph's p50 for one frame (IOBinding ping-pong). "
             f"{res['rounds']} rounds x {res['block']} runs per row, round robin in one process."), "",
             ("| stream model | FP32 clip / T ms | FP32 stream ms (vs clip / T) | INT8 clip / T ms | INT8 stream ms (vs "
             "clip / T) | INT8 stream vs FP32 stream | INT8 stream: agreement, cosine with FP32 (16 clips) |"),
             "|---|---|---|---|---|---|---|"]
    for rec in res["models"]:
        t = rec["p50_ms_per_frame"]
        c = rec["int8_vs_fp32"]["stream"]
        lines.append(f"| {rec['tag']} | {t['dynamic fp32']:.2f} | {t['stream fp32']:.2f} "
                     f"({t['stream fp32'] / t['dynamic fp32']:.2f}x) | {t['dynamic int8']:.2f} | {t['stream int8']:.2f} "
                     f"({t['stream int8'] / t['dynamic int8']:.2f}x) | {t['stream int8'] / t['stream fp32']:.2f}x | "
                     f"{100 * c['top1_agreement']:.0f}%, {c['cosine']:.4f} |")
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synth", type=Path, required=True, help="synthetic benchmark (calib.txt, val.txt)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse_stream_int8"))
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--num-clips", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_int8")
    args = ap.parse_args()
    write(run(args), args.out)


if __name__ == "__main__":
    main()
