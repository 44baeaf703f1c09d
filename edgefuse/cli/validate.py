"""``edgefuse validate``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import clip_options, host_specs, json_option, remote_options
from edgefuse.cli.render import render_json, render_validate


@click.command("validate")
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--reference", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The FP32 reference: the .onnx from 'edgefuse export', or a checkpoint (PyTorch eager).")
@clip_options(default_num=256)
@click.option("--max-drop", default=0.5, show_default=True,
              help="Budget in top-1 points (drop with labels, disagreement without); over it: exit 1.")
@click.option("--min-agreement", type=click.FloatRange(0, 1),
              help="Top-1 agreement with the reference the engine must reach, with or without labels; below it: "
                   "exit 1 [0.98 for an INT8 engine, else 0.99].")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="JSON report (every clip's figures).")
@click.option("--html", type=click.Path(path_type=Path, dir_okay=False), help="HTML report with tables and plots.")
@click.option("--per-layer", is_flag=True, help="Name the first tensor where the engine departs from the reference.")
@click.option("--layer-tolerance", default=0.05, show_default=True, help="Relative error that counts as departed.")
@remote_options("Run ENGINE (a graph is built there, or its recorded engine reused)")
@click.option("--shard", type=click.IntRange(min=1),
              help="With --host: clips per shard sent to a device (default: two shards per host).")
@json_option
def validate_cmd(engine: Path, reference: Path, clips: Path, root: Path | None, num_clips: int, seed: int,
                 workers: int, max_drop: float, min_agreement: float | None, report: Path | None,
                 html: Path | None, per_layer: bool, layer_tolerance: float, hosts: tuple[str, ...],
                 hosts_file: Path | None, accept_new_host_key: bool, shard: int | None, as_json: bool) -> None:
    """Run ENGINE and its FP32 reference on the same clips and compare them; exit 1 over the budget (--max-drop),
    below the agreement floor (--min-agreement) or when any clip's logits are NaN or infinite.

    ENGINE may also be the output folder of device_runner.py (a device where edgefuse cannot be installed), with
    --clips the folder 'edgefuse device-clips' wrote for it: the reference then runs here on the same arrays.

    With --host ENGINE runs on the devices over SSH (the clips preprocessed here and sent as arrays, sharded across
    several hosts, each clip once) and the reference here."""
    from edgefuse.validate import ValidateConfig, validate

    check_io(engines=[engine, reference], inputs=[clips], outputs={report: "report", html: "HTML report"})
    cfg = ValidateConfig(engine=engine, reference=reference, clips=clips, num_clips=num_clips, seed=seed,
                         root=root, workers=workers, max_drop=max_drop, min_agreement=min_agreement, report=report,
                         html=html, per_layer=per_layer, layer_tolerance=layer_tolerance)
    specs = host_specs(hosts, hosts_file)
    if specs:
        from edgefuse.backends.remote.build import RemoteOptions
        from edgefuse.cli.render_remote import render_fleet_validate
        from edgefuse.validate.remote import validate_remote

        fleet = validate_remote(cfg, specs, RemoteOptions(accept_new_host_key=accept_new_host_key), shard=shard)
        click.echo(render_json(fleet.to_dict(per_clip=False)) if as_json else render_fleet_validate(fleet))
        if not fleet.passed:
            sys.exit(1)
        return
    if shard is not None:
        from edgefuse.errors import EdgefuseError

        raise EdgefuseError("--shard is for --host (clips per shard sent to a device)")
    rep = validate(cfg)
    click.echo(render_json(rep.to_dict(per_clip=False)) if as_json else render_validate(rep))
    if not rep.passed:
        sys.exit(1)
