"""INT8, FP16 and folding fidelity on the trained full-width models (weights/full_width, benchmarks/train_full_width.sh).

For each model (TSM, AdaFuse-TSM, GSF: ResNet-18 width 1.0, 8x112, trained on the synthetic benchmark): export the FP32
graph (AdaFuse with its policy in the graph), calibrate INT8 (entropy, ``--calib`` calib clips) and FP16, each judged
by calibrate on the ``--val`` val clips held out: top-1 with labels FP32 -> candidate, top-1 agreement with FP32 and,
for AdaFuse, the fraction of channel decisions that flip per block. AdaFuse is also folded (``--policy static``, the
automatic tau) and compared with its policy graph. Goals: INT8 within 0.5 top-1 points of FP32, FP16 >= 99.9%
agreement, decision flips <= 1% per block.

    python benchmarks/full_width_fidelity.py [--synth DIR] [--work DIR]

Writes benchmarks/results/full_width_fidelity.json and docs/full_width.md. A model already in the JSON with the same
sha256 is kept from it, not measured again: run the script again when a model is added (``--refold``: fold the
AdaFuse models again, refitted and not).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "weights" / "full_width"


def judge(fp32: Path, out: Path, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    from edgefuse.quantize import CalibrateConfig, calibrate

    res = calibrate(CalibrateConfig(model=fp32, clips=args.synth / "calib.txt", output=out, precision=precision,
                                    num_clips=args.calib, holdout=args.synth / "val.txt", num_holdout=args.val,
                                    cache_dir=out.parent / "cache", progress=False))
    r = res.report.result
    return {"precision": precision, "clips": r.clips, "top1_fp32": r.top1_reference, "top1": r.top1_candidate,
            "drop_points": r.drop_points, "agreement": r.top1_agreement, "cosine": r.cosine,
            "max_flip_rate": max(r.flip_rate.values()) if r.flip_rate else None,
            "mean_flip_rate": r.mean_flip_rate, "flip_rate": r.flip_rate}


def fold(entry: Any, dynamic: Path, work: Path, args: argparse.Namespace, refit: bool = True) -> dict[str, Any]:
    """The folded graph (refitted or not: ``--refit`` / ``--no-refit``) against the policy graph on the val clips
    (top-1 with labels, agreement)."""
    import onnx

    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import node_macs
    from edgefuse.graph.runner import OrtRunner

    meta = read_metadata(dynamic)
    policy = work / "policy_clips.npz"
    if not policy.is_file():
        open_clips(args.synth / "calib.txt", Preprocess.from_metadata(meta), Sampling(num_segments=8),
                   num_clips=64, progress=False).to_npz(policy)
    folded = work / ("folded.onnx" if refit else "folded_plain.onnx")
    rep = export(make_config(None, folded, model=entry.full_name, policy="static", policy_clips=policy,
                             min_agreement=args.min_agreement, refit=refit))
    cs = open_clips(args.synth / "val.txt", Preprocess.from_metadata(meta), Sampling(num_segments=8),
                    num_clips=args.val, progress=False)
    clips, labels, _ = cs.stack()
    x, y = clips.numpy(), labels.numpy()
    a, b = OrtRunner(dynamic).run(x), OrtRunner(folded).run(x)
    fmacs = sum(node_macs(onnx.load(str(folded)), read_metadata(folded)).values()) / 1e9
    return {"tau": rep.fold.tau, "refit": refit, "min_agreement": args.min_agreement, "top1_policy": float((a.argmax(1) == y).mean()),
            "top1_folded": float((b.argmax(1) == y).mean()), "agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "folded_gmacs": fmacs, "clips": len(y)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", type=Path, default=Path("/tmp/edgefuse-bench-synth"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-full-width-fidelity"))
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--val", type=int, default=250)
    ap.add_argument("--min-agreement", type=float, default=0.98,
                    help="folding: the lowest top-1 agreement with the policy on the 64 policy clips the automatic "
                         "tau may keep")
    ap.add_argument("--reading", type=Path, help="a markdown file of bullet lines for the docs' Reading section")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs from --json-out")
    ap.add_argument("--refold", action="store_true",
                    help="fold the AdaFuse models again (with and without the refit) even where they were measured "
                         "before")
    ap.add_argument("--zoo", type=Path, default=ZOO, help="zoo folder of the models (a trial run: another one)")
    ap.add_argument("--json-out", type=Path, default=ROOT / "benchmarks" / "results" / "full_width_fidelity.json")
    ap.add_argument("--md-out", type=Path, default=ROOT / "docs" / "full_width.md")
    args = ap.parse_args()
    if args.docs_only:
        results = json.loads(args.json_out.read_text())
        results["reading"] = args.reading.read_text().rstrip("\n").splitlines() if args.reading else []
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")
        write_docs(results, args.md_out)
        return
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.models import list_pretrained

    if not (args.synth / "val.txt").is_file():
        import subprocess

        subprocess.run([sys.executable, "-m", "edgefuse", "synth", "-o", str(args.synth), "--train", "0",
                        "--formats", "frames"], check=True)
    os.environ["EDGEFUSE_ZOO_DIR"] = str(args.zoo)
    results: dict[str, Any] = {"command": "python benchmarks/full_width_fidelity.py " + " ".join(sys.argv[1:]),
                               "date": time.strftime("%Y-%m-%d"), "models": []}
    # models measured by an earlier run of the same files are kept, not measured again (run it again when a model
    # is added); the command and date are the latest run's
    done = {m["sha256"]: m for m in json.loads(args.json_out.read_text())["models"] if "sha256" in m} \
        if args.json_out.is_file() else {}
    for entry in list_pretrained(directory=args.zoo):
        if entry.sha256 in done:
            rec = done[entry.sha256]
            print(entry.name, "measured before: kept", flush=True)
            if args.refold and entry.model.startswith("adafuse"):
                work = args.work / entry.name
                rec["fold"], rec["fold_plain"] = (fold(entry, work / "fp32.onnx", work, args, refit)
                                                  for refit in (True, False))
                print(entry.name, "folded again", json.dumps([rec["fold"], rec["fold_plain"]]), flush=True)
            results["models"].append(rec)
            continue
        work = args.work / entry.name
        work.mkdir(parents=True, exist_ok=True)
        fp32 = work / "fp32.onnx"
        if not fp32.is_file():
            export(make_config(None, fp32, model=entry.full_name))
        rec: dict[str, Any] = {"name": entry.name, "model": entry.model, "sha256": entry.sha256,
                               "val_top1": entry.val_top1, "date": time.strftime("%Y-%m-%d"),
                               "trained_with": entry.trained_with, "train_seconds": entry.train_seconds}
        for precision in ("int8", "fp16"):
            rec[precision] = judge(fp32, work / f"{precision}.onnx", precision, args)
            print(entry.name, precision, json.dumps({k: v for k, v in rec[precision].items() if k != "flip_rate"}),
                  flush=True)
        if entry.model.startswith("adafuse"):
            rec["fold"], rec["fold_plain"] = (fold(entry, fp32, work, args, refit) for refit in (True, False))
            print(entry.name, "fold", json.dumps([rec["fold"], rec["fold_plain"]]), flush=True)
        results["models"].append(rec)
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    write_docs(results, args.md_out)


def pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def write_docs(results: dict[str, Any], path: Path) -> None:
    lines = ["# The full-width models: accuracy and deployment fidelity", "",
             ("ResNet-18 at width 1.0 (the torchvision ResNet-18's channels), 8 segments, 112 px, 10 classes of the "
             "synthetic benchmark, trained on CPU by `edgefuse train` with `benchmarks/train_full_width.sh`; float16 "
             "weights with their sha256 in `weights/full_width/pretrained.json`, outside the installed package "
             "(load them with `EDGEFUSE_ZOO_DIR=weights/full_width`; `tests/test_full_width.py` checks them)."), "",
             (f"Command: `{results['command']}`, {results['date']}. Each precision is judged by `edgefuse calibrate` "
             "on the held-out val clips against the FP32 graph (AdaFuse with its policy in the graph)."), "",
             ("| model | FP32 top-1 | INT8 top-1 | INT8 drop (points) | INT8 agreement | INT8 decision flips, worst "
             "block | FP16 agreement | FP16 decision flips, worst block |"),
             "|---|---|---|---|---|---|---|---|"]
    for m in results["models"]:
        i8, f16 = m["int8"], m["fp16"]
        lines.append(f"| {m['name']} | {pct(i8['top1_fp32'])} | {pct(i8['top1'])} | {i8['drop_points']:.1f} | "
                     f"{pct(i8['agreement'])} | {pct(i8['max_flip_rate'], 2)} | {pct(f16['agreement'])} | "
                     f"{pct(f16['max_flip_rate'], 2)} |")
    lines += ["", ("Goals: INT8 within 0.5 points of FP32, FP16 at least 99.9% agreement, at most 1% of an AdaFuse "
              "block's channel decisions flipped."), ""]
    for m in results["models"]:
        for key in ("fold", "fold_plain"):
            if key not in m:
                continue
            f = m[key]
            how = "refitted, the default" if f.get("refit", False) else "`--no-refit`"
            lines += [(f"Folded {m['name']} (`--policy static`, {how}; tau {f['tau']:g}, the most aggressive keeping "
                      f"{pct(f['min_agreement'], 0)} agreement with the policy on 64 calib clips): top-1 "
                      f"{pct(f['top1_folded'])} against {pct(f['top1_policy'])} with its policy, {pct(f['agreement'])} "
                      f"agreement, {f['folded_gmacs']:.3f} GMACs per clip, on {f['clips']} val clips."), ""]
    if results.get("reading"):
        lines += ["## Reading", ""] + results["reading"] + [""]
    lines += ["Training (`train_seconds` on a 2-core AMD EPYC, one torch thread per model, two models at a time; the per-epoch logs are in benchmarks/results/full_width_train):", ""]
    lines += [f"- {m['name']}: `{m['trained_with']}`, {m['train_seconds'] / 60:.0f} min, val top-1 "
              f"{pct(m['val_top1'])}" for m in results["models"]]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
