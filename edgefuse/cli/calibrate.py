"""``edgefuse calibrate``."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import clip_options, json_option, same_reading
from edgefuse.cli.render import render_calibrate, render_json, render_over_budget


@click.command("calibrate")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@clip_options(default_num=256)
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax", "mse"]), default="entropy",
              show_default=True, help="INT8 threshold rule (TensorRT's entropy, a percentile, max, or least MSE).")
@click.option("--percentile", default=99.99, show_default=True, help="Percentile of |x| for --method percentile.")
@click.option("--max-drop", type=float, help="Accuracy budget in top-1 points: the drop against FP32 with labels, "
              "the disagreement without; the most sensitive layers go back to FP32 until it holds.")
@click.option("--min-agreement", type=float,
              help="Also hold top-1 agreement with FP32 at least this (e.g. 0.98) in the budget.")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Keep nodes whose name matches (glob, e.g. '/backbone/conv1/*') in FP32; repeatable.")
@click.option("--no-default-excludes", is_flag=True,
              help="Also quantize AdaFuse policy nets, GSF gates/fusion, non-local query/key projections (INT8) and the "
                   "classifier (kept FP32 by default).")
@click.option("--holdout", type=click.Path(path_type=Path, exists=True),
              help="Held-out clips for the FP32 comparison and the budget (default: clips of --clips not used to "
                   "calibrate).")
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
                  precision: str, method: str, percentile: float, max_drop: float | None, min_agreement: float | None,
                  exclude: tuple[str, ...], no_default_excludes: bool, holdout: Path | None, num_holdout: int,
                  trt_cache: Path | None, trt_version: str, from_trt_cache: Path | None, cache_dir: Path | None,
                  output: Path, as_json: bool) -> None:
    """Make MODEL (an FP32 graph from 'edgefuse export') INT8 (symmetric Q/DQ) or FP16, calibrated on
    benchmark clips sampled as the model was trained, and compare it with FP32 on held-out clips."""
    from edgefuse.quantize import CalibrateConfig, calibrate

    check_io(graphs=[model], inputs=[clips, holdout, from_trt_cache], outputs={
        output: "calibrated graph", output.with_suffix(".calib.json"): "calibration report", trt_cache: "TensorRT cache"})
    holdout = same_reading(clips, holdout)  # read like --clips (the clip-reading options)
    cfg = CalibrateConfig(model=model, clips=clips, output=output, precision=precision, method=method,
                          num_clips=num_clips, seed=seed, max_drop=max_drop, min_agreement=min_agreement,
                          exclude=exclude, default_excludes=not no_default_excludes, holdout=holdout,
                          num_holdout=num_holdout, percentile=percentile, cache_dir=cache_dir, trt_cache=trt_cache,
                          trt_version=trt_version, from_trt_cache=from_trt_cache, root=root, workers=workers)
    result = calibrate(cfg)
    if as_json:
        click.echo(render_json(result.report.to_dict()))
        return
    click.echo(render_calibrate(result))
    warning = render_over_budget(result)
    if warning:
        click.echo(warning, err=True)
