"""``edgefuse models`` and ``edgefuse inspect``."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli.options import json_option, model_options
from edgefuse.cli.render import render_json, render_models


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--frames", default=8, show_default=True, help="Frames per clip for the MACs column.")
@click.option("--size", type=click.IntRange(min=32), default=None, help="Input size for the MACs column [each "
              "model's own: recorded; another size counts every model, seconds].")
@json_option
def models_cmd(pattern: str, frames: int, size: int | None, as_json: bool) -> None:
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
        click.echo(render_json({"models": [r.to_dict() for r in rows], "trained": [t.to_dict() for t in trained]}))
        return
    click.echo(render_models(rows, trained, frames, size))


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
    from edgefuse.cli.render import render_model_inspection
    from edgefuse.models.report import InspectConfig, inspect_model

    report = inspect_model(InspectConfig(target, checkpoint, num_classes, segments, size, clips, seed))
    click.echo(render_json(report.to_dict()) if as_json else render_model_inspection(report))


def _inspect_onnx(path: str, as_json: bool) -> None:
    from edgefuse.cli.render import render_graph_inspection
    from edgefuse.graph.inspect import inspect_onnx

    r = inspect_onnx(path)
    click.echo(render_json(r.to_dict()) if as_json else render_graph_inspection(r))
