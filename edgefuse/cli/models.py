"""``edgefuse models`` and ``edgefuse inspect``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgefuse.cli.options import json_option, model_options
from edgefuse.cli.render import format_table


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--frames", default=8, show_default=True, help="Frames per clip for the MACs column.")
@click.option("--size", default=224, show_default=True, help="Input size for the MACs column (224 is recorded; "
              "another size counts every model, seconds).")
@json_option
def models_cmd(pattern: str, frames: int, size: int, as_json: bool) -> None:
    """List the registered models (glob PATTERN) with parameters and dense MACs, and the pretrained tags."""
    from edgefuse.errors import EdgefuseError
    from edgefuse.models.listing import model_rows, pretrained_rows

    trained = pretrained_rows(pattern)
    try:
        rows = model_rows(pattern, frames=frames, size=size)
    except EdgefuseError:
        if not trained:
            raise
        rows = []  # the pattern names pretrained tags only
    if as_json:
        click.echo(json.dumps({"models": [r.to_dict() for r in rows], "trained": [t.to_dict() for t in trained]},
                              indent=2))
        return
    if rows:
        click.echo(format_table(
            [r.to_dict() for r in rows], ["name", "params_m", "gmacs_frame", "gmacs_clip", "description"],
            ["model", "params (M)", "GMACs/frame", f"GMACs/clip ({frames}x{size})", "description"],
        ))
    if trained:
        click.echo("\nPretrained (ship with edgefuse: create_model(NAME, pretrained=True) or the short name anywhere "
                   "a model name goes;\nval split of 'edgefuse synth', 10 classes in 5 time-reversed pairs):")
        click.echo(format_table(
            [t.to_dict() for t in trained],
            ["pretrained", "name", "top1", "within_pair", "gmacs_clip", "saving", "mb"],
            ["pretrained", "short name", "val top-1", "within pair", "GMACs/clip", "MACs saved", "MB"],
        ))


@click.command("inspect")
@click.argument("target")
@model_options
@click.option("--clips", type=click.Path(path_type=Path, dir_okay=False),
              help="An .npz with clips=(N, T, 3, H, W) preprocessed, for AdaFuse decisions (default: a random clip).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random clip.")
@json_option
def inspect_cmd(target: str, checkpoint: Path | None, num_classes: int | None, segments: int | None,
                size: int | None, clips: Path | None, seed: int, as_json: bool) -> None:
    """Show a model's config, parameters and MACs (for AdaFuse, its decisions per block), or
    an ONNX graph's ops, params, MACs, dynamic dimensions, metadata and TensorRT verdicts."""
    if target.endswith(".onnx"):
        _inspect_onnx(target, as_json)
        return
    from edgefuse.models.report import InspectConfig, inspect_model

    report = inspect_model(InspectConfig(target, checkpoint, num_classes, segments, size, clips, seed))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    cfg = report["config"]
    click.echo(f"model       {cfg['name']}  ({cfg['arch']} on {cfg['backbone']})")
    if report["checkpoint"]:
        click.echo(f"checkpoint  {report['checkpoint']}")
    click.echo(f"input       ({cfg['num_segments']}, 3, {cfg['input_size']}, {cfg['input_size']}) {cfg['channel_order']}, "
               f"mean {cfg['mean']}, std {cfg['std']}, resize short side {cfg['scale_size']}")
    click.echo(f"classes     {cfg['num_classes']}")
    if cfg["options"]:
        click.echo(f"options     {cfg['options']}")
    click.echo(f"params      {report['params'] / 1e6:.3f} M")
    click.echo(f"MACs        {report['gmacs_frame']:.4f} G per frame, {report['gmacs_clip']:.3f} G per clip "
               f"of {report['frames']} frames (dense)")
    dec = report.get("decisions")
    if dec:
        click.echo(f"AdaFuse     on {dec['input']}: {dec['gmacs_clip_given_decisions']:.3f} G per clip given the "
                   f"decisions, {dec['saving_pct']:.1f}% saved")
        click.echo(format_table(dec["blocks"], ["block", "skip", "reuse", "keep", "saved_gmacs_clip"],
                                ["block", "skip", "reuse", "keep", "saved GMACs/clip"]))


def _inspect_onnx(path: str, as_json: bool) -> None:
    from edgefuse.graph.inspect import inspect_onnx

    r = inspect_onnx(path)
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str))
        return
    meta = r["metadata"]
    click.echo(f"graph       {r['path']}  opset {r['opset']}, {r['nodes']} nodes, {r['params'] / 1e6:.3f} M params, "
               f"producer {r['producer']}")
    for io in r["inputs"]:
        click.echo(f"input       {io['name']} {io['dims']}")
    for io in r["outputs"]:
        click.echo(f"output      {io['name']} {io['dims']}")
    for d, rng in r["dynamic_dims"].items():
        click.echo(f"dynamic     {d}: min/opt/max {rng}")
    if "macs" in r:
        click.echo(f"MACs        {r['macs']['total'] / 1e9:.4f} G at the {r['macs']['at']} "
                   f"({', '.join(f'{k} {v / 1e9:.3f} G' for k, v in r['macs']['by_op'].items())})")
    click.echo("ops         " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()))
    for k in sorted(meta):
        if k not in ("class_names",):
            click.echo(f"meta        {k} = {json.dumps(meta[k])}")
    h = r["hygiene"]
    click.echo("hygiene     " + ("ok" if h["ok"] else "; ".join(h["problems"])))
    rows = [{"tensorrt": v["version"], "verdict": "ok" if v["ok"] else "NO: " + "; ".join(v["problems"]),
             "notes": len(v["notes"])} for v in h["tensorrt"]]
    click.echo(format_table(rows, ["tensorrt", "verdict", "notes"], ["TensorRT", "verdict", "restriction notes"]))
