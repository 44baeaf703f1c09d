"""``edgefuse synth``."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import click

from edgefuse.errors import EdgefuseError


def parse_formats(text: str) -> tuple[str, ...]:
    """``"frames,videos"`` -> ("frames", "videos")."""
    from edgefuse.lab.synth import FORMATS

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if not formats or not set(formats) <= set(FORMATS):
        raise EdgefuseError(f"synth: --formats {text!r}: use frames, videos or frames,videos")
    return tuple(dict.fromkeys(formats))


def parse_codec_options(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["crf=18", "preset=slow"]`` -> (("crf", "18"), ("preset", "slow"))."""
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise EdgefuseError(f"synth: --codec-option {v!r}: write it as key=value, e.g. crf=18")
        out.append((key.strip(), val.strip()))
    return tuple(out)


@click.command("synth")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Dataset folder to write (must be empty or absent, or an earlier synth dataset with --force).")
@click.option("--frames", default=16, show_default=True, help="Frames per clip.")
@click.option("--size", default=128, show_default=True, help="Frame height and width in pixels.")
@click.option("--train", default=1000, show_default=True, help="Clips in the train split.")
@click.option("--val", default=250, show_default=True, help="Clips in the val split.")
@click.option("--calib", default=256, show_default=True, help="Clips in the calib split (INT8 calibration).")
@click.option("--seed", default=0, show_default=True, help="Seed: same seed, same bytes.")
@click.option("--formats", default="frames,videos", show_default=True,
              help="frames (JPEG folders + train.txt ...), videos (+ train_videos.txt ...), or both.")
@click.option("--codec", default="libx264", show_default=True,
              help="Video encoder (libx264, mpeg4, libvpx, libvpx-vp9).")
@click.option("--ext", help="Video file extension [mp4; webm for libvpx].")
@click.option("--pix-fmt", default="yuv420p", show_default=True, help="Video pixel format (yuv444p keeps full colour).")
@click.option("--fps", default=12, show_default=True, help="Video frame rate.")
@click.option("--codec-option", "-O", "codec_options", multiple=True, metavar="KEY=VALUE",
              help="Encoder option over the defaults (libx264: crf=12 preset=medium), e.g. -O crf=18.")
@click.option("--workers", default=2, show_default=True, help="Processes rendering and encoding clips.")
@click.option("--force", is_flag=True, help="Replace an existing synth dataset at --out.")
def synth_cmd(out: Path, frames: int, size: int, train: int, val: int, calib: int, seed: int, formats: str,
              codec: str, ext: str | None, pix_fmt: str, fps: int, codec_options: tuple[str, ...], workers: int,
              force: bool) -> None:
    """Write a synthetic temporal benchmark: 10 classes in 5 time-reversed pairs, as JPEG frame
    folders and videos with TSN list files (Something-Something V1 / Jester layout)."""
    from edgefuse.cli.checks import check_io
    from edgefuse.lab.synth import SynthConfig, generate

    check_io(folders={out: "dataset folder"})
    cfg = SynthConfig(out=out, frames=frames, size=size, train=train, val=val, calib=calib, seed=seed,
                      formats=parse_formats(formats), codec=codec, ext=ext, pix_fmt=pix_fmt,
                      codec_options=parse_codec_options(codec_options), fps=fps, workers=workers, force=force)
    start = time.monotonic()
    path = generate(cfg)
    click.echo(f"synth: wrote {path}: train {train}, val {val}, calib {calib} clips of {frames} frames at "
               f"{size}x{size} ({', '.join(cfg.formats)}) in {time.monotonic() - start:.1f} s")
