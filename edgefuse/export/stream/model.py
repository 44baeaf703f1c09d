"""The stream model: a clip model run frame by frame with explicit state; its state layout, zero state and the
frame-by-frame reference loop."""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.stream.check import check_streamable
from edgefuse.export.stream.modules import StreamAdaFuse, StreamShift
from edgefuse.export.stream.state import Slot, StateSpec, StreamContext
from edgefuse.models.layers import AdaFuse, TemporalShift
from edgefuse.models.video import VideoClassifier

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)


class StreamModel(nn.Module):
    """A clip model as a per-frame model: ``(frame, *states) -> (logits, *next_states)``.

    frame (N, 3, H, W), logits (N, K) = the clip model's logits for this frame given
    all earlier frames of the stream. Evaluation only. The clip model is not modified.
    """

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        check_streamable(model)
        self.model = copy.deepcopy(model).eval()
        self.context = StreamContext()
        self.slots: tuple[Slot, ...] = tuple(self._install())
        self.context.names = [s.name for s in self.slots]
        log.debug("stream model of %s: %d state tensors", model.config.name, len(self.slots))

    @property
    def name(self) -> str:
        return self.model.config.name

    def _install(self) -> list[Slot]:
        """Swap the copy's stateful hook modules for stream variants; returns their state slots in order."""
        slots: list[Slot] = []
        for block_name, block in self.model.blocks():
            shift, fuse = getattr(block, "shift", None), getattr(block, "adafuse", None)
            if isinstance(shift, TemporalShift):
                block.shift = StreamShift(shift, self.context, len(slots))
                slots.append(Slot(f"state.{block_name}.shift", f"backbone.{block_name}.shift"))
            if isinstance(fuse, AdaFuse):
                block.adafuse = StreamAdaFuse(fuse, self.context, len(slots))
                owner = f"backbone.{block_name}.adafuse"
                slots += [Slot(f"state.{block_name}.adafuse.{part}", owner) for part in ("pooled", "out")]
        return slots

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.slots]

    def forward(self, frame: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.context.probe:
            return self._run(frame, None)
        if len(states) != len(self.slots):
            raise EdgefuseError(
                f"{self.name} stream takes {len(self.slots)} state tensors, got {len(states)}; "
                "start a stream with initial_states(state_spec(model, batch, height, width))"
            )
        return self._run(frame, list(states))

    def _run(self, frame: torch.Tensor, states: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise EdgefuseError(f"a stream frame is (N, 3, H, W), got {tuple(frame.shape)}; pass clips[:, t]")
        self.context.begin(states, len(self.slots))
        try:
            feats = self.model.backbone(frame, 1)  # (N, D)
            logits = self.model.fc(self.model.dropout(feats))  # (N, K)
        except BaseException:
            self.context.reset()
            raise
        return (logits, *self.context.end())


# --- layout, zero state, reference loop -----------------------------------------------------


def _meta_copy(module: M) -> M:
    """A copy of ``module`` with every parameter and buffer on the meta device (no data copied;
    tied weights stay tied)."""
    memo: dict[int, Any] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(module, memo)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def state_spec(stream_model: StreamModel, batch: int, height: int, width: int) -> list[StateSpec]:
    """The states of ``stream_model`` for frames (batch, 3, height, width), found by one
    forward on the meta device (instant, no weights copied)."""
    meta = _meta_copy(stream_model)
    frame = torch.empty(batch, 3, height, width, device="meta")  # (N, 3, H, W)
    with torch.no_grad(), meta.context.probing():
        _, *states = meta(frame)
    return [
        StateSpec(slot.name, tuple(s.shape), _dtype_name(s.dtype), slot.module)
        for slot, s in zip(stream_model.slots, states)
    ]


def initial_states(spec: Sequence[StateSpec], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Zero states: the first frame of a stream."""
    return [torch.zeros(s.shape, dtype=getattr(torch, s.dtype), device=device) for s in spec]


def run_stream(stream_model: StreamModel, clips: torch.Tensor) -> torch.Tensor:
    """clips (N, T, 3, H, W) -> per-frame logits (N, T, K), frame by frame from zero state."""
    if clips.dim() != 5:
        raise EdgefuseError(f"expected clips of shape (N, T, 3, H, W), got {tuple(clips.shape)}")
    n, t, _, h, w = clips.shape
    states = initial_states(state_spec(stream_model, n, h, w), device=clips.device)
    outs = []
    with torch.no_grad():
        for i in range(t):
            logits, *states = stream_model(clips[:, i], *states)  # (N, K), states
            outs.append(logits)
    return torch.stack(outs, dim=1)  # (N, T, K)

