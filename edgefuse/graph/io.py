"""ONNX files in and out: loading with a clear error, atomic saving (external data kept beside it)."""
from __future__ import annotations

from pathlib import Path

import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

__all__ = ["load_onnx", "save_onnx"]


def load_onnx(path: str | Path) -> onnx.ModelProto:
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such ONNX file; check the path")
    try:
        return onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise EdgefuseError(f"{p}: not a readable ONNX model ({type(e).__name__}: {str(e)[:120]}); re-export it") from None


TWO_GB = 2**31 - 1  # protobuf's limit on one serialized graph


def save_onnx(model: onnx.ModelProto, path: str | Path, limit: int = TWO_GB) -> Path:
    """Write ``model`` to ``path`` atomically; graphs over 2 GB (``limit``) keep their weights in
    '<name>.data' beside the graph (written atomically too)."""
    path = Path(path)
    if model.ByteSize() < limit:
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        return path
    data_name = path.name + ".data"
    with atomic_path(path.parent / data_name) as tmp_data, atomic_path(path) as tmp:
        onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=tmp_data.name, size_threshold=1024)
        # point the graph at the final data file name
        reloaded = onnx.load(str(tmp), load_external_data=False)
        for init in reloaded.graph.initializer:
            for entry in init.external_data:
                if entry.key == "location":
                    entry.value = data_name
        onnx.save(reloaded, str(tmp))
    return path
