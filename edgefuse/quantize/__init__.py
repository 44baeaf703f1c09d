"""Precision in the graph: symmetric INT8 Q/DQ and FP16, calibrated on benchmark clips.

``calibrate(CalibrateConfig(...))`` is what ``edgefuse calibrate`` runs; the pieces are
:mod:`.stats` (histograms and thresholds), :mod:`.qdq` (Q/DQ placement), :mod:`.fp16`,
:mod:`.evaluate` (FP32 vs candidate) and :mod:`.trtcache` (TensorRT calibration caches).
"""
from __future__ import annotations

from edgefuse.quantize.calibrate import DEFAULT_EXCLUDES, CalibrateConfig, CalibrateResult, calibrate

__all__ = ["DEFAULT_EXCLUDES", "CalibrateConfig", "CalibrateResult", "calibrate"]
