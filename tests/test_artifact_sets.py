"""Artifacts written as sets: an engine and its sidecar (a calibrated graph and its report, a graph and its external
data) appear together or not at all, Ctrl-C at any moment included.

The interruption is faked (a KeyboardInterrupt raised from a patched os.replace / os.chmod / write call, or a real
SIGINT sent to a subprocess); the file system and edgefuse are real. After each interruption the pair is whole
(both files, the sidecar describing the engine next to it) or absent (or, when a pair was there before, still the
old pair), and no staging folder or temporary file remains.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefuse.utils import sha256_file, write_set

SIZE, SEGMENTS = 64, 2


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    path = tmp_path_factory.mktemp("sets") / "m.onnx"
    export(make_config(None, path, model="tsn_resnet18", options={"width": 0.125}, size=SIZE, segments=SEGMENTS,
                       num_classes=5, ranges={}))
    return path


class Interrupt:
    """Counts calls of the patched functions; raises KeyboardInterrupt at call number ``at`` (1-based)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls, self.names = at, 0, []

    def hit(self, name: str) -> None:
        self.calls += 1
        self.names.append(name)
        if self.calls == self.at:
            raise KeyboardInterrupt


@contextmanager
def interrupted(monkeypatch: pytest.MonkeyPatch, trap: Interrupt) -> Iterator[Interrupt]:
    """KeyboardInterrupt before (odd points) or after (even points) each os.replace, os.chmod and Path write."""
    def wrap(name: str, fn: Callable[..., object]) -> Callable[..., object]:
        def patched(*a: object, **k: object) -> object:
            trap.hit(f"before {name}")
            out = fn(*a, **k)
            trap.hit(f"after {name}")
            return out
        return patched

    with monkeypatch.context() as m:
        m.setattr(os, "replace", wrap("os.replace", os.replace))
        m.setattr(os, "chmod", wrap("os.chmod", os.chmod))
        m.setattr(Path, "write_text", wrap("write_text", Path.write_text))
        m.setattr(Path, "write_bytes", wrap("write_bytes", Path.write_bytes))
        yield trap


def _pair_state(engine: Path) -> str:
    side = engine.with_name(engine.name + ".json")
    if not engine.exists() and not side.exists():
        return "none"
    assert engine.is_file() and side.is_file(), f"half a set: engine {engine.exists()}, sidecar {side.exists()}"
    assert json.loads(side.read_text())["engine_sha256"] == sha256_file(engine), "sidecar of another engine"
    return sha256_file(engine)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_write_set_interrupted_at_every_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_set alone: both destinations new, or both as they were, whichever move is interrupted."""
    a, b = tmp_path / "x.engine", tmp_path / "x.engine.json"
    for existing in (False, True):
        if existing:
            a.write_text("old a")
            b.write_text("old b")
        points = 0
        while True:
            points += 1
            with interrupted(monkeypatch, Interrupt(points)) as trap:
                try:
                    with write_set(a, b) as (ta, tb):
                        ta.write_text("new a")
                        tb.write_text("new b")
                except KeyboardInterrupt:
                    pass
            state = (a.read_text() if a.exists() else None, b.read_text() if b.exists() else None)
            assert state in {("new a", "new b"), ("old a", "old b") if existing else (None, None)}, (points, state)
            assert _leftovers(tmp_path, {"x.engine", "x.engine.json"}) == []
            if trap.calls < points:  # this run was not interrupted: every point has been tried
                break
            a.unlink(missing_ok=True)
            b.unlink(missing_ok=True)
            if existing:
                a.write_text("old a")
                b.write_text("old b")
        assert points > 8


def test_write_set_second_move_failure_undoes_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "g.onnx", tmp_path / "g.calib.json"
    a.write_text("old graph")
    real = os.replace
    moved: list[str] = []

    def failing(src: object, dst: object) -> None:
        if Path(str(dst)) == b and not Path(str(src)).name.startswith("old."):
            raise OSError(28, "No space left on device")
        moved.append(str(dst))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"), write_set(a, b) as (ta, tb):
        ta.write_text("new graph")
        tb.write_text("new report")
    assert a.read_text() == "old graph" and not b.exists() and str(a) in moved
    assert _leftovers(tmp_path, {"g.onnx"}) == []


def test_build_engine_interrupted_at_every_write(graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real build-engine command (in-process, ONNX Runtime): a KeyboardInterrupt at each write and move of the
    build leaves the engine and its sidecar whole or absent (the old pair, when one was there)."""
    from edgefuse.cli import cli

    engine = tmp_path / "m.engine"
    argv = ["build-engine", str(graph), "--device", "cpu", "--backend", "onnxruntime", "-o", str(engine)]
    tried = 0
    for existing in (False, True):
        with interrupted(monkeypatch, Interrupt()) as count:
            assert CliRunner().invoke(cli, argv).exit_code == 0
        _pair_state(engine)
        for point in range(1, count.calls + 1):
            if not existing:
                for p in (engine, engine.with_name(engine.name + ".json")):
                    p.unlink(missing_ok=True)
            with interrupted(monkeypatch, Interrupt(point)):
                result = CliRunner().invoke(cli, argv)
            state = _pair_state(engine)
            assert result.exit_code in (0, 130), (point, count.names[point - 1], result.output)
            if result.exit_code == 0 or existing:  # a whole pair: the new one, or the old one kept
                assert state != "none", count.names[point - 1]
            assert _leftovers(tmp_path, {"m.engine", "m.engine.json"}) == [], count.names[point - 1]
            tried += 1
    assert tried >= 20


def test_calibrate_final_write_is_a_set() -> None:
    """The calibrated graph and its .calib.json go through write_set (quantize/calibrate.py's final write)."""
    import inspect

    from edgefuse.quantize import calibrate as mod

    assert "write_set(dest, report_path)" in inspect.getsource(mod)


@pytest.mark.slow
def test_build_engine_sigint_at_many_delays(graph: Path, tmp_path: Path) -> None:
    """A real SIGINT sent to 'python -m edgefuse build-engine' at 24 delays across the whole run."""
    engine = tmp_path / "m.engine"
    argv = [sys.executable, "-m", "edgefuse", "build-engine", str(graph), "--device", "cpu", "--backend",
            "onnxruntime", "-o", str(engine)]
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    full = time.monotonic() - start
    for i in range(24):
        for p in (engine, engine.with_name(engine.name + ".json")):
            p.unlink(missing_ok=True)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(full * (0.5 + 0.6 * i / 23))  # from mid-import to past the end
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        _pair_state(engine)
        assert _leftovers(tmp_path, {"m.engine", "m.engine.json"}) == []
