"""Export: trace a model into a checked, TensorRT-ready ONNX graph (static, dynamic, folded or streaming)."""
from edgefuse.export.api import ExportResult, export
from edgefuse.export.config import ExportConfig, list_presets, load_preset, make_config
from edgefuse.graph.metadata import read_metadata, set_metadata

__all__ = ["ExportConfig", "ExportResult", "export", "list_presets", "load_preset", "make_config",
           "read_metadata", "set_metadata"]
