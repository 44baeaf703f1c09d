"""``edgefuse demo``."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli.options import json_option
from edgefuse.cli.render import render_demo, render_json


@click.command("demo")
@click.option("--work", default=Path("edgefuse-demo"), show_default=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the benchmark clips, graphs, engines and reports.")
@click.option("--num-val", default=100, show_default=True, type=click.IntRange(min=10),
              help="Val clips to validate on.")
@click.option("--num-calib", default=64, show_default=True, type=click.IntRange(min=8), help="Calibration clips.")
@click.option("--iterations", default=20, show_default=True, type=click.IntRange(min=1), help="Bench runs per engine.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads (default: one per physical core).")
@json_option
def demo_cmd(work: Path, num_val: int, num_calib: int, iterations: int, threads: int | None, as_json: bool) -> None:
    """The whole pipeline, offline, on the shipped zoo and the synthetic benchmark: export (dynamic and
    folded), calibrate INT8, build CPU engines, validate against FP32, bench against PyTorch eager."""
    from edgefuse.demo import DemoConfig, demo

    rep = demo(DemoConfig(work=work, num_val=num_val, num_calib=num_calib, iterations=iterations, threads=threads))
    click.echo(render_json(rep.to_dict()) if as_json else render_demo(rep))
