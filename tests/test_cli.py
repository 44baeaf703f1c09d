"""The command line, run as a user runs it (a real subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def edgefuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefuse", *args], capture_output=True, text=True, timeout=300)


def test_help_and_version() -> None:
    proc = edgefuse("--help")
    assert proc.returncode == 0 and "inspect" in proc.stdout and "models" in proc.stdout
    assert "0.1.0" in edgefuse("--version").stdout


def test_models_lists_the_zoo_with_macs() -> None:
    proc = edgefuse("models", "gsf_*")
    assert proc.returncode == 0, proc.stderr
    assert "gsf_resnet50" in proc.stdout and "tsm_resnet50" not in proc.stdout
    rows = json.loads(edgefuse("models", "tsn_resnet50", "--json").stdout)["models"]
    assert rows[0]["gmacs_frame"] == pytest.approx(4.0875, abs=1e-3)


@pytest.mark.slow  # ~9 s
def test_inspect_adafuse_reports_decisions(tmp_path) -> None:
    clips = tmp_path / "clips.npz"
    np.savez(clips, clips=np.random.default_rng(0).standard_normal((2, 4, 3, 64, 64)).astype(np.float32))
    proc = edgefuse("inspect", "adafuse_tsn_resnet18", "--segments", "4", "--size", "64", "--clips", str(clips))
    assert proc.returncode == 0, proc.stderr
    assert "layer4.1" in proc.stdout and "saved" in proc.stdout
    report = json.loads(edgefuse("inspect", "adafuse_tsn_resnet18", "--segments", "4", "--size", "64",
                                 "--clips", str(clips), "--json").stdout)
    blocks = report["decisions"]["blocks"]
    assert len(blocks) == 8
    for b in blocks:
        assert abs(b["skip"] + b["reuse"] + b["keep"] - 1) < 1e-6
    assert 0 <= report["decisions"]["saving_pct"] <= 100
    assert report["config"]["scale_size"] == 64 * 256 // 224


def test_inspect_plain_model() -> None:
    proc = edgefuse("inspect", "tsm_mobilenetv2")
    assert proc.returncode == 0
    assert "params      2.447 M" in proc.stdout


def test_bad_inputs_give_one_error_line(tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, frames=np.zeros((1, 2)))
    for args, needle in [
        (("inspect", "nosuchmodel"), "unknown model"),
        (("models", "zzz*"), "no model matches"),
        (("inspect", "adafuse_tsn_resnet18", "--clips", str(bad)), "no 'clips' array"),
    ]:
        proc = edgefuse(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_status_lines_print_plain_and_warnings_as_warning() -> None:
    """Library status lines (INFO) show at the default verbosity without a level prefix, warnings as
    'warning: ...', edgefuse's debug lines only with -v, other libraries' INFO never; the command leaves the
    process's logging as it found it."""
    import logging

    import click
    from click.testing import CliRunner

    from edgefuse.cli import cli

    @click.command("log-probe")
    def probe() -> None:
        log = logging.getLogger("edgefuse.probe")
        log.info("timing the engines")
        log.warning("clocks not pinned")
        log.debug("a detail")
        logging.getLogger("otherlib").info("chatter")

    cli.add_command(probe)
    root_before = (logging.getLogger().level, list(logging.getLogger().handlers), logging.getLogger("edgefuse").level)
    try:
        res = CliRunner().invoke(cli, ["log-probe"])
        assert res.exit_code == 0, res.output
        lines = res.stderr.splitlines()
        assert "timing the engines" in lines and "warning: clocks not pinned" in lines, res.stderr
        assert "WARNING" not in res.stderr and "a detail" not in res.stderr and "chatter" not in res.stderr
        verbose = CliRunner().invoke(cli, ["-v", "log-probe"])
        assert "debug edgefuse.probe: a detail" in verbose.stderr.splitlines() and "chatter" not in verbose.stderr
    finally:
        del cli.commands["log-probe"]
    after = (logging.getLogger().level, list(logging.getLogger().handlers), logging.getLogger("edgefuse").level)
    assert after == root_before
