"""``edgefuse validate`` and ``edgefuse bench``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from edgefuse.cli.options import clip_options, json_option
from edgefuse.cli.render import format_table


@click.command("validate")
@click.argument("engine", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--reference", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The FP32 reference: the .onnx from 'edgefuse export', or a checkpoint (PyTorch eager).")
@clip_options(default_num=256)
@click.option("--max-drop", default=0.5, show_default=True,
              help="Budget in top-1 points (drop with labels, disagreement without); over it: exit 1.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="JSON report (every clip's figures).")
@click.option("--html", type=click.Path(path_type=Path, dir_okay=False), help="HTML report with tables and plots.")
@click.option("--per-layer", is_flag=True, help="Name the first tensor where the engine departs from the reference.")
@click.option("--layer-tolerance", default=0.05, show_default=True, help="Relative error that counts as departed.")
@json_option
def validate_cmd(engine: Path, reference: Path, clips: Path, root: Path | None, num_clips: int, seed: int,
                 workers: int, max_drop: float, report: Path | None, html: Path | None, per_layer: bool,
                 layer_tolerance: float, as_json: bool) -> None:
    """Run ENGINE and its FP32 reference on the same clips and compare them; exit 1 over the budget."""
    from edgefuse.validate import ValidateConfig, validate

    rep = validate(ValidateConfig(engine=engine, reference=reference, clips=clips, num_clips=num_clips, seed=seed,
                                  root=root, workers=workers, max_drop=max_drop, report=report, html=html,
                                  per_layer=per_layer, layer_tolerance=layer_tolerance))
    if as_json:
        click.echo(json.dumps({k: v for k, v in rep.items() if k != "result"} | {"result": {
            k: v for k, v in rep["result"].items() if k != "per_clip"}}, indent=2, default=str))
    else:
        r = rep["result"]
        rows = [{"figure": "clips", "value": r["clips"]},
                {"figure": "top-1 agreement", "value": f"{100 * r['top1_agreement']:.2f}%"}]
        if "top1_reference" in r:
            rows += [{"figure": "top-1 reference / engine",
                      "value": f"{100 * r['top1_reference']:.2f}% / {100 * r['top1_engine']:.2f}%"},
                     {"figure": "top-5 reference / engine",
                      "value": f"{100 * r['top5_reference']:.2f}% / {100 * r['top5_engine']:.2f}%"}]
        rows += [{"figure": "logit cosine (mean / min)", "value": f"{r['cosine_mean']:.5f} / {r['cosine_min']:.5f}"},
                 {"figure": "max |logit error|", "value": f"{r['max_abs_error']:.4f}"},
                 {"figure": "KL divergence (mean / max)", "value": f"{r['kl_mean']:.2e} / {r['kl_max']:.2e}"}]
        click.echo(format_table(rows, ["figure", "value"], ["", f"{engine.name} vs {reference.name}"]))
        if r.get("per_class"):
            worst = r["per_class"][:3]
            click.echo("classes that moved most: " + ", ".join(f"{c['class']} {100 * c['delta']:+.1f}" for c in worst))
        for p in rep.get("policy") or []:
            click.echo(f"  AdaFuse {p['block']}: flips {100 * p['flip_rate']:.3f}%, skip/reuse/keep "
                       f"{p.get('engine_skip', 0):.2f}/{p.get('engine_reuse', 0):.2f}/{p.get('engine_keep', 0):.2f}")
        if rep.get("realized_gmacs_per_clip") is not None:
            eng, ref = rep["realized_gmacs_per_clip"], rep["realized_gmacs_per_clip_reference"]
            click.echo(f"  AdaFuse MACs per clip given the decisions: engine {float(np.mean(eng)):.4f} G, reference "
                       f"{float(np.mean(ref)):.4f} G, dense {rep['dense_gmacs_per_clip']:.4f} G")
        if rep.get("per_layer"):
            pl = rep["per_layer"]
            if pl.get("tensor"):
                click.echo(f"first departure: {pl['tensor']} ({pl['op']}), relative error {pl['relative_error']:.3g} > "
                           f"{pl['tolerance']} after {pl['tensors_checked'] - 1} matching tensors")
                others = f" (then {', '.join(pl['suspects'][1:])})" if len(pl["suspects"]) > 1 else ""
                click.echo(f"departing layer: {pl['layer']}{others}")
            else:
                click.echo(f"no tensor departs by more than {pl['tolerance']} ({pl['tensors_checked']} checked)")
        click.echo(f"verdict: {rep['verdict']} (drop {rep['drop_points']:.2f} points, budget {max_drop})")
    if rep["verdict"] != "pass":
        sys.exit(1)


@click.command("bench")
@click.argument("engines", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--device", default="auto", show_default=True, help="Device profile; jetson or a Jetson profile needs one.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--duration", type=float, help="Seconds per engine instead of --iterations.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--eager", type=click.Path(path_type=Path, dir_okay=False),
              help="A checkpoint: add PyTorch eager FP32 as the baseline row.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for CPU backends (default: physical cores).")
@click.option("--json-out", type=click.Path(path_type=Path, dir_okay=False), help="JSON with every raw timing.")
@click.option("--estimate", is_flag=True,
              help="Roofline estimate per engine on the --device profile (alone when that device is not this machine; "
                   "beside the measurement when it is).")
@click.option("--png", "png_out", type=click.Path(path_type=Path, dir_okay=False), help="Latency distribution plot.")
@json_option
def bench_cmd(engines: tuple[Path, ...], device: str, batch: int, iterations: int, duration: float | None,
              warmup: int, eager: Path | None, threads: int | None, json_out: Path | None, estimate: bool,
              png_out: Path | None, as_json: bool) -> None:
    """Latency percentiles, throughput and memory of ENGINES side by side on the same input."""
    from edgefuse.bench import BenchConfig, bench

    rep = bench(BenchConfig(engines=engines, device=device, batch=batch, iterations=iterations, duration=duration,
                            warmup=warmup, eager=eager, threads=threads, json_out=json_out, png_out=png_out,
                            estimate=estimate))
    if rep.get("estimate_only"):
        click.echo(rep["note"])
        click.echo(format_table(rep["rows"], ["name", "estimate_ms"], ["engine", "estimated ms (roofline)"]))
        return
    if as_json:
        click.echo(json.dumps({**rep, "rows": [{k: v for k, v in r.items() if k != "raw_ms"} for r in rep["rows"]]},
                              indent=2))
        return
    rows = [{**r, "speedup": f"{r['speedup_vs_first']:.2f}x", "cov_pct": f"{100 * r['cov']:.1f}%"} for r in rep["rows"]]
    click.echo(format_table(rows, ["name", "backend", "precision", "median_ms", "p90_ms", "p99_ms", "cov_pct",
                                   "clips_per_s", "frames_per_s", "rss_mb", "speedup"],
                            ["engine", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "CoV", "clips/s",
                             "frames/s", "RSS MB", "vs first"]))
    if estimate:
        for r in rep["rows"]:
            if "estimate_ms" in r:
                click.echo(f"estimate (roofline) {r['name']}: {r['estimate_ms']:.2f} ms vs measured {r['median_ms']:.2f} ms "
                           f"({r['estimate_error_pct']:+.0f}%)")
    for r in rep["rows"]:
        if r.get("energy_mj_per_clip") is not None:
            click.echo(f"energy {r['name']}: {r['energy_mj_per_clip']:.1f} mJ/clip at {r['mean_power_mw'] / 1000:.2f} W "
                       f"(power mode {r['power_mode']}, clocks pinned: {r['clocks_pinned']})")
    click.echo(f"input {'x'.join(str(d) for d in rep['input'])} on {rep['device']}, {rep['rows'][0]['iterations']} runs "
               f"each, round robin after {warmup} warm-up; peak RSS {rep['peak_rss_mb']} MB")
