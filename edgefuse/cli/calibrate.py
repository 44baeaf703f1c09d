"""``edgefuse calibrate``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgefuse.cli.options import clip_options, json_option
from edgefuse.cli.render import format_table


@click.command("calibrate")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@clip_options(default_num=256)
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax", "mse"]), default="entropy",
              show_default=True, help="INT8 threshold rule (TensorRT's entropy, a percentile, max, or least MSE).")
@click.option("--percentile", default=99.99, show_default=True, help="Percentile of |x| for --method percentile.")
@click.option("--max-drop", type=float, help="Accuracy budget in top-1 points: the drop against FP32 with labels, "
              "the disagreement without; the most sensitive layers go back to FP32 until it holds.")
@click.option("--min-agreement", type=float, help="Also hold top-1 agreement with FP32 at least this (e.g. 0.98) in the "
              "budget.")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Keep nodes whose name matches (glob, e.g. '/backbone/conv1/*') in FP32; repeatable.")
@click.option("--no-default-excludes", is_flag=True,
              help="Also quantize AdaFuse policy nets, GSF gates/fusion and the classifier (kept FP32 by default).")
@click.option("--holdout", type=click.Path(path_type=Path, exists=True),
              help="Held-out clips for the FP32 comparison and the budget (default: clips of --clips not used to calibrate).")
@click.option("--num-holdout", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--trt-cache", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a TensorRT calibration cache (implicit INT8, TensorRT <= 10) from the same statistics.")
@click.option("--trt-version", default="8.6.1", show_default=True, help="TensorRT version in the cache header.")
@click.option("--from-trt-cache", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Take the INT8 scales from a TensorRT calibration cache instead of collecting statistics.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Statistics cache [$EDGEFUSE_CACHE_DIR or ~/.cache/edgefuse]/calibrate.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Output .onnx (a .calib.json report is written beside it).")
@json_option
def calibrate_cmd(model: Path, clips: Path, root: Path | None, num_clips: int, seed: int, workers: int,
                  precision: str, method: str, percentile: float, max_drop: float | None, min_agreement: float | None, exclude: tuple[str, ...],
                  no_default_excludes: bool, holdout: Path | None, num_holdout: int, trt_cache: Path | None,
                  trt_version: str, from_trt_cache: Path | None, cache_dir: Path | None, output: Path,
                  as_json: bool) -> None:
    """Make MODEL (an FP32 graph from 'edgefuse export') INT8 (symmetric Q/DQ) or FP16, calibrated on
    benchmark clips sampled as the model was trained, and compare it with FP32 on held-out clips."""
    from edgefuse.quantize import CalibrateConfig, calibrate

    cfg = CalibrateConfig(model=model, clips=clips, output=output, precision=precision, method=method,
                          num_clips=num_clips, seed=seed, max_drop=max_drop, min_agreement=min_agreement, exclude=exclude,
                          default_excludes=not no_default_excludes, holdout=holdout, num_holdout=num_holdout,
                          percentile=percentile, cache_dir=cache_dir, trt_cache=trt_cache, trt_version=trt_version,
                          from_trt_cache=from_trt_cache, root=root, workers=workers)
    result = calibrate(cfg)
    rep = result.report
    if as_json:
        click.echo(json.dumps(rep, indent=2, default=str))
        return
    r = rep["result"]
    rows = [{"figure": "top-1 agreement with FP32", "value": f"{100 * r['top1_agreement']:.2f}%"},
            {"figure": "logit max |error| / mean |error|",
             "value": f"{r['max_abs_logit_error']:.4f} / {r['mean_abs_logit_error']:.4f}"},
            {"figure": "logit cosine similarity", "value": f"{r['cosine']:.5f}"}]
    if r["top1_reference"] is not None:
        rows.append({"figure": f"top-1 FP32 -> {precision.upper()}",
                     "value": f"{100 * r['top1_reference']:.2f}% -> {100 * r['top1_candidate']:.2f}%"})
    if r["flip_rate"]:
        rows.append({"figure": "policy decision flips (mean over blocks)", "value": f"{100 * r['mean_flip_rate']:.3f}%"})
    m = rep["macs"]
    rows.append({"figure": f"MACs in {precision.upper()}", "value": f"{100 * m[precision] / max(m['total'], 1):.1f}% "
                 f"({m[precision] / 1e9:.3f} of {m['total'] / 1e9:.3f} G)"})
    if rep["budget_layers"]:
        rows.append({"figure": "layers returned to FP32 by the budget",
                     "value": f"{len(rep['budget_layers'])} ({m['budget_layers_macs'] / 1e9:.3f} GMACs)"})
    click.echo(format_table(rows, ["figure", "value"], ["", f"{precision.upper()} vs FP32 on {rep['holdout']['clips']} "
                                                         "held-out clips"]))
    for block, rate in r["flip_rate"].items():
        click.echo(f"  flips {block}: {100 * rate:.3f}%")
    if rep["budget_layers"]:
        click.echo("FP32 by budget: " + ", ".join(rep["budget_layers"]))
    if rep["within_budget"] is False:
        click.echo(f"warning: over the budget (drop {rep['drop_points']:.2f} points, agreement "
                   f"{100 * r['top1_agreement']:.2f}%)", err=True)
    click.echo(f"wrote {result.path} (report {result.report_path}"
               + (f", TensorRT cache {result.trt_cache}" if result.trt_cache else "") + ")")
