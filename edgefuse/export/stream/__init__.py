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
states in :func:`state_spec` order. :func:`trace_stream` traces it to ONNX with
inputs ``frame, state.*`` and outputs ``logits, next.state.*`` (batch axis "N"): the one path
``edgefuse export --policy stream`` and :func:`export_stream` share.

Modules: :mod:`.state` (layout and per-forward exchange), :mod:`.modules` (the stream hook
variants), :mod:`.check` (what can stream), :mod:`.model` (:class:`StreamModel`, zero state,
reference loop), :mod:`.trace` (ONNX).
"""
from edgefuse.export.stream.check import check_streamable
from edgefuse.export.stream.model import StreamModel, initial_states, run_stream, state_spec
from edgefuse.export.stream.modules import StreamAdaFuse, StreamShift
from edgefuse.export.stream.state import (
    BATCH_AXIS_NAME,
    INPUT_NAME,
    METADATA_KEY,
    NEXT_PREFIX,
    OUTPUT_NAME,
    StateSpec,
    StreamContext,
)
from edgefuse.export.stream.trace import export_stream, io_names, stream_metadata, trace_stream

__all__ = ["BATCH_AXIS_NAME", "INPUT_NAME", "METADATA_KEY", "NEXT_PREFIX", "OUTPUT_NAME", "StateSpec",
           "StreamAdaFuse", "StreamContext", "StreamModel", "StreamShift", "check_streamable", "export_stream",
           "initial_states", "io_names", "run_stream", "state_spec", "stream_metadata", "trace_stream"]
