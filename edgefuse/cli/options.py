"""Option groups shared by several commands, defined once."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

F = Callable[..., Any]


def model_options(f: F) -> F:
    """--checkpoint, --num-classes, --segments, --size: what builds a model."""
    for opt in reversed([
        click.option("--checkpoint", "-c", type=click.Path(path_type=Path, dir_okay=False),
                     help="Checkpoint: official AdaFuse, GSF or TSM release, or edgefuse's own."),
        click.option("--num-classes", type=click.IntRange(min=1),
                     help="Classes (default: the checkpoint's, else 174)."),
        click.option("--segments", type=click.IntRange(min=1), help="Segments per clip T (default 8)."),
        click.option("--size", type=click.IntRange(min=32), help="Input height and width (default 224)."),
    ]):
        f = opt(f)
    return f


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")(f)


_READ_OPTIONS = ("classes", "frame_template", "frame_start", "sampling_clock", "min_frames", "allow_outside_root",
                 "clip_format", "split", "class_order")
# --format's choices, written out so that --help imports no decoder: "auto", "tsn" and edgefuse.clips.benchmarks.FORMATS
CLIP_FORMATS = ("auto", "tsn", "sthv1", "sthv2", "jester", "kinetics", "ucf101", "hmdb51")


def clip_read_options(argument: str = "clips") -> Callable[[F], F]:
    """--classes, --frame-template, --frame-start, --sampling, --min-frames, --allow-outside-root, --format, --split,
    --class-order: how a clip source is read. The command receives its ``argument`` (the source's path) as an
    :class:`edgefuse.clips.ClipSource` carrying them, a Path that every library call taking clips hands on
    to ``edgefuse.clips.open``; the options themselves do not reach the command."""
    def deco(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            opts = {key: kwargs.pop(key) for key in _READ_OPTIONS}
            if kwargs.get(argument) is not None:
                from edgefuse.clips import DEFAULT_TEMPLATE, ClipSource  # decoders only when a command runs

                kwargs[argument] = ClipSource.of(
                    kwargs[argument], classes=opts["classes"], frame_start=opts["frame_start"],
                    frame_template=opts["frame_template"] or DEFAULT_TEMPLATE, clock=opts["sampling_clock"],
                    min_frames=opts["min_frames"], allow_outside_root=opts["allow_outside_root"],
                    format=None if opts["clip_format"] == "auto" else opts["clip_format"], split=opts["split"],
                    class_order=opts["class_order"])
            return f(*args, **kwargs)

        wrapped: F = command
        for opt in reversed([
            click.option("--classes", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                         help="Class names: a file with one name per line (label = line index), or the "
                              "Something-Something V2 labels JSON (a V2 list's labels come from its templates); "
                              "a benchmark annotation finds its own labels file beside it."),
            click.option("--frame-template", metavar="TEMPLATE",
                         help="File names of the frames in frame folders: img_%05d.jpg (printf) or img_{:05d}.jpg "
                              "[%05d.jpg, Something V1 / Jester; Kinetics-style folders: img_%05d.jpg]."),
            click.option("--frame-start", default=1, show_default=True, type=click.IntRange(min=0),
                         help="Number of the first frame file in a frame folder."),
            click.option("--sampling", "sampling_clock", type=click.Choice(["index", "time"]), default="index",
                         show_default=True,
                         help="Place the segments on frame numbers (the official loaders) or on the videos' "
                              "timestamps (variable-frame-rate video: phones, screen recordings)."),
            click.option("--min-frames", default=3, show_default=True, type=click.IntRange(min=1),
                         help="Skip clips with fewer frames (any source; clips with fewer frames than segments "
                              "repeat frames)."),
            click.option("--allow-outside-root", is_flag=True,
                         help="Accept list entries that leave the root (absolute paths, '../'); refused by default."),
            click.option("--format", "clip_format", type=click.Choice(CLIP_FORMATS), default="auto", show_default=True,
                         help="Format of the clip source: judged from its name and content, or forced: a TSN list "
                              "(tsn) or a benchmark's annotation as downloaded (Something-Something V1 / V2, Jester, "
                              "Kinetics CSV, UCF101 / HMDB51 split files)."),
            click.option("--split", metavar="N|trainN|testN",
                         help="UCF101 / HMDB51: which split to read [the file's, else test split 1]; Kinetics: the "
                              "CSV's split column value to keep."),
            click.option("--class-order", type=click.Choice(["sorted", "file"]),
                         help="Something-Something V1 / Jester class order: the labels file's names sorted "
                              "(TSM, GSF, TRN checkpoints) or its own order (AdaFuse, mmaction2) [the model's: "
                              "file for a graph of an official AdaFuse checkpoint, else sorted]."),
        ]):
            wrapped = opt(wrapped)
        return wrapped
    return deco


def clip_options(default_num: int) -> Callable[[F], F]:
    """--clips, --root, --num-clips, --seed, --workers: which benchmark clips, sampled from the graph's metadata;
    and how to read them (:func:`clip_read_options`: ``clips`` arrives as a ClipSource)."""
    def deco(f: F) -> F:
        f = clip_read_options("clips")(f)
        for opt in reversed([
            click.option("--clips", "clips", required=True, type=click.Path(path_type=Path, exists=True),
                         help="Clip source: a TSN list file, a folder of videos, of class folders or of frame "
                              "folders, a video, a benchmark's annotation file (Something-Something V1 / V2, Jester, "
                              "Kinetics, UCF101, HMDB51), or an .npz ('edgefuse clips' summarises one)."),
            click.option("--root", type=click.Path(path_type=Path, file_okay=False),
                         help="Root of the list file's relative paths (default: the list file's folder; for a "
                              "benchmark annotation, the folder of its frames / videos found beside it)."),
            click.option("--num-clips", default=default_num, show_default=True, type=click.IntRange(min=1),
                         help="Class-balanced subset size."),
            click.option("--seed", default=0, show_default=True, help="Seed of the subset (same seed, same clips)."),
            click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
                         help="Decoding processes."),
        ]):
            f = opt(f)
        return f
    return deco


def same_reading(clips: Path, other: Path | None) -> Path | None:
    """``other`` (a second clip source, e.g. calibrate's --holdout) read with the options ``clips`` carries."""
    with_source = getattr(clips, "with_source", None)
    return other if other is None or with_source is None else with_source(other)


def remote_options(what: str) -> Callable[[F], F]:
    """--host, --hosts-file, --accept-new-host-key: the devices to reach over SSH (``what``: what runs there)."""
    def deco(f: F) -> F:
        for opt in reversed([
            click.option("--host", "hosts", multiple=True, metavar="USER@HOST[:PORT]|NAME",
                         help=f"{what} on this device over SSH: USER@HOST[:PORT] or a name from --hosts-file; "
                              "repeatable, the hosts run in parallel."),
            click.option("--hosts-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                         help="TOML with a [hosts] table (nano = \"jetson@10.0.0.5\"); without --host: every host "
                              "in it."),
            click.option("--accept-new-host-key", is_flag=True,
                         help="Add the key of a host not yet in ~/.ssh/known_hosts (a changed key is always "
                              "refused)."),
        ]):
            f = opt(f)
        return f
    return deco


def host_specs(hosts: tuple[str, ...], hosts_file: Path | None) -> list[Any]:
    """The HostSpecs of --host / --hosts-file (every host of the file when no --host is given); [] for neither."""
    if not hosts and hosts_file is None:
        return []
    from edgefuse.backends.remote.hosts import check_unique, load_hosts_file, resolve_hosts

    if hosts:
        return resolve_hosts(hosts, hosts_file)
    assert hosts_file is not None
    return check_unique(list(load_hosts_file(hosts_file).values()))
