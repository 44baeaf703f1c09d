"""Checks every command runs on its arguments before any work: the graphs it takes are edgefuse video models, and
each output can be written where it goes and is none of the inputs (one ``error:`` line each)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def check_io(*, graphs: Iterable[Path] = (), engines: Iterable[Path | None] = (),
             outputs: Mapping[Path | None, str] | None = None, folders: Mapping[Path | None, str] | None = None,
             inputs: Iterable[Path | None] = ()) -> None:
    """``graphs``: ONNX graphs (must be edgefuse video models); ``engines``: engines or graphs (a bare .onnx is
    checked as a graph); ``outputs`` / ``folders``: output file / folder -> what it is (None keys skipped);
    ``inputs``: other files read, which no output may be."""
    from edgefuse.utils import check_output

    graphs, engines = list(graphs), list(engines)
    if graphs or any(e is not None for e in engines):
        from edgefuse.graph.io import check_graph_file  # imports onnx (a second); only when there are graphs
    for g in graphs:
        check_graph_file(g)
    for e in engines:
        if e is not None:
            check_graph_file(e, engine_ok=True)
    read = [*graphs, *engines, *inputs]
    for items, folder in ((outputs or {}, False), (folders or {}, True)):
        for path, what in items.items():
            if path is not None:
                check_output(path, inputs=read, what=what, folder=folder)
