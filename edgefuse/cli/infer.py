"""``edgefuse infer``: device_runner.py's run (clip folder in, logits folder out) for any engine edgefuse loads."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import json_option
from edgefuse.cli.render import render_infer, render_json


@click.command("infer")
@click.argument("engine", type=click.Path(path_type=Path))
@click.argument("clips_dir", metavar="CLIPS_DIR", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for logits.npy and logits.json (what device_runner.py writes).")
@click.option("--batch", type=click.IntRange(min=1),
              help="Clips per run of a dynamic-batch engine [default: 1]; a static batch runs as built.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0),
              help="Untimed runs of the first batch.")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU backends' threads (default: the engine's saved setting, else the backend's own).")
@click.option("--stream", is_flag=True,
              help="Print each batch's logits and timings on stdout as one '@@edgefuse-batch {json}' line as soon "
                   "as it has run (device_runner.py's --stream lines); nothing else goes to stdout.")
@json_option
def infer_cmd(engine: Path, clips_dir: Path, out_dir: Path, batch: int | None, warmup: int, threads: int | None,
              stream: bool, as_json: bool) -> None:
    """Run ENGINE (any engine edgefuse builds, or an .onnx graph) on CLIPS_DIR, a clip folder from 'edgefuse
    device-clips', and write logits.npy and logits.json to OUT_DIR exactly as device_runner.py does; 'edgefuse
    validate OUT_DIR --reference MODEL.onnx --clips CLIPS_DIR' compares them with the reference."""
    from edgefuse.backends.device_io import StreamBatch
    from edgefuse.backends.infer import InferConfig, infer

    check_io(engines=[engine], inputs=[clips_dir], folders={out_dir: "logits folder"})
    def emit(batch_result: StreamBatch) -> None:
        click.echo(batch_result.line())  # click.echo flushes: the reader gets each line as its batch ends

    result = infer(InferConfig(engine=engine, clips=clips_dir, out=out_dir, batch=batch, warmup=warmup,
                               threads=threads, progress=not stream), on_batch=emit if stream else None)
    # with --stream, stdout carries the stream lines only: the summary goes to stderr
    click.echo(render_json(result.to_dict()) if as_json else render_infer(result), err=stream)
