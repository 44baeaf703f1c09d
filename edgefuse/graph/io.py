"""ONNX files in and out: loading with a clear error, atomic saving (external data kept beside it)."""
from __future__ import annotations

from pathlib import Path

import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path, write_set

__all__ = ["check_graph_file", "load_onnx", "save_onnx"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The ONNX model at ``path`` with its external data; one error line for a missing, empty, non-ONNX or
    truncated file, or external data that is not where the graph says (the full path named)."""
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such ONNX file; check the path")
    if p.stat().st_size == 0:
        raise EdgefuseError(f"{p}: empty file (0 bytes), not an ONNX model; export it again (edgefuse export)")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise EdgefuseError(f"{p}: not a readable ONNX model ({_first_line(e)}); the file is truncated or not ONNX: "
                            "export it again") from None
    if model.ir_version == 0 or not model.graph.node:
        raise EdgefuseError(f"{p}: not an ONNX model (no graph in it); the file is truncated or not ONNX: export it "
                            "again")
    locations = {entry.value for init in model.graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL
                 for entry in init.external_data if entry.key == "location"}
    for loc in sorted(locations):
        full = (p.parent / loc).resolve()
        if not full.is_file():
            raise EdgefuseError(f"{p}: its weights are in the external data file {full}, which is missing; copy "
                                f"{loc} beside the graph as it was exported, or export the graph again")
    if locations:
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except Exception as e:  # noqa: BLE001 - onnx's checker errors and OSError alike
            raise EdgefuseError(f"{p}: cannot read its external data in {p.parent.resolve()} ({_first_line(e)}); "
                                "copy the data file beside the graph again, or export the graph again") from None
    return model


def check_graph_file(path: str | Path, *, engine_ok: bool = False) -> None:
    """For commands taking a graph: refuse, before any work, a file that is not an edgefuse video model (one
    line). ``engine_ok``: the argument may be an engine too (a file with a sidecar beside it, or not named
    .onnx), which the engine loader checks instead."""
    from edgefuse.graph.query import check_clip_graph

    p = Path(path)
    if engine_ok and (not p.is_file() or p.suffix.lower() != ".onnx" or p.with_name(p.name + ".json").is_file()):
        return
    check_clip_graph(load_onnx(p), p)


TWO_GB = 2**31 - 1  # protobuf's limit on one serialized graph


def save_onnx(model: onnx.ModelProto, path: str | Path, limit: int = TWO_GB) -> Path:
    """Write ``model`` to ``path`` atomically; graphs over 2 GB (``limit``) keep their weights in
    '<name>.data' beside the graph (the two written as a set)."""
    path = Path(path)
    if model.ByteSize() < limit:
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        return path
    data_name = path.name + ".data"
    with write_set(path, path.parent / data_name) as (tmp, _):  # the graph and its data appear together
        onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data_name, size_threshold=1024)
    return path
