"""Option groups shared by several commands, defined once."""
from __future__ import annotations

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


def clip_options(default_num: int) -> Callable[[F], F]:
    """--clips, --root, --num-clips, --seed, --workers: which benchmark clips, sampled from the graph's metadata."""
    def deco(f: F) -> F:
        for opt in reversed([
            click.option("--clips", "clips", required=True, type=click.Path(path_type=Path, exists=True),
                         help="Clip source: a TSN list file, a folder of videos or frame folders, a V2 JSON, "
                              "or an .npz."),
            click.option("--root", type=click.Path(path_type=Path, file_okay=False),
                         help="Root of the list file's relative paths (default: the list file's folder)."),
            click.option("--num-clips", default=default_num, show_default=True, type=click.IntRange(min=1),
                         help="Class-balanced subset size."),
            click.option("--seed", default=0, show_default=True, help="Seed of the subset (same seed, same clips)."),
            click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
                         help="Decoding processes."),
        ]):
            f = opt(f)
        return f
    return deco


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
