"""ONNX Runtime engines: the graph optimized offline for this CPU and saved, so loading it does not
optimize again, with the session settings in the sidecar."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from edgefuse.backends.ort.cpu import cpu_identity
from edgefuse.backends.sidecar import Sidecar, check_compatible, check_engine_bytes, read_sidecar
from edgefuse.errors import EdgefuseError
from edgefuse.graph.ort import session_options
from edgefuse.graph.runner import OrtRunner
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)


def ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def optimize_offline(model: onnx.ModelProto, dest: Path, threads: int | None) -> None:
    """Let ONNX Runtime apply every graph optimization for this CPU and save the result to ``dest``."""
    import onnxruntime as ort

    opts = session_options(threads, optimize=True)
    opts.optimized_model_filepath = str(dest)
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    if not dest.is_file():
        raise EdgefuseError(f"{dest}: ONNX Runtime did not write the optimized graph; check the disk and retry")


CPU_INT8_MODES = ("auto", "exact", "qdq")


def saved_threads(settings: dict[str, Any]) -> int | None:
    """The intra-op thread count an engine's sidecar records: an int, or None for ONNX Runtime's default (one per
    physical core, pinned). Sidecars written before it was typed hold a sentence there, read as the default."""
    saved = settings.get("intra_op_num_threads")
    return saved if isinstance(saved, int) and not isinstance(saved, bool) and saved > 0 else None


def build_ort(model: onnx.ModelProto, output: Path, threads: int | None, int8: str | None = None) -> dict[str, Any]:
    """Write the engine to ``output`` (atomically); return the settings for the sidecar. ``int8``
    (INT8 graphs, :mod:`edgefuse.backends.ort.int8`): "auto" runs the calibrated grid on the
    u8 x s8 kernels with every exact move, and quantizes the convolutions no QuantizeLinear follows
    on the grids the calibration recorded for them; "exact" adds no rounding the Q/DQ graph lacks; "qdq" keeps the
    graph's int8 Q/DQ as it is."""
    from edgefuse.backends.ort.layout import stride_one_pools

    rewrite = None
    model = stride_one_pools(model)  # exact: ceil mode means nothing at stride 1, and it costs ONNX Runtime 6x
    if int8 not in (None,) + CPU_INT8_MODES:
        raise EdgefuseError(f"cpu_int8 {int8!r}: use auto (u8 x s8 kernels, every convolution quantized), "
                            "exact (no rounding beyond the Q/DQ graph's) or qdq (the Q/DQ graph as it is)")
    if int8 in ("auto", "exact"):
        from edgefuse.backends.ort.int8 import cpu_int8_graph, u8s8_exact_here
        from edgefuse.graph.metadata import read_metadata

        ranges = read_metadata(model).get("cpu_int8_ranges") if int8 == "auto" else None
        if int8 == "auto" and not ranges:
            log.warning("the INT8 graph carries no calibrated grids for its convolution outputs (calibrated by "
                        "another tool or an older edgefuse): convolutions no QuantizeLinear follows stay FP32 on the "
                        "CPU; calibrate the graph again with edgefuse for the faster engine")
        signed = u8s8_exact_here()
        model = cpu_int8_graph(model, ranges, signed_weights=signed, fast_pools=int8 == "auto")
        added = sum(n.name.endswith("_cpu_Q") for n in model.graph.node)
        kernels = ("weights int8: the calibrated grid on ONNX Runtime's u8 x s8 kernels" if signed else
                   "weights uint8 (zero point 128): the calibrated grid on ONNX Runtime's u8 x u8 kernels (this CPU "
                   "has no VNNI/AMX, and its u8 x s8 kernel saturates)")
        pools = sum(n.name.endswith("_dw") and n.op_type == "Conv" for n in model.graph.node)
        gated = len({n.name.rsplit("_out_grid_Q", 1)[0] for n in model.graph.node if n.name.endswith("_out_grid_Q")})
        rewrite = (f"activations uint8 (zero point 128), {kernels}; quantization moved after each convolution where "
                   "exact"
                   + (f"; {added} convolution outputs quantized on their calibrated grids (not in the Q/DQ graph)"
                      if ranges else "; no rounding beyond the Q/DQ graph's")
                   + (f"; {pools} average pools as depthwise integer convolutions" if pools else "")
                   + (f"; {gated} gating products, sums and pools (GSF) on their calibrated grids" if gated else ""))
    with atomic_path(output) as tmp:
        optimize_offline(model, tmp, threads)
    return {"int8_rewrite": rewrite, "intra_op_num_threads": threads or None,  # None: ONNX Runtime's default
            "inter_op_num_threads": 1, "execution_mode": "sequential",
            "graph_optimization_level": "all, applied offline (the engine loads with optimizations off)",
            "providers": ["CPUExecutionProvider"]}


def load_ort_engine(path: Path, threads: int | None = None, extra_outputs: Sequence[str] = ()) -> OrtRunner:
    """An engine from build_ort, after checking its sidecar against this machine."""
    sidecar: Sidecar = read_sidecar(path)
    if sidecar.backend != "onnxruntime":
        raise EdgefuseError(f"{path}: a {sidecar.backend} engine, not an ONNX Runtime one")
    check_compatible(path, sidecar, ort_version(), cpu_identity())
    check_engine_bytes(path, sidecar)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises its own untyped errors
        raise EdgefuseError(f"{path}: not a readable ONNX Runtime engine ({type(e).__name__}); rebuild it") from None
    threads = threads or saved_threads(sidecar.settings)
    return OrtRunner(model, extra_outputs=extra_outputs, threads=threads, optimize=False, info=sidecar.to_dict())
