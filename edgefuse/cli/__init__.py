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
        except click.UsageError as e:
            line, code = usage_line(e)
            click.echo(f"error: {line}", err=True)
            ctx.exit(code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def usage_line(e: click.UsageError) -> tuple[str, int]:
    """One line for a command-line error, and its exit code: a path option or argument naming a file that is not
    there (or not the right kind) is bad input (1); any other misuse of the command line is a usage error (2), with
    the help command to run."""
    text = " ".join(e.format_message().split())
    param = getattr(e, "param", None)
    if isinstance(e, click.BadParameter) and param is not None and isinstance(param.type, click.Path):
        return f"{text} Check its spelling, or give the full path.", 1
    where = e.ctx.command_path if e.ctx is not None else "edgefuse"
    return f"{text} See '{where} -h'.", 2


class StatusFormatter(logging.Formatter):
    """Status lines (INFO) as plain text, warnings as ``warning: ...``, errors as ``error: ...``, debug
    lines with the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        if record.levelno >= logging.INFO:
            return text
        return f"debug {record.name}: {text}"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def setup_logging(ctx: click.Context, verbose: int) -> None:
    """edgefuse's status lines (INFO) at the default verbosity, its debug lines with ``-v``, other
    libraries' warnings always and their debug lines with ``-vv``; put back as it was when the command ends
    (so a command run in-process leaves the caller's logging alone)."""
    root, ours = logging.getLogger(), logging.getLogger("edgefuse")
    saved = (root.level, ours.level)
    handler = StderrHandler()
    handler.setFormatter(StatusFormatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    ours.setLevel(logging.DEBUG if verbose >= 1 else logging.INFO)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
    ctx.call_on_close(restore)


@click.group(cls=EdgefuseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgefuse")
@click.option("-v", "--verbose", count=True, help="More log output (-v: edgefuse's debug lines, -vv: every library's).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Deploy adaptive temporal video models (AdaFuse, GSF, TSM, TSN) to edge GPUs and CPUs."""
    setup_logging(ctx, verbose)


def _register() -> None:
    from edgefuse.cli import bench as _bench
    from edgefuse.cli import calibrate as _calibrate
    from edgefuse.cli import clips as _clips
    from edgefuse.cli import demo as _demo
    from edgefuse.cli import device as _device
    from edgefuse.cli import engine as _engine
    from edgefuse.cli import export as _export
    from edgefuse.cli import infer as _infer
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
    cli.add_command(_device.device_clips_cmd)
    cli.add_command(_infer.infer_cmd)
    cli.add_command(_bench.bench_cmd)
    cli.add_command(_demo.demo_cmd)
    cli.add_command(_synth.synth_cmd)
    cli.add_command(_train.train_cmd)
    cli.add_command(_clips.clips_cmd)


_register()


def main() -> None:
    cli(prog_name="edgefuse")


__all__ = ["cli", "main"]
