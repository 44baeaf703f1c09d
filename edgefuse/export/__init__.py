"""Export: trace a model into a checked, TensorRT-ready ONNX graph (static, dynamic, folded or streaming)."""
from edgefuse.export.api import export
from edgefuse.export.config import ExportConfig, list_presets, load_preset, make_config
from edgefuse.export.report import ExportReport
from edgefuse.graph.metadata import read_metadata, set_metadata

__all__ = ["ExportConfig", "ExportReport", "export", "list_presets", "load_preset", "make_config",
           "read_metadata", "set_metadata"]
