"""The ``edgefuse`` command line: a thin layer that parses options into a config and calls the library.

Heavy optional dependencies are imported inside the commands that need them, so
``edgefuse --help`` works with only the core installed.
"""
from __future__ import annotations

import logging
import sys

import click

from edgefuse import __version__
from edgefuse.errors import EdgefuseError


class EdgefuseGroup(click.Group):
    """Turns an ``EdgefuseError`` into one ``error: ...`` line and its exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EdgefuseError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=EdgefuseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgefuse")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Deploy adaptive temporal video models (AdaFuse, GSF, TSM, TSN) to edge GPUs and CPUs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from edgefuse.cli import calibrate as _calibrate
    from edgefuse.cli import demo as _demo
    from edgefuse.cli import engine as _engine
    from edgefuse.cli import export as _export
    from edgefuse.cli import models as _models
    from edgefuse.cli import synth as _synth
    from edgefuse.cli import train as _train
    from edgefuse.cli import validate as _validate

    cli.add_command(_models.models_cmd)
    cli.add_command(_models.inspect_cmd)
    cli.add_command(_export.export_cmd)
    cli.add_command(_calibrate.calibrate_cmd)
    cli.add_command(_engine.build_engine_cmd)
    cli.add_command(_engine.devices_cmd)
    cli.add_command(_validate.validate_cmd)
    cli.add_command(_validate.bench_cmd)
    cli.add_command(_demo.demo_cmd)
    cli.add_command(_synth.synth_cmd)
    cli.add_command(_train.train_cmd)


_register()


def main() -> None:
    cli(prog_name="edgefuse")


__all__ = ["cli", "main"]
