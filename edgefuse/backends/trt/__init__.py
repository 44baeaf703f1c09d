"""The TensorRT backend (NVIDIA GPUs and Jetsons); see :mod:`.adapter`. Imports nothing from
TensorRT until a build or a load asks for it."""
