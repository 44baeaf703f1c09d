"""Does folding AdaFuse's policy save latency, not only MACs? ONNX Runtime CPU FP32, one process, round robin.

Per model family (the shipped zoo AdaFuse-TSM-R18 w0.25 8x112 and a ResNet-50 AdaFuse-TSM 8x224 with the
official-layout deterministic weights of tests/official, i.e. a random policy), four graphs:

- ``tsm``: the TSM baseline (the zoo's synth_tsm_r18w025; for R50, tsm_resnet50 carrying the AdaFuse backbone)
- ``adafuse dynamic``: the policy in the graph (a dense engine computes every channel)
- ``folded (old)``: ``--policy static`` as it was: kept + reused channels of any count
- ``folded``: ``--policy static`` now: the same plan, zero channels padding every folded block's kept + reused
  channels up to a multiple of 8 (ONNX Runtime's NCHWc block with AVX2), outputs unchanged

Timing: every graph runs ``--block`` consecutive clips in turn, ``--rounds`` times, the first clip of each block
dropped; p50 / p99 over the kept runs. Latency saving and MAC saving are against ``tsm``; the latency saving is
paired by round (1 - the graph's median / TSM's median of the same round, median over rounds: robust to a
machine whose load drifts); "realised" is the latency saving over the MAC saving. Top-1 agreement is with the dynamic AdaFuse graph on the synth val clips
(zoo; top-1 against the labels too) or on random clips (R50: untrained, shows only that folding runs).

    python benchmarks/fold_latency.py [--models zoo,r50] [--threads 2] [--work /tmp/edgefuse-fold-latency]

Writes benchmarks/results/fold_latency.md and .json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("tsm", "adafuse dynamic", "folded (old)", "folded")


def _export(label: str, out: Path, force: bool, **kw: Any) -> Path:
    import edgefuse.export.fold as fold_pkg
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    if out.is_file() and not force:
        return out
    multiple = fold_pkg.ENGINE_CHANNEL_MULTIPLE
    if label == "folded (old)":  # the export before channel padding: what api.py reads at call time, set to 1
        fold_pkg.ENGINE_CHANNEL_MULTIPLE = 1
    try:
        t = time.perf_counter()
        report = export(make_config(kw.pop("preset", None), out, **kw))
        print(f"  exported {label:16s} -> {out.name} in {time.perf_counter() - t:.0f} s"
              + (f" (fold tau {report.fold.tau:g}, agreement {report.fold.agreement:.4f} on the policy clips)"
                 if report.fold else ""), flush=True)
    finally:
        fold_pkg.ENGINE_CHANNEL_MULTIPLE = multiple
    return out


def zoo_graphs(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], np.ndarray, np.ndarray | None]:
    from edgefuse.clips import Preprocess, Sampling
    from edgefuse.clips import open as open_clips
    from edgefuse.models.pretrained import get_pretrained
    from edgefuse.models.registry import resolve_config

    synth = args.synth
    if synth is None:
        synth = work / "synth"
        if not (synth / "val.txt").is_file():
            from edgefuse.lab.synth import SynthConfig, generate

            generate(SynthConfig(out=synth, train=0, val=args.val, calib=args.policy_clips, formats=("frames",)))
    tag = get_pretrained("synth_adafuse_tsm_r18w025")
    pre = Preprocess.from_model_config(resolve_config(tag.model, input_size=tag.size, **tag.options))
    npz = {}
    for split, n in (("calib", args.policy_clips), ("val", args.val)):
        npz[split] = work / f"zoo_{split}_{n}.npz"
        if not npz[split].is_file():
            open_clips(synth / f"{split}.txt", pre, Sampling(num_segments=tag.segments), num_clips=n,
                       progress=False).to_npz(npz[split])
    ada = "synth_adafuse_tsm_r18w025"
    paths = {
        "tsm": _export("tsm", work / "zoo_tsm.onnx", args.force, model="synth_tsm_r18w025"),
        "adafuse dynamic": _export("adafuse dynamic", work / "zoo_ada_dynamic.onnx", args.force, model=ada),
    }
    for label, stem in (("folded (old)", "zoo_ada_folded_old"), ("folded", "zoo_ada_folded")):
        paths[label] = _export(label, work / f"{stem}.onnx", args.force, model=ada, policy="static",
                               policy_clips=npz["calib"], tau=args.tau)
    val = np.load(npz["val"])
    return paths, val["clips"], val["labels"] if "labels" in val.files else None


def r50_graphs(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], np.ndarray, None]:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from official.synth import synth_state_dict

    from edgefuse.models import create_model, save_checkpoint

    ckpt, dense = work / "r50_adafuse_tsm_official_layout.pth", work / "r50_tsm.pth"
    if not (ckpt.is_file() and dense.is_file()):
        fx = json.loads((ROOT / "tests/official/fixtures/adafuse_tsm_r50.json").read_text())
        torch.save({"state_dict": synth_state_dict(fx["entries"])}, ckpt)
        ada = create_model("adafuse_tsm_resnet50", checkpoint=ckpt)
        tsm = create_model("tsm_resnet50", num_classes=ada.config.num_classes)
        tsm.load_state_dict({k: v for k, v in ada.state_dict().items() if k in tsm.state_dict()})
        save_checkpoint(tsm, dense)
    rng = np.random.default_rng(1)
    clips = work / "r50_policy_clips.npz"
    if not clips.is_file():
        np.savez(clips, clips=rng.standard_normal((args.r50_policy_clips, 8, 3, 224, 224)).astype(np.float32))
    common: dict[str, Any] = {"segments": 8, "size": 224}
    paths = {
        "tsm": _export("tsm", work / "r50_tsm.onnx", args.force, model="tsm_resnet50", checkpoint=dense, **common),
        "adafuse dynamic": _export("adafuse dynamic", work / "r50_ada_dynamic.onnx", args.force,
                                   model="adafuse_tsm_resnet50", checkpoint=ckpt, **common),
    }
    for label, stem in (("folded (old)", "r50_ada_folded_old"), ("folded", "r50_ada_folded")):
        paths[label] = _export(label, work / f"{stem}.onnx", args.force, model="adafuse_tsm_resnet50",
                               checkpoint=ckpt, policy="static", policy_clips=clips, tau=args.r50_tau, **common)
    val = np.random.default_rng(2).standard_normal((args.r50_val, 8, 3, 224, 224)).astype(np.float32)
    return paths, val, None


def time_round_robin(sessions: dict[str, Any], x: np.ndarray, rounds: int, block: int) -> dict[str, list[list[float]]]:
    """``rounds`` rounds of ``block`` runs per graph in turn; the first run of each block is dropped.
    Returns per graph the kept times (ms) of every round."""
    names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
    times: dict[str, list[list[float]]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            kept = []
            for i in range(block + 1):
                t = time.perf_counter()
                s.run(None, {names[k]: x})
                if i:
                    kept.append(1000 * (time.perf_counter() - t))
            times[k].append(kept)
    return times


def top1(session: Any, clips: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.array([int(session.run(None, {name: clips[i : i + 1]})[0].argmax()) for i in range(len(clips))])


def family(key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import onnx

    from edgefuse.graph.ort import ort_session
    from edgefuse.graph.query import graph_macs

    print(f"{key}:", flush=True)
    paths, val, labels = (zoo_graphs if key == "zoo" else r50_graphs)(args, work)
    sessions = {v: ort_session(str(paths[v]), threads=args.threads) for v in VARIANTS}
    rounds, block = (args.rounds, args.block) if key == "zoo" else (args.r50_rounds, args.r50_block)
    preds = {v: top1(s, val) for v, s in sessions.items()}
    x = val[:1]
    times = time_round_robin(sessions, x, rounds, block)
    graphs = {v: onnx.load(str(paths[v])) for v in VARIANTS}
    macs = {v: graph_macs(graphs[v])[0] for v in VARIANTS}
    meta = {v: {p.key: p.value for p in graphs[v].metadata_props} for v in VARIANTS}
    base = [float(np.median(r)) for r in times["tsm"]]  # TSM's median of every round
    rows = []
    for v in VARIANTS:
        a = np.array([t for r in times[v] for t in r])
        p50 = float(np.percentile(a, 50))
        mac_saving = 1 - macs[v] / macs["tsm"]
        # paired by round (the graphs of one round saw the same machine load), median over rounds
        lat_saving = float(np.median([1 - float(np.median(r)) / b for r, b in zip(times[v], base)]))
        fold = json.loads(meta[v]["edgefuse.fold"]) if "edgefuse.fold" in meta[v] else None
        row = {"variant": v, "graph": paths[v].name, "fold_tau": fold["tau"] if fold else None,
               "gmacs_clip": macs[v] / 1e9, "p50_ms": p50,
               "p99_ms": float(np.percentile(a, 99)), "runs": len(a), "mac_saving_vs_tsm": mac_saving,
               "p50_saving_vs_tsm": 1 - p50 / float(np.percentile([t for r in times["tsm"] for t in r], 50)),
               "latency_saving_vs_tsm": lat_saving,
               "mac_saving_realised": lat_saving / mac_saving if mac_saving > 0.005 else None,
               "top1_agreement_with_adafuse": float((preds[v] == preds["adafuse dynamic"]).mean()),
               "top1": float((preds[v] == labels).mean()) if labels is not None else None}
        rows.append(row)
    return {"family": key, "clips": len(val), "rounds": rounds, "block": block, "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Folded AdaFuse-TSM: MACs vs latency (ONNX Runtime CPU FP32)", "",
        (f"`{report['command']}` ({report['date']}; {m['cpu']}, {m['cores']} cores, {m['threads']} ORT threads, "
         f"onnxruntime {m['onnxruntime']}, torch {m['torch']}; machine {m['shared']}; load average at the end "
         f"{', '.join(f'{v:.2f}' for v in m['load_average'])})."), "",
        ("Savings are against `tsm`. Latency saving: per round, 1 - (the graph's median / TSM's median in that "
         "round), median over rounds (rounds pair graphs that saw the same load; `p50_saving_vs_tsm` in the JSON is "
         "the plain ratio of p50s). Realised = latency saving / MAC saving (goal >= 0.70). Agreement: top-1 with "
         "the dynamic AdaFuse graph on the clips (zoo: synth val; R50: random clips, untrained policy)."), "",
    ]
    for fam in report["families"]:
        lines += [f"## {fam['family']} ({fam['rounds']} rounds x {fam['block']} runs, {fam['clips']} clips)", "",
                  "| graph | tau | GMACs/clip | p50 ms | p99 ms | MAC saving | latency saving | realised | agreement | top-1 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in fam["rows"]:
            real = "" if r["mac_saving_realised"] is None else f"{r['mac_saving_realised']:.2f}"
            t1 = "" if r["top1"] is None else f"{100 * r['top1']:.1f}%"
            tau = "" if r["fold_tau"] is None else f"{r['fold_tau']:g}"
            lines.append(f"| {r['variant']} | {tau} | {r['gmacs_clip']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{100 * r['mac_saving_vs_tsm']:.1f}% | {100 * r['latency_saving_vs_tsm']:.1f}% | {real} | "
                         f"{100 * r['top1_agreement_with_adafuse']:.1f}% | {t1} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="zoo,r50", help="comma-separated: zoo, r50")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--synth", type=Path, default=None, help="an edgefuse synth dataset (default: made in --work)")
    ap.add_argument("--policy-clips", type=int, default=64, help="zoo: calib clips the policy is folded on")
    ap.add_argument("--val", type=int, default=250, help="zoo: val clips for top-1")
    ap.add_argument("--tau", type=float, default=0.8,
                    help="zoo fold tau (0.8: top-1 of AdaFuse's policy on the val clips; the export's search finds no "
                         "tau with 99%% agreement on these 64 policy clips, best 98.4%% at 0.75)")
    ap.add_argument("--r50-tau", type=float, default=0.34)
    ap.add_argument("--r50-policy-clips", type=int, default=8)
    ap.add_argument("--r50-val", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--r50-rounds", type=int, default=6)
    ap.add_argument("--r50-block", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="re-export graphs already in --work")
    ap.add_argument("--shared", default="shared with a training process (nice 5, 2 threads) most of the time",
                    help="how busy the machine was, for the record")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-fold-latency"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fold_latency")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    families = [family(k.strip(), args, args.work) for k in args.models.split(",") if k.strip()]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    report = {
        "command": "python benchmarks/fold_latency.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu, "avx512": "avx512f" in flags, "cores": os.cpu_count(), "threads": args.threads,
                    "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "shared": args.shared,
                    "load_average": os.getloadavg()},
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True,
                              text=True).stdout.strip(),
        "families": families,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
