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
