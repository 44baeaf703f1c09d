"""The plain runner of ONNX graphs and ONNX Runtime engines on clips (validate, bench, calibrate).

A clip graph takes (N, T, 3, H, W) and gives logits (N, K); a static batch dimension is honoured
by running clips in chunks of that size (the last one padded). A stream graph (metadata
``stream_states``) takes one frame and its state tensors: :meth:`OrtRunner.run` feeds the frames
one by one from zero state and averages the per-frame logits, as the clip model does.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.metadata import read_metadata
from edgefuse.graph.ort import ort_session
from edgefuse.graph.query import dims, graph_inputs, producers, with_outputs
from edgefuse.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    logits: np.ndarray  # (N, classes)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, ...) stacked per clip


def batch_chunks(clips: np.ndarray, batch: int | None, default: int = 1) -> list[tuple[np.ndarray, int]]:
    """(chunk, real clips in it): ``clips`` cut to a graph's static ``batch`` (the last chunk padded
    by repeating its last clip), or to ``default`` clips per run when the batch is dynamic."""
    step = batch or default
    out = []
    for i in range(0, len(clips), step):
        chunk = clips[i:i + step]
        n = len(chunk)
        if batch and n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])  # (batch, T, 3, H, W)
        out.append((np.ascontiguousarray(chunk, dtype=np.float32), n))
    return out


def logits_only(backend: str, logits: np.ndarray, tensors: Sequence[str]) -> Outputs:
    """``run_logits_and`` of a runner that exposes no intermediate tensors: the logits, or an error when some
    tensors were asked for."""
    if tensors:
        raise EdgefuseError(f"the {backend} runner returns logits only, not intermediate tensors such as "
                            f"{tensors[0]}; compare those on the ONNX graph or an ONNX Runtime engine")
    return Outputs(logits)


class OrtRunner:
    """An ONNX Runtime CPU session over a graph (``onnx.ModelProto`` or a path) with
    ``extra_outputs`` exposed."""

    backend = "onnxruntime"
    gpu_memory_mb: float | None = None

    def __init__(self, model: onnx.ModelProto | str | Path, extra_outputs: Sequence[str] = (),
                 threads: int | None = None, optimize: bool = True, info: dict[str, Any] | None = None) -> None:
        if not isinstance(model, onnx.ModelProto):
            model = onnx.load(str(model))
        self.info = info or {}
        self.timings: dict[str, float] = {}  # ONNX Runtime gives no split of a run
        self.metadata = read_metadata(model) or dict(self.info.get("metadata") or {})
        produced = set(producers(model)) | {i.name for i in model.graph.input}
        extra_outputs = [t for t in extra_outputs if t in produced]  # an optimized engine may have fused some away
        probe = with_outputs(model, extra_outputs)
        self.output = model.graph.output[0].name
        inputs = graph_inputs(model)
        self.input = inputs[0].name
        self.states = [s for s in (self.metadata.get("stream_states") or [])]
        self.input_dims = dims(inputs[0])
        first = self.input_dims[0] if self.input_dims else None
        self.batch = first if isinstance(first, int) and first > 0 else None
        self.session = ort_session(probe, threads, optimize)
        self.names = [o.name for o in self.session.get_outputs()]

    @property
    def is_stream(self) -> bool:
        return bool(self.states)

    def _chunks(self, clips: np.ndarray) -> list[tuple[np.ndarray, int]]:
        return batch_chunks(clips, self.batch)

    def run_all(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for the first chunk of ``clips`` (statistics collection). A stream graph runs the chunk's
        frames one by one from zero state, and each output is its frames concatenated on axis 0."""
        chunk, _ = self._chunks(clips)[0]
        if not self.is_stream:
            return dict(zip(self.names, self.session.run(None, {self.input: chunk})))
        frames: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        for outs in self._frames(chunk):
            for name, value in outs.items():
                frames[name].append(value)
        return {name: np.concatenate(values) for name, values in frames.items()}

    def _frames(self, clips: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """Stream graphs: every output of each frame of ``clips`` (N, T, 3, H, W), frame by frame from zero
        state, each frame's next states fed to the next."""
        n, t = clips.shape[:2]
        states = {s["name"]: np.zeros((n, *s["shape"][1:]), dtype=s.get("dtype", "float32")) for s in self.states}
        for i in range(t):
            feeds = {self.input: np.ascontiguousarray(clips[:, i], dtype=np.float32), **states}
            outs = dict(zip(self.names, self.session.run(None, feeds)))
            states = {s["name"]: outs[s["next_name"]] for s in self.states}
            yield outs

    def run_frames(self, clips: np.ndarray) -> np.ndarray:
        """Stream graphs: per-frame logits (N, T, K), frame by frame from zero state."""
        return np.stack([outs[self.output] for outs in self._frames(clips)], axis=1)  # (N, T, K)

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs:
        if self.is_stream:  # the frames' logits averaged (N, K), as the clip model does; tensors (N, T * ...)
            per_frame: dict[str, list[np.ndarray]] = {name: [] for name in (self.output, *tensors)}
            for outs in self._frames(clips):  # keep only what is asked for, not every frame's states
                for name, values in per_frame.items():
                    values.append(outs[name])
            return Outputs(np.stack(per_frame[self.output], axis=1).mean(axis=1),
                           {name: np.stack(per_frame[name], axis=1).reshape(len(clips), -1) for name in tensors})
        logits: list[np.ndarray] = []
        kept: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
        bar = Progress(len(clips), desc or "running", enabled=progress)
        for chunk, n in self._chunks(clips):
            outs = dict(zip(self.names, self.session.run(None, {self.input: chunk})))
            logits.append(outs[self.output][:n])
            for name in tensors:
                value = outs[name]
                per_clip = value.reshape(len(chunk), -1) if value.shape[0] % len(chunk) == 0 else value[None]
                kept[name].append(per_clip[:n])
            bar.update(n)
        bar.close()
        return Outputs(np.concatenate(logits), {k: np.concatenate(v) for k, v in kept.items()})

    def run(self, clips: np.ndarray) -> np.ndarray:
        """Logits (N, K) of clips (N, T, 3, H, W)."""
        return self.run_logits_and(clips).logits

    logits = run
