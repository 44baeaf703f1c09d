"""``edgefuse device-clips``: preprocessed clips for the device runner (Jetsons where edgefuse cannot be installed)."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import clip_options, json_option
from edgefuse.cli.render import render_clip_folder, render_json


@click.command("device-clips")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@clip_options(default_num=256)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Clip folder to write (manifest.json + clips-*.npy).")
@json_option
def device_clips_cmd(model: Path, clips: Path, root: Path | None, num_clips: int, seed: int, workers: int,
                     output: Path, as_json: bool) -> None:
    """Sample and preprocess clips as MODEL's metadata says (the graph from export or calibrate) into a folder
    that device_runner.py runs an engine on; 'edgefuse validate RUNNER_OUTPUT --clips FOLDER' compares the result."""
    from edgefuse.backends.device_io import prepare_clip_folder

    check_io(graphs=[model], inputs=[clips], folders={output: "clip folder"})
    folder = prepare_clip_folder(model, clips, output, num_clips=num_clips, seed=seed, root=root, workers=workers)
    click.echo(render_json(folder.to_dict()) if as_json else render_clip_folder(folder))
