"""Atomic outputs: an interrupted write leaves nothing behind; large graphs get external data."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefuse.graph.io import save_onnx
from edgefuse.graph.ort import ort_session
from edgefuse.utils import atomic_path


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path, exc: BaseException) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_text("previous")
    with pytest.raises(type(exc)):
        with atomic_path(dest) as tmp:
            tmp.write_text("half-writ")
            raise exc
    assert dest.read_text() == "previous"  # the old artifact is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_atomic_file_gets_normal_permissions(tmp_path) -> None:
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_large_graphs_keep_weights_beside_the_graph(tmp_path) -> None:
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "big.onnx"
    save_onnx(model, path, limit=1024)  # pretend 1 KB is the 2 GB protobuf limit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert path.stat().st_size < 4096 * 4
    x = np.ones((1, 64), np.float32)
    y = ort_session(str(path)).run(None, {"x": x})[0]
    assert np.allclose(y, x @ numpy_helper.to_array(w))
    assert onnx.load(str(path)).graph.initializer[0].name == "w"


# --- progress display ---------------------------------------------------------------------------------------------


def test_progress_writes_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefuse.progress import Progress, progress

    monkeypatch.delenv("EDGEFUSE_PROGRESS", raising=False)
    bar = Progress(20, "work")
    for _ in range(20):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 11  # 0 %, then one line per tenth
    assert lines[-1].startswith("work: 20/20 (100%)") and bar.n == 20
    assert list(progress(iter(range(3)), "no total")) == [0, 1, 2]  # no total: no lines, items unchanged
    assert capsys.readouterr().err == ""


def test_progress_draws_a_bar_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from edgefuse.progress import progress

    monkeypatch.delenv("EDGEFUSE_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert list(progress(range(4), "bar")) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "\r" in err and "bar: 100%" in err and "4/4" in err


def test_progress_turned_off(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefuse.progress import Progress, progress

    monkeypatch.setenv("EDGEFUSE_PROGRESS", "0")
    assert list(progress(range(5), "off", enabled=True)) == list(range(5))
    monkeypatch.delenv("EDGEFUSE_PROGRESS")
    bar = Progress(5, "off", enabled=False)
    bar.update(5)
    bar.close()
    assert capsys.readouterr().err == "" and bar.n == 5
