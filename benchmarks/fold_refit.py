"""What the refit buys: folded AdaFuse-TSM with and without the least-squares refit of conv2, per tau and with the
automatic tau search, on held-out val clips.

For each model (the zoo's width-0.25 AdaFuse-TSM, the full-width one in weights/full_width): fold on ``--policy-clips``
calib clips of the synthetic benchmark (what ``edgefuse export --policy static --policy-clips`` does, channel
padding included), with ``with_refit`` off and on, at each ``--taus`` and with the search at each ``--min-agreement``;
then judge the folded model in PyTorch on the ``--val`` val clips: top-1 with labels, top-1 agreement with the
dynamic model (the policy), GMACs per clip. The search judges agreement on the policy clips, which the refit was
fitted on; the val clips are held out from both.

    python benchmarks/fold_refit.py --synth /work/lead_data/synth

Writes benchmarks/results/fold_refit.json and the table in benchmarks/results/fold_refit.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"synth_adafuse_tsm_r18w025": None, "synth_adafuse_tsm_r18w1": ROOT / "weights" / "full_width"}


def _clips(synth: Path, split: str, n: int, config: Any) -> tuple[Any, Any]:
    from edgefuse import clips

    data, labels, _ = clips.open(synth / f"{split}.txt", clips.Preprocess.from_model_config(config),
                                 clips.Sampling(num_segments=8), num_clips=n, progress=False).stack()
    return data, labels


def measure(name: str, zoo: Path | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from edgefuse.errors import EdgefuseError
    from edgefuse.export.fold import ENGINE_CHANNEL_MULTIPLE, fold
    from edgefuse.models import create_model

    if zoo is not None:
        os.environ["EDGEFUSE_ZOO_DIR"] = str(zoo)
    else:
        os.environ.pop("EDGEFUSE_ZOO_DIR", None)
    model = create_model(name, pretrained=True)
    policy_clips, _ = _clips(args.synth, "calib", args.policy_clips, model.config)
    batches = list(torch.split(policy_clips, 4))
    val, labels = _clips(args.synth, "val", args.val, model.config)

    def logits(m: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(val[i:i + 10]) for i in range(0, len(val), 10)])  # (val, K)

    policy_logits = logits(model)
    policy = policy_logits.argmax(1)
    p = torch.log_softmax(policy_logits, dim=1)  # (val, K)

    def kl(out: torch.Tensor) -> float:
        """Mean KL(policy || folded) of the softmax over the val clips: a finer measure than top-1 agreement."""
        return float((p.exp() * (p - torch.log_softmax(out, dim=1))).sum(dim=1).mean())

    rows = [{"model": name, "variant": "policy", "tau": None, "refit": None, "gmacs": None,
             "top1": float((policy == labels).float().mean()), "agreement": 1.0, "kl": 0.0, "seconds": None}]
    specs = [("tau", t) for t in args.taus] + [("min_agreement", a) for a in args.min_agreement]
    for kind, value in specs:
        for with_refit in (False, True):
            t0 = time.monotonic()
            variant = f"tau {value}" if kind == "tau" else f"search >= {value:.0%}"
            try:
                result = fold(model, batches, tau=value if kind == "tau" else None,
                              min_agreement=value if kind == "min_agreement" else 0.0,
                              channel_multiple=ENGINE_CHANNEL_MULTIPLE, progress=False, with_refit=with_refit)
            except EdgefuseError as e:  # the search found no tau with that agreement on the policy clips
                rows.append({"model": name, "variant": variant, "refit": with_refit, "failed": str(e),
                             "seconds": time.monotonic() - t0})
                print(json.dumps(rows[-1]), flush=True)
                continue
            seconds = time.monotonic() - t0
            out = logits(result.model)
            pred = out.argmax(1)
            row = {"model": name, "variant": variant,
                   "tau": result.tau, "refit": with_refit, "gmacs": result.report.macs.folded / 1e9,
                   "dense_gmacs": result.report.macs.dense / 1e9, "policy_gmacs": result.report.macs.dynamic_expected / 1e9,
                   "top1": float((pred == labels).float().mean()), "agreement": float((pred == policy).float().mean()),
                   "refit_kept": result.report.refit, "kl": kl(out), "policy_clip_agreement": result.report.agreement, "seconds": seconds,
                   "blocks": [{"block": b.block, "overridden": b.overridden, "before": b.error_before,
                               "after": b.error_after} for b in result.report.blocks]}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "blocks"}), flush=True)
    return rows


def pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def refit_cell(row: dict[str, Any]) -> str:
    """off (--no-refit); on and kept (some block refitted); on but not kept (the plain fold judged better)."""
    if not row["refit"]:
        return "off"
    return "on, kept" if row["refit_kept"] else "on, not kept (plain judged better)"


def table(results: dict[str, Any]) -> str:
    head = (f"Command: `{results['command']}`, {results['date']}, {results['machine']}. Folded on "
            f"{results['policy_clips']} calib clips, judged on {results['val']} val clips (held out from the fold "
            "and the refit), in PyTorch.")
    columns = ("| model | fold | refit | tau | GMACs/clip | MACs saved | top-1 | vs policy (points) | agreement with "
               "the policy | KL to the policy | fold time (s) |")
    lines = [head, "", columns, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["model"] == name]
        policy = rows[0]
        folded = next(r for r in rows[1:] if "gmacs" in r)
        dense, spent = folded["dense_gmacs"], folded["policy_gmacs"]
        lines.append(f"| {name} | policy in the graph | | | {spent:.3f} (its decisions; dense {dense:.3f}) | "
                     f"{pct(1 - spent / dense)} | {pct(policy['top1'])} | | | | |")
        for r in rows[1:]:
            if "failed" in r:
                lines.append(f"| {name} | {r['variant']} | {'on' if r['refit'] else 'off'} | no tau reaches it on the "
                             f"policy clips | | | | | | | {r['seconds']:.0f} |")
                continue
            lines.append(f"| {name} | {r['variant']} | {refit_cell(r)} | {r['tau']:.2f} | "
                         f"{r['gmacs']:.3f} | {pct(1 - r['gmacs'] / r['dense_gmacs'])} | {pct(r['top1'])} | "
                         f"{round(100 * (r['top1'] - policy['top1']), 1) + 0.0:+.1f} | {pct(r['agreement'])} | {r['kl']:.4f} | "
                         f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", type=Path, required=True, help="an edgefuse synth benchmark (val and calib splits)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS))
    ap.add_argument("--policy-clips", type=int, default=64)
    ap.add_argument("--val", type=int, default=250)
    ap.add_argument("--taus", type=lambda s: [float(v) for v in s.split(",") if v], default=[0.1, 0.45, 0.8],
                    help="fixed taus to fold at ('' for none)")
    ap.add_argument("--min-agreement", type=lambda s: [float(v) for v in s.split(",") if v], default=[0.98, 0.99],
                    help="agreement floors of the automatic tau search ('' for none)")
    ap.add_argument("--merge", type=Path, help="an earlier results JSON whose rows are kept where this run has no row "
                    "of the same model and variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--machine", default="2-core AMD EPYC (AVX2), shared")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fold_refit")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"command": "python benchmarks/fold_refit.py " + " ".join(sys.argv[1:]),
                               "date": time.strftime("%Y-%m-%d"), "machine": args.machine,
                               "policy_clips": args.policy_clips, "val": args.val, "rows": []}
    earlier = json.loads(args.merge.read_text()) if args.merge is not None else None  # before this run writes
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"--models: {name} is not one of {', '.join(MODELS)}")
        results["rows"] += measure(name, MODELS[name], args)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    if earlier is not None:
        mine = {(r["model"], r["variant"], r["refit"]) for r in results["rows"]}
        kept = [r for r in earlier["rows"] if (r["model"], r["variant"], r["refit"]) not in mine]
        order = {n: i for i, n in enumerate(MODELS)}
        results["rows"] = sorted(kept + results["rows"], key=lambda r: (order[r["model"]], r["variant"] != "policy"))
        results["command"] = f"{earlier['command']}; then {results['command']}"
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
