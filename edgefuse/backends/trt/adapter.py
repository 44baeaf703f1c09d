"""The TensorRT adapter: the only module that touches ``tensorrt`` and ``pycuda``.

Kept thin on purpose: TensorRT cannot run where edgefuse is developed and tested (no GPU), so
every decision is made beforehand by pure, tested code (:mod:`edgefuse.backends.plan`), and
this module only carries it out. It uses the API common to TensorRT 8.6, 10.x and 11.x (the
``execute_async_v3`` tensor-address API; no bindings, no calibrators, no ``max_workspace_size``);
code for some versions only sits in functions whose name ends with the versions it serves
(``_trt86``: 8.6 only; ``_trt10plus``: 10.x and 11.x). ``tests/test_backends.py`` checks every TensorRT name used here against the
names exported by NVIDIA's bindings wheel of each version, and mypy checks the module against
the ``tensorrt-stubs`` type stubs. Nothing here has run in edgefuse's CI.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

if TYPE_CHECKING:  # mypy checks this module against NVIDIA's type stubs (tensorrt-stubs)
    import tensorrt as trt

    from edgefuse.graph.runner import Outputs
else:
    trt = None  # bound by import_tensorrt(): importing edgefuse never imports TensorRT

log = logging.getLogger(__name__)

INSTALL_HINT = ("TensorRT's Python package is not installed: on a Jetson it comes with JetPack "
                "(sudo apt install python3-libnvinfer; check with 'dpkg -l | grep nvinfer'), on a desktop GPU "
                "'pip install edgefuse[tensorrt]'")


def import_tensorrt() -> Any:
    """Bind the module-level ``trt`` to the real TensorRT package (an install hint when it is absent;
    type stubs alone, which install an empty ``tensorrt`` namespace, count as absent)."""
    global trt
    try:
        import tensorrt as module
    except ImportError:
        raise EdgefuseError(INSTALL_HINT) from None
    if not hasattr(module, "Builder"):
        raise EdgefuseError(INSTALL_HINT + " (only type stubs are installed here)")
    trt = module
    return module


def import_pycuda() -> Any:
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except ImportError:
        raise EdgefuseError("pycuda is not installed: 'pip install edgefuse[tensorrt]' (on a Jetson, with JetPack's "
                            "CUDA on the PATH)") from None
    return cuda


def tensorrt_version() -> str:
    import_tensorrt()
    return str(trt.__version__)


def gpu_identity() -> dict[str, Any]:
    cuda = import_pycuda()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"name": dev.name(), "compute_capability": f"{major}.{minor}", "memory_gb": round(dev.total_memory() / 2**30, 1)}


# ---------------------------------------------------------------------------------------------
# Building

def _parser_errors(parser: trt.OnnxParser) -> list[str]:
    return [f"node {parser.get_error(i).node()}: {parser.get_error(i).desc()}" for i in range(parser.num_errors)]


def _parser_errors_trt10plus(parser: trt.OnnxParser) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        out.append(f"node {error.node()} ({error.node_name()}, {error.node_operator()}): {error.desc()}")
    return out


def build_engine_file(onnx_path: Path, output: Path, trt_major: str, flags: Sequence[str],
                      network_flags: Sequence[str], profiles: Mapping[str, Sequence[Sequence[int]]],
                      workspace_mb: int | None = None, dla_core: int | None = None, gpu_fallback: bool = False,
                      timing_cache: Path | None = None, mark: Sequence[str] = ()) -> dict[str, Any]:
    """Parse, configure and build; write the serialized engine to ``output`` atomically. Returns
    what the sidecar records (flags, DLA layers that fell back to the GPU, timing cache use)."""
    import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    creation = 0
    for name in network_flags:
        creation |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser) if trt_major == "8.6" else _parser_errors_trt10plus(parser)
        raise EdgefuseError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for name in flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    fell_back: list[str] = []
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        if gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                fell_back.append(layer.name)
        if fell_back and not gpu_fallback:
            raise EdgefuseError(f"{len(fell_back)} layer(s) cannot run on DLA (e.g. {fell_back[0]}); pass "
                                "--gpu-fallback to run them on the GPU, or build without --dla")
    marked = _mark_all_outputs(network, mark) if mark else []
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgefuseError(f"{onnx_path}: TensorRT could not build the engine; its log above names the layer")
    with atomic_path(output) as tmp:
        tmp.write_bytes(bytes(serialized))
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"flags": list(flags), "network_flags": list(network_flags), "dla_core": dla_core,
            "gpu_fallback_layers": fell_back, "timing_cache": str(timing_cache) if timing_cache else None,
            "workspace_mb": workspace_mb, "reused_timing_cache": bool(cache_bytes), "marked_outputs": marked}


def _mark_all_outputs(network: trt.INetworkDefinition, wanted: Sequence[str]) -> list[str]:
    """Mark the layer outputs named in ``wanted`` (ONNX tensor names survive parsing) as network outputs,
    for validate --per-layer: a debug engine whose intermediate tensors can be compared with ONNX Runtime's."""
    want = set(wanted)
    marked: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor.name in want and not tensor.is_network_output:
                network.mark_output(tensor)
                marked.append(tensor.name)
    return marked


