"""OpenVINO on the CPU: an optional second CPU backend (``pip install 'edgefuse[openvino]'``).

The engine file is OpenVINO's compiled model for this CPU (``CompiledModel.export_model``),
imported again at load: the analogue of a TensorRT plan. Precision: OpenVINO's CPU plugin computes
in bf16 by default on CPUs that have it (AVX-512 BF16, AMX); edgefuse pins f32 unless ``bf16`` is
asked for, so an FP32 engine computes in FP32. INT8 comes from the Q/DQ graph (OpenVINO reads
its QuantizeLinear / DequantizeLinear pairs as FakeQuantize and runs those layers in integers).
``build-engine --backend auto`` (the default) times this backend against ONNX Runtime on the
machine that builds and keeps OpenVINO only where it is clearly faster (:mod:`edgefuse.backends.choose`):
on this project's machine that is the small zoo graphs, not the ResNet-50 ones (docs/cpu_engines.md).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

if TYPE_CHECKING:
    from edgefuse.graph.runner import Outputs

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}  # edgefuse precision -> INFERENCE_PRECISION_HINT


def _openvino():  # type: ignore[no-untyped-def]
    try:
        import openvino
    except ImportError:
        raise EdgefuseError("OpenVINO is not installed: pip install 'edgefuse[openvino]' (or build for the CPU "
                            "with the default ONNX Runtime backend)") from None
    return openvino


def openvino_version() -> str:
    return str(_openvino().__version__).split("-")[0]


def compile_properties(precision: str, threads: int | None) -> dict[str, Any]:
    from edgefuse.backends.ort.cpu import physical_cores

    if precision not in PRECISIONS:
        raise EdgefuseError(f"--precision {precision}: OpenVINO engines are fp32, int8 (from a Q/DQ graph) or bf16")
    return {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads or physical_cores())}


def build_openvino(source: Path, output: Path, precision: str, threads: int | None) -> dict[str, Any]:
    """Compile the ONNX graph ``source`` for this CPU and write the compiled model to ``output``."""
    ov = _openvino()
    props = compile_properties(precision, threads)
    core = ov.Core()
    try:
        compiled = core.compile_model(core.read_model(str(source)), "CPU", props)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgefuseError(f"{source}: OpenVINO cannot compile this graph ({first}); build it with the ONNX Runtime "
                            "backend") from None
    blob = compiled.export_model().getvalue()  # a BytesIO
    with atomic_path(output) as tmp:
        tmp.write_bytes(blob)
    return {**props, "default_precision_on_this_cpu": str(core.get_property("CPU", "INFERENCE_PRECISION_HINT")),
            "note": "OpenVINO computes in bf16 by default on CPUs with bf16 support; pinned as above"}


class OpenVinoRunner:
    """A compiled OpenVINO model over clips (N, T, 3, H, W) -> logits (N, K), chunked by the
    graph's static batch like the ONNX Runtime runner."""

    backend = "openvino"
    gpu_memory_mb: float | None = None

    def __init__(self, path: Path, info: dict[str, Any], threads: int | None = None) -> None:
        ov = _openvino()
        self.info = info
        self.metadata = dict(info.get("metadata") or {})
        self.timings: dict[str, float] = {}
        settings = dict(info.get("settings") or {})
        props = {k: settings[k] for k in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS")
                 if k in settings}
        props["INFERENCE_NUM_THREADS"] = str(threads or settings.get("INFERENCE_NUM_THREADS") or 1)
        core = ov.Core()
        with open(path, "rb") as f:
            self.compiled = core.import_model(f.read(), "CPU", props)
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.inputs[0].get_partial_shape()
        self.batch = shape[0].get_length() if shape[0].is_static else None

    def run(self, clips: np.ndarray) -> np.ndarray:
        from edgefuse.graph.runner import batch_chunks

        logits = []
        for chunk, n in batch_chunks(clips, self.batch, default=max(1, len(clips))):
            result = self.request.infer({0: chunk})
            logits.append(np.asarray(result[self.compiled.outputs[0]])[:n])
        return np.concatenate(logits)

    logits = run

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs:
        from edgefuse.graph.runner import logits_only

        return logits_only(self.backend, self.run(clips), tensors)


def load_openvino_engine(path: Path, sidecar: Any, threads: int | None = None) -> OpenVinoRunner:
    from edgefuse.backends.ort.cpu import cpu_identity
    from edgefuse.backends.sidecar import check_compatible, check_engine_bytes

    check_compatible(path, sidecar, openvino_version(), cpu_identity())
    check_engine_bytes(path, sidecar)
    return OpenVinoRunner(path, sidecar.to_dict(), threads)
