"""The ONNX Runtime CPU backend: offline-optimized engines, the u8 x s8 INT8 rewrite, the runner."""
