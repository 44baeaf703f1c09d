"""``edgefuse validate``: an engine against its FP32 reference on the same clips.

The clips are sampled and preprocessed from the engine's metadata (the training-time sampling).
Reported: top-1 / top-5 of both with labels, top-1 agreement, logit cosine similarity, max absolute
error and KL divergence, the classes whose accuracy moved most, and for AdaFuse the decision flip
rate and the skip / reuse / keep fractions of every block. The JSON keeps every clip's figures so
each summary can be recomputed; the per-layer check names the first tensor where the engine departs
from the reference (ONNX Runtime engines: intermediate tensors exposed in both graphs).

Modules: :mod:`.run` (the config and the run), :mod:`.compare` (logit figures), :mod:`.policy`
(AdaFuse decisions and MACs), :mod:`.per_layer`, :mod:`.report` (the typed report), :mod:`.html`.
"""
from __future__ import annotations

from edgefuse.validate.report import ValidateReport
from edgefuse.validate.run import ValidateConfig, validate

__all__ = ["ValidateConfig", "ValidateReport", "validate"]
