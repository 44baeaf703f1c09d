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