# ---------------------------------------------------------------------------------------------
# Running

def _device_memory_trt86(engine: trt.ICudaEngine) -> int:
    return int(engine.device_memory_size)


def _device_memory_trt10plus(engine: trt.ICudaEngine) -> int:
    return int(engine.device_memory_size_v2)


class TrtRunner:
    """A deserialized engine and one execution context; ``run(clips) -> logits`` like every runner."""

    backend = "tensorrt"

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        import_tensorrt()
        self.cuda = import_pycuda()
        self.info = info
        self.metadata = dict(info.get("metadata") or {})
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EdgefuseError(f"{path}: TensorRT could not deserialize the engine (corrupt, or built by another "
                                "version); rebuild it with 'edgefuse build-engine'")
        self.context = self.engine.create_execution_context()
        major = str(trt.__version__).split(".")[0]
        scratch = _device_memory_trt86(self.engine) if major == "8" else _device_memory_trt10plus(self.engine)
        self.gpu_memory_mb: float | None = (scratch + path.stat().st_size) / 2**20  # activations scratch + weights (engine size)
        self.stream = self.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in names}
        self.timings: dict[str, float] = {}

    def run_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self.cuda
        buffers = []
        start, h2d_done, compute_done, end = (cuda.Event() for _ in range(4))
        start.record(self.stream)
        for name in self.inputs:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, trt.Dims(list(host.shape)))
            dev = cuda.mem_alloc(host.nbytes)
            cuda.memcpy_htod_async(dev, host, self.stream)
            self.context.set_tensor_address(name, int(dev))
            buffers.append(dev)
        h2d_done.record(self.stream)
        hosts = {}
        for name in self.outputs:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(dims[i] for i in range(len(dims)))
            hosts[name] = np.empty(shape, dtype=self.dtypes[name])
            dev = cuda.mem_alloc(hosts[name].nbytes)
            self.context.set_tensor_address(name, int(dev))
            buffers.append((name, dev))
        self.context.execute_async_v3(self.stream.handle)
        compute_done.record(self.stream)
        for item in buffers:
            if isinstance(item, tuple):
                cuda.memcpy_dtoh_async(hosts[item[0]], item[1], self.stream)
        end.record(self.stream)
        self.stream.synchronize()
        self.timings = {"h2d_ms": start.time_till(h2d_done), "compute_ms": h2d_done.time_till(compute_done),
                        "d2h_ms": compute_done.time_till(end)}
        return hosts

    def run(self, clips: np.ndarray) -> np.ndarray:
        out = self.run_feeds({self.inputs[0]: clips})
        return out[self.outputs[0]]

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs:
        """The logits and the tensors marked as engine outputs at build time (a debug engine)."""
        from edgefuse.graph.runner import Outputs

        missing = [t for t in tensors if t not in self.outputs]
        if missing:
            raise EdgefuseError(f"the TensorRT engine does not output {missing[0]}; build a debug engine that marks "
                                "it as an output to compare it")
        out = self.run_feeds({self.inputs[0]: clips})
        return Outputs(out[self.outputs[0]], {t: out[t] for t in tensors})
