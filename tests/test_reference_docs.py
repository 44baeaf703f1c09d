"""docs/reference.md documents every option of every command (the clip-reading options shared by the commands that
read clips are documented once, in docs/clips.md, which the reference links to)."""
from __future__ import annotations

from pathlib import Path

import click

from edgefuse.cli import cli

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _options(group: click.Group) -> list[tuple[str, list[str]]]:
    """(command, long option names) for every option of every subcommand, --help aside."""
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        for p in cmd.params:
            longs = [o for o in getattr(p, "opts", []) if o.startswith("--")]
            if isinstance(p, click.Option) and longs and longs != ["--help"]:
                out.append((name, longs))
    return out


def test_every_command_option_is_in_the_reference() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    clips = (DOCS / "clips.md").read_text(encoding="utf-8")
    assert "### Clip-reading options" in clips
    clip_options = clips.split("### Clip-reading options", 1)[1].split("\n#", 1)[0]  # that section only
    options = _options(cli)
    assert len(options) > 100 and any(c == "train" and "--optimizer" in o for c, o in options)
    missing = [f"{c} {o[0]}" for c, o in options
               if not any(f"`{x}" in reference or f"`{x}" in clip_options for x in o)]
    assert not missing, f"options missing from docs/reference.md: {', '.join(missing)}"
