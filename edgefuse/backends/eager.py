"""PyTorch eager as a runner: the FP32 reference validate compares against when given a checkpoint,
and the baseline row of bench. The model is rebuilt from an ONNX graph's or engine's metadata
(model name, classes, segments, input size, options) and the checkpoint."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.graph.runner import Outputs


class EagerRunner:
    backend = "pytorch"
    gpu_memory_mb: float | None = None

    def __init__(self, checkpoint: str | Path, metadata: dict[str, Any], threads: int | None = None) -> None:
        import torch

        from edgefuse.models import create_model

        if not metadata.get("model"):
            raise EdgefuseError(f"{checkpoint}: the PyTorch reference is rebuilt from the engine's metadata, which "
                                "names no model; validate against the FP32 .onnx instead")
        if threads:
            torch.set_num_threads(threads)
        options = dict(metadata.get("options") or {})
        if metadata.get("width") is not None:
            options["width"] = metadata["width"]
        self.model = create_model(str(metadata["model"]), checkpoint=checkpoint,
                                  num_classes=metadata.get("num_classes"), num_segments=metadata.get("segments"),
                                  input_size=metadata.get("input_size"), **options).eval()
        self.metadata = dict(metadata)
        self.info = {"backend": "pytorch", "checkpoint": str(checkpoint)}
        self.timings: dict[str, float] = {}

    def run(self, clips: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32))).numpy()

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs:
        from edgefuse.graph.runner import logits_only

        return logits_only(self.backend, self.run(clips), tensors)
