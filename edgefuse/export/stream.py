"""The "stream" policy mode: a per-frame model with explicit state, for live video.

A causal clip model (``tsm_online_*``, ``adafuse_tsn_*``, ``tsn_*``) computes the
logits of frame t from frames <= t only, so the same per-frame logits can be
computed one frame at a time if every temporal module carries its state from the
previous frame:

- online temporal shift: the previous frame's first ``fold = C // shift_div``
  channels of the block input, (N, fold, H_b, W_b);
- AdaFuse: the previous frame's pooled block input (N, C_in) and its conv1 output
  after bn1+ReLU, before fusion (N, width, H_b, W_b).

Zero state is the first frame (the clip model pads t = -1 with zeros).

``StreamModel`` deep-copies the clip model and swaps, in the copy only, each
stateful hook module for a stream variant that reads its state from a shared
per-forward :class:`StreamContext` and writes its new state there; the backbone
code is not forked. ``StreamModel(frame, *states) -> (logits, *next_states)``,
states in :func:`state_spec` order. :func:`export_stream` traces it to ONNX with
inputs ``frame, state.*`` and outputs ``logits, next.state.*`` (batch axis "N").
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.layers import GSF, AdaFuse, TemporalShift
from edgefuse.models.video import VideoClassifier
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)

HOOK_SLOTS = ("shift", "adafuse", "gsf")
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
class _Slot:
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


def _single_frame(t: int) -> None:
    if t != 1:
        raise RuntimeError(f"stream modules run one frame at a time (t = 1), got t = {t}")


class StreamShift(nn.Module):
    """Online temporal shift for one frame: state = the previous frame's first ``fold`` channels."""

    def __init__(self, shift: TemporalShift, context: StreamContext, index: int) -> None:
        super().__init__()
        self.inner = shift
        self.feeds_downsample = shift.feeds_downsample  # read by the block's _enter
        self.context = context
        self.index = index

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        _single_frame(t)
        fold = self.inner.fold(int(x.shape[1]))  # a constant in the graph: channels are static
        cur = x[:, :fold]  # (N, fold, H, W)
        past = self.context.read(self.index, cur)  # (N, fold, H, W)
        self.context.write(self.index, cur)
        return torch.cat([past, x[:, fold:]], dim=1)  # (N, C, H, W)


