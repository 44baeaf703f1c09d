"""Stream state: the layout of the state tensors (:class:`StateSpec`) and their exchange within one forward."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from edgefuse.errors import EdgefuseError

INPUT_NAME = "frame"
OUTPUT_NAME = "logits"
NEXT_PREFIX = "next."
BATCH_AXIS_NAME = "N"
METADATA_KEY = "stream_states"  # edgefuse.stream_states in the ONNX metadata


# --- state layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: graph input ``name``, graph output ``next_name``; axis 0 is the batch."""

    name: str  # e.g. "state.layer1.0.shift", "state.layer1.0.adafuse.pooled"
    shape: tuple[int, ...]  # at the batch it was computed for
    dtype: str  # torch/numpy dtype name, "float32"
    module: str  # the clip model's module that owns it, e.g. "backbone.layer1.0.adafuse"

    @property
    def next_name(self) -> str:
        return NEXT_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "next_name": self.next_name,
            "shape": list(self.shape),
            "batch_axis": 0,
            "dtype": self.dtype,
            "module": self.module,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StateSpec:
        return cls(name=d["name"], shape=tuple(int(s) for s in d["shape"]), dtype=d["dtype"], module=d["module"])


@dataclass(frozen=True)
class Slot:
    """A state without its shape: what StreamModel knows before it runs."""

    name: str
    module: str


# --- per-forward state exchange ---------------------------------------------------------------


class StreamContext:
    """The states of one forward: stream modules read ``inputs[i]`` and write ``outputs[i]``.

    Not re-entrant: one forward at a time per StreamModel. While probing (``inputs`` is
    None), modules read zeros shaped like the state they write: the first frame.
    """

    def __init__(self) -> None:
        self.names: list[str] = []  # state names, for error messages
        self.inputs: list[torch.Tensor] | None = None
        self.outputs: list[torch.Tensor | None] = []
        self.probe = False  # StreamModel.forward(frame) without states: zero state, for shapes

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        self.probe = True
        try:
            yield
        finally:
            self.probe = False

    def begin(self, inputs: list[torch.Tensor] | None, count: int) -> None:
        self.inputs = inputs
        self.outputs = [None] * count

    def read(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """The state ``index``; ``like`` is the new state this frame writes (same shape)."""
        if self.inputs is None:
            return torch.zeros_like(like)
        state = self.inputs[index]
        if not torch.jit.is_tracing() and state.shape != like.shape:
            raise EdgefuseError(
                f"stream state {self.names[index]} is {tuple(state.shape)} but this frame needs "
                f"{tuple(like.shape)}; make the states with state_spec(model, batch, height, width) "
                "for the frames' batch and size (or feed back the previous frame's next states)"
            )
        return state

    def write(self, index: int, value: torch.Tensor) -> None:
        self.outputs[index] = value

    def end(self) -> list[torch.Tensor]:
        missing = [i for i, o in enumerate(self.outputs) if o is None]
        if missing:
            raise RuntimeError(f"stream states {missing} were not written: a hook slot was skipped")
        out = [o for o in self.outputs if o is not None]
        self.reset()
        return out

    def reset(self) -> None:
        self.inputs, self.outputs = None, []

