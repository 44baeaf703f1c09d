"""ONNX Runtime CPU sessions with the settings every stage uses (threads, spinning, optimization level)."""
from __future__ import annotations

import onnx


def session_options(threads: int | None = None, optimize: bool = True, profile: bool = False,  # type: ignore[no-untyped-def]
                    stop_spinning: bool = True):
    """ONNX Runtime CPU session options: ``threads`` intra-op threads, all graph optimizations or none
    (an engine was optimized when it was built). ``threads=None`` (or 0) leaves the count to ONNX
    Runtime: one thread per physical core, pinned to it.

    The pool's threads spin while a run is in progress and stop when it ends
    (``session.force_spinning_stop``). ONNX Runtime's default keeps them spinning after the run, which
    costs nothing measurable alone but slows any other session of the process run in turn: the zoo TSN
    FP32 engine took 2.7 ms alone, 4.0-6.6 ms beside a second session with the default, 2.6-2.8 ms with
    spinning stopped at the end of each run (alone too: 2.6 ms; TSM-R50 INT8 113 vs 111 ms; docs/cpu_settings.md).
    That is what ``edgefuse bench``, ``build-engine --backend auto``, validate and the demo do.
    ``stop_spinning=False`` keeps ONNX Runtime's default (benchmarks/cpu_settings.py compares them)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.force_spinning_stop", "1" if stop_spinning else "0")
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    opts.enable_profiling = profile
    return opts


def ort_session(model: onnx.ModelProto | str | bytes, threads: int | None = None, optimize: bool = True):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session of ``model`` (a graph, a path or serialized bytes) with :func:`session_options`."""
    import onnxruntime as ort

    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(payload, session_options(threads or None, optimize),
                                providers=["CPUExecutionProvider"])