class StreamAdaFuse(nn.Module):
    """AdaFuse for one frame, with AdaFuse's own layers, decision and fusion.

    State ``index``: the previous frame's pooled block input (N, C_in); ``index + 1``:
    its conv1 output after bn1+ReLU, before fusion (N, width, H, W).
    """

    def __init__(self, fuse: AdaFuse, context: StreamContext, index: int) -> None:
        super().__init__()
        self.inner = fuse
        self.context = context
        self.index = index

    def policy_logits(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Pooled inputs (N, C_in) of the previous and current frame -> logits (N, width, 3)."""
        return self.inner.policy_from_pooled(prev, cur)  # (N, width, 3)

    def forward(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        _single_frame(t)
        cur = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, C_in)
        prev = self.context.read(self.index, cur)  # (N, C_in)
        prev_out = self.context.read(self.index + 1, out)  # (N, width, H, W)
        self.context.write(self.index, cur)
        self.context.write(self.index + 1, out)
        mask = self.inner.decide(self.policy_logits(prev, cur))  # (N, width, 3)
        if self.inner.record:
            self.inner.last_mask = mask.detach().unsqueeze(1)  # (N, 1, width, 3)
        return self.inner.fuse(out, prev_out, mask)


# --- what can stream --------------------------------------------------------------------------


def _future_lookers(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, what it does) for every module that reads later segments."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, TemporalShift) and not m.online:
            found.append((name, "bidirectional TemporalShift: channels [0, C/shift_div) come from segment t+1"))
        elif isinstance(m, GSF):
            found.append((name, "GSF: gated channels shift from segment t+1 and its 3x3x3 gate spans t-1..t+1"))
    return found


def _alternatives(model: VideoClassifier) -> str:
    bb = model.config.backbone
    causal = [f"tsm_online_{bb}"] + ([f"adafuse_tsn_{bb}"] if bb.startswith("resnet") else [])
    kinds = "tsm_online_*: past-only shift; adafuse_tsn_*: AdaFuse without shift"
    return f"use a causal model: {' or '.join(causal)} ({kinds})"


def _names(items: Sequence[tuple[str, str]], limit: int = 2) -> str:
    names = ", ".join(n for n, _ in items[:limit])
    return names + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_future(model: VideoClassifier) -> None:
    found = _future_lookers(model)
    if found:
        raise EdgefuseError(
            f"{model.config.name} cannot stream frame by frame: it looks at future segments "
            f"({found[0][1]}; in {_names(found)}), which a live stream does not have yet; "
            f"{_alternatives(model)}, or export the clip model instead"
        )


def _check_deterministic(model: VideoClassifier) -> None:
    sampled = [(n, m.decision) for n, m in model.named_modules() if isinstance(m, AdaFuse) and m.decision != "argmax"]
    if sampled:
        raise EdgefuseError(
            f"{model.config.name}: AdaFuse in {_names(sampled)} uses the {sampled[0][1]!r} decision, which samples "
            "noise every frame; a deployed stream needs the deterministic policy: create the model with "
            "decision='argmax' (--decision argmax)"
        )


def _check_slots(model: VideoClassifier) -> None:
    for block_name, block in model.blocks():
        for slot in HOOK_SLOTS:
            m = getattr(block, slot, None)
            if m is not None and not isinstance(m, (TemporalShift, AdaFuse)):
                raise EdgefuseError(
                    f"{model.config.name}: {block_name}.{slot} is a {type(m).__name__}, which has no stream "
                    f"variant; {_alternatives(model)}"
                )


def check_streamable(model: nn.Module) -> None:
    """Raise EdgefuseError unless ``model`` can run frame by frame with carried state.

    Decided from the modules present, not from the model's name.
    """
    if not isinstance(model, VideoClassifier):
        raise EdgefuseError(
            f"stream export needs a video model from edgefuse.models.create_model, got {type(model).__name__}"
        )
    _check_future(model)
    _check_deterministic(model)
    _check_slots(model)


# --- the stream model -------------------------------------------------------------------------


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
        self.slots: tuple[_Slot, ...] = tuple(self._install())
        self.context.names = [s.name for s in self.slots]
        log.info("stream model of %s: %d state tensors", model.config.name, len(self.slots))

    @property
    def name(self) -> str:
        return self.model.config.name

    def _install(self) -> list[_Slot]:
        """Swap the copy's stateful hook modules for stream variants; returns their state slots in order."""
        slots: list[_Slot] = []
        for block_name, block in self.model.blocks():
            if isinstance(getattr(block, "shift", None), TemporalShift):
                block.shift = StreamShift(block.shift, self.context, len(slots))
                slots.append(_Slot(f"state.{block_name}.shift", f"backbone.{block_name}.shift"))
            if isinstance(getattr(block, "adafuse", None), AdaFuse):
                block.adafuse = StreamAdaFuse(block.adafuse, self.context, len(slots))
                owner = f"backbone.{block_name}.adafuse"
                slots += [_Slot(f"state.{block_name}.adafuse.{part}", owner) for part in ("pooled", "out")]
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


def _meta_copy(module: nn.Module) -> nn.Module:
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


# --- ONNX -------------------------------------------------------------------------------------


def _example_inputs(spec: Sequence[StateSpec], batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    frame = torch.randn(batch, 3, height, width, generator=gen)  # (N, 3, H, W)
    return (frame, *(torch.randn(s.shape, generator=gen, dtype=getattr(torch, s.dtype)) for s in spec))


def io_names(spec: Sequence[StateSpec]) -> tuple[list[str], list[str]]:
    """(input names, output names) of the stream graph."""
    return [INPUT_NAME, *(s.name for s in spec)], [OUTPUT_NAME, *(s.next_name for s in spec)]


def export_stream(
    stream_model: StreamModel, path: str | Path, batch: int = 1, height: int = 224, width: int = 224, opset: int = 17
) -> list[StateSpec]:
    """Trace ``stream_model`` to ONNX at ``path`` (atomically); returns the state layout,
    also stored as JSON in the metadata entry ``edgefuse.stream_states``."""
    import onnx

    from edgefuse.graph.metadata import set_metadata

    spec = state_spec(stream_model, batch, height, width)
    inputs, outputs = io_names(spec)
    stream_model.eval()
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # int(x.shape[1]) etc.: static by design
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is legacy, on purpose
            torch.onnx.export(
                stream_model, _example_inputs(spec, batch, height, width), str(tmp), dynamo=False,
                opset_version=opset, input_names=inputs, output_names=outputs,
                dynamic_axes={n: {0: BATCH_AXIS_NAME} for n in inputs + outputs}, do_constant_folding=True,
            )
        facts = {"model": stream_model.name, METADATA_KEY: [s.to_dict() for s in spec]}
        onnx.save(set_metadata(onnx.load(str(tmp)), facts), str(tmp))
    log.info("exported the stream model of %s to %s: %d states, opset %d", stream_model.name, path, len(spec), opset)
    return spec
