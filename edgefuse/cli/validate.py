"""``edgefuse validate``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgefuse.cli.options import clip_options, json_option
from edgefuse.cli.render import render_json, render_validate


@click.command("validate")
@click.argument("engine", type=click.Path(path_type=Path))
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
    """Run ENGINE and its FP32 reference on the same clips and compare them; exit 1 over the budget.

    ENGINE may also be the output folder of device_runner.py (a device where edgefuse cannot be installed), with
    --clips the folder 'edgefuse device-clips' wrote for it: the reference then runs here on the same arrays."""
    from edgefuse.validate import ValidateConfig, validate

    rep = validate(ValidateConfig(engine=engine, reference=reference, clips=clips, num_clips=num_clips, seed=seed,
                                  root=root, workers=workers, max_drop=max_drop, report=report, html=html,
                                  per_layer=per_layer, layer_tolerance=layer_tolerance))
    click.echo(render_json(rep.to_dict(per_clip=False)) if as_json else render_validate(rep))
    if not rep.passed:
        sys.exit(1)
