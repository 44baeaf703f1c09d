"""Precision in the graph: symmetric INT8 Q/DQ and FP16, calibrated on benchmark clips.

``calibrate(CalibrateConfig(...))`` is what ``edgefuse calibrate`` runs; the pieces are
:mod:`.stats` (histograms and thresholds), :mod:`.qdq` (Q/DQ placement), :mod:`.fp16`,
:mod:`.evaluate` (FP32 vs candidate), :mod:`.trtcache` (TensorRT calibration caches), :mod:`.inputs`
(graph, clips, statistics cache) and :mod:`.report` (the typed report).
"""
from __future__ import annotations

from edgefuse.quantize.calibrate import calibrate
from edgefuse.quantize.config import DEFAULT_EXCLUDES, CalibrateConfig
from edgefuse.quantize.report import CalibrateReport, CalibrateResult

__all__ = ["DEFAULT_EXCLUDES", "CalibrateConfig", "CalibrateReport", "CalibrateResult", "calibrate"]
