"""CUDA for the TensorRT runner: cuda-python first (what NVIDIA's TensorRT samples use since 8.6), pycuda as a
fallback (JetPack 4.6's CUDA 10.2 has no cuda-python), either optional.

cuda-python comes in two module layouts, both tried: ``cuda.bindings.runtime`` (cuda-bindings 11.8.6+, 12.6.1+
and 13.x, the only one in 13.x) and ``cuda.cudart`` (cuda-python 11.8.x and 12.x). Every call returns a tuple
``(err, *values)``; :func:`check` turns a non-zero ``err`` into one :class:`EdgefuseError` line naming the error
(``cudaErrorNoDevice``, ``cudaErrorInsufficientDriver``, ...) and its fix. The error's name is read from the enum
itself: on cuda-python before 12.9, ``cudaGetErrorName`` raises "Failed to dlopen libcuda.so.1" when no driver is
installed, as every first call does (recorded with cuda-python 11.8.3 and 12.4.0 on a machine without a driver).

Every cuda-python name and call used here is checked against the names and signatures recorded from the
cuda-python / cuda-bindings wheels (tests/data/cuda_names, written by tools/cuda_names.py), and every pycuda name
against pycuda's sources (tests/test_trt_runner.py). Tested with stand-ins for the CUDA modules only: nothing in
this module has run on a GPU.
"""
from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

CUDA_INSTALL_HINT = ("neither cuda-python nor pycuda is installed: 'pip install cuda-python' (CUDA 12 or 13 driver: "
                     "the release matching 'nvidia-smi''s CUDA version; JetPack 5, CUDA 11.4: pip install "
                     "'cuda-python>=11.8,<12'), or on JetPack 4.6 'pip3 install pycuda' with /usr/local/cuda/bin "
                     "on the PATH")

NO_DRIVER = ("no NVIDIA driver found (libcuda.so.1 could not be loaded): install the NVIDIA driver (desktop) or "
             "run on the Jetson itself, where JetPack provides it; 'nvidia-smi' or 'ls /usr/lib/aarch64-linux-gnu/"
             "tegra/libcuda.so*' checks it")

# cudaError_t names (the CUDA runtime's enum, as cuda-python spells it) -> the fix
ERROR_FIXES = {
    "cudaErrorNoDevice": "no CUDA GPU is visible: check 'nvidia-smi', CUDA_VISIBLE_DEVICES, and on a Jetson that "
                         "the user is in the 'video' group",
    "cudaErrorInsufficientDriver": "the NVIDIA driver is older than the CUDA that cuda-python was built for: install "
                                   "the cuda-python release of the driver's CUDA version (shown by 'nvidia-smi'), "
                                   "e.g. pip install 'cuda-python>=12,<13' for a CUDA 12 driver",
    "cudaErrorInitializationError": "the CUDA driver failed to initialise: check 'nvidia-smi' and the kernel log "
                                    "(dmesg); reboot after a driver update",
    "cudaErrorDevicesUnavailable": "the GPU is busy or in exclusive-process mode ('nvidia-smi -q | grep Compute'): "
                                   "stop the other GPU program",
    "cudaErrorMemoryAllocation": "out of GPU memory: stop other GPU programs or run smaller batches",
    "cudaErrorNoKernelImageForDevice": "this CUDA build does not support the GPU: install the cuda-python of the "
                                       "device's CUDA (on a Jetson, JetPack's)",
    "cudaErrorStreamCaptureUnsupported": "the engine cannot be captured in a CUDA graph: run without --cuda-graph",
}


def error_name(err: Any) -> str:
    """``cudaErrorNoDevice`` from cuda-python's enum member (no driver call); the number if it has no name."""
    name = getattr(err, "name", None)
    return str(name) if name else f"CUDA error {int(err)}"


def cuda_error_message(what: str, name: str) -> str:
    fix = ERROR_FIXES.get(name, "see the CUDA runtime API documentation for this error")
    return f"CUDA {what} failed with {name}: {fix}"


def check(result: Any, what: str) -> Any:
    """cuda-python's convention: a call returns ``(err, *values)``; the values (none: None, one: it, more: a
    tuple) when ``err`` is cudaSuccess (0), else one :class:`EdgefuseError` line naming the error."""
    if not isinstance(result, tuple) or not result:
        raise TypeError(f"{what}: expected cuda-python's (err, ...) tuple, got {type(result).__name__}")
    err, *values = result
    if int(err) != 0:
        raise EdgefuseError(cuda_error_message(what, error_name(err)))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def driver_missing(exc: BaseException) -> bool:
    """cuda-python before 12.9 raises RuntimeError('Failed to dlopen libcuda.so.1') on the first call without a driver."""
    return isinstance(exc, RuntimeError) and "libcuda" in str(exc)


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str
    memory_gb: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "compute_capability": self.compute_capability, "memory_gb": self.memory_gb}


def identity_of(name: bytes | str, major: int, minor: int, total_bytes: int) -> GpuIdentity:
    """cudaDeviceProp.name is a fixed-size char array (bytes padded with NULs); pycuda gives a str."""
    text = name.split(b"\0")[0].decode(errors="replace") if isinstance(name, bytes) else name
    return GpuIdentity(text.strip(), f"{major}.{minor}", round(total_bytes / 2**30, 1))


def host_view(address: int, shape: Sequence[int], dtype: np.dtype[Any]) -> np.ndarray:
    """A numpy array over ``address`` (pinned memory from cudaMallocHost), bytes first so that float16 works
    (numpy's ctypes conversion has no float16)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(address)
    return np.frombuffer(memoryview(raw), dtype=np.uint8, count=nbytes).view(dtype).reshape(tuple(shape))


@dataclass
class HostDevice:
    """One tensor's pinned host array and device pointer; ``release`` frees both."""

    host: np.ndarray
    device: int
    release: Callable[[], None]


class CudaPython:
    """The CUDA runtime through cuda-python (``rt``: ``cuda.bindings.runtime`` or ``cuda.cudart``)."""

    supports_graphs = True
    kind = "cuda-python"

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return check(fn(*args), what)
        except RuntimeError as exc:
            if driver_missing(exc):
                raise EdgefuseError(NO_DRIVER) from None
            raise

    def identity(self) -> GpuIdentity:
        count = self.call("device count", self.rt.cudaGetDeviceCount)
        if not count:
            raise EdgefuseError(cuda_error_message("device count", "cudaErrorNoDevice"))
        prop = self.call("device properties", self.rt.cudaGetDeviceProperties, 0)
        return identity_of(prop.name, int(prop.major), int(prop.minor), int(prop.totalGlobalMem))

    def stream(self) -> Any:
        return self.call("stream creation", self.rt.cudaStreamCreate)

    def handle(self, stream: Any) -> int:
        return int(stream)

    def alloc(self, shape: Sequence[int], dtype: np.dtype[Any]) -> HostDevice:
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        host_ptr = self.call("pinned host allocation (cudaMallocHost)", self.rt.cudaMallocHost, nbytes)
        try:
            device = self.call("device allocation (cudaMalloc)", self.rt.cudaMalloc, nbytes)
        except EdgefuseError:
            self.rt.cudaFreeHost(host_ptr)
            raise

        def release() -> None:
            self.call("cudaFree", self.rt.cudaFree, device)
            self.call("cudaFreeHost", self.rt.cudaFreeHost, host_ptr)
        return HostDevice(host_view(int(host_ptr), shape, dtype), int(device), release)

    def htod(self, dst: int, host: np.ndarray, stream: Any) -> None:
        self.call("host-to-device copy", self.rt.cudaMemcpyAsync, dst, host.ctypes.data, host.nbytes,
                  self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def dtoh(self, host: np.ndarray, src: int, stream: Any) -> None:
        self.call("device-to-host copy", self.rt.cudaMemcpyAsync, host.ctypes.data, src, host.nbytes,
                  self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def event(self) -> Any:
        return self.call("event creation", self.rt.cudaEventCreate)

    def record(self, event: Any, stream: Any) -> None:
        self.call("event record", self.rt.cudaEventRecord, event, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self.call("event timing", self.rt.cudaEventElapsedTime, start, end))

    def synchronize(self, stream: Any) -> None:
        self.call("stream synchronize", self.rt.cudaStreamSynchronize, stream)

    def begin_capture(self, stream: Any) -> None:  # trtexec --useCudaGraph captures thread-locally
        self.call("CUDA graph capture", self.rt.cudaStreamBeginCapture, stream,
                  self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)

    def end_capture(self, stream: Any) -> Any:
        """The captured graph, instantiated (cudaGraphInstantiateWithFlags: the same signature in CUDA 11.4 to 13;
        cudaGraphInstantiate's changed in CUDA 12)."""
        graph = self.call("CUDA graph capture", self.rt.cudaStreamEndCapture, stream)
        try:
            return self.call("CUDA graph instantiation", self.rt.cudaGraphInstantiateWithFlags, graph, 0)
        finally:
            self.call("cudaGraphDestroy", self.rt.cudaGraphDestroy, graph)

    def launch(self, graph_exec: Any, stream: Any) -> None:
        self.call("CUDA graph launch", self.rt.cudaGraphLaunch, graph_exec, stream)

    def drop_graph(self, graph_exec: Any) -> None:
        self.call("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy, graph_exec)


class PyCuda:
    """The CUDA driver through pycuda (``drv``: ``pycuda.driver``, its context made by ``pycuda.autoinit``)."""

    supports_graphs = False
    kind = "pycuda"

    def __init__(self, drv: Any) -> None:
        self.drv = drv

    def identity(self) -> GpuIdentity:
        dev = self.drv.Device(0)
        major, minor = dev.compute_capability()
        return identity_of(dev.name(), int(major), int(minor), int(dev.total_memory()))

    def stream(self) -> Any:
        return self.drv.Stream()

    def handle(self, stream: Any) -> int:
        return int(stream.handle)

    def alloc(self, shape: Sequence[int], dtype: np.dtype[Any]) -> HostDevice:
        host = self.drv.pagelocked_empty(tuple(shape), dtype)
        device = self.drv.mem_alloc(max(host.nbytes, 1))
        return HostDevice(host, int(device), device.free)

    def htod(self, dst: int, host: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, host, stream)

    def dtoh(self, host: np.ndarray, src: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(host, src, stream)

    def event(self) -> Any:
        return self.drv.Event()

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(start.time_till(end))

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def begin_capture(self, stream: Any) -> None:
        raise EdgefuseError("--cuda-graph needs cuda-python ('pip install cuda-python'); pycuda is used here")

    def end_capture(self, stream: Any) -> Any:
        raise EdgefuseError("--cuda-graph needs cuda-python ('pip install cuda-python'); pycuda is used here")

    def launch(self, graph_exec: Any, stream: Any) -> None:
        raise EdgefuseError("--cuda-graph needs cuda-python ('pip install cuda-python'); pycuda is used here")

    def drop_graph(self, graph_exec: Any) -> None:
        return None


class CudaApi(Protocol):
    """What the runner needs from CUDA: :class:`CudaPython` and :class:`PyCuda` offer it."""

    supports_graphs: bool
    kind: str

    def identity(self) -> GpuIdentity: ...
    def stream(self) -> Any: ...
    def handle(self, stream: Any) -> int: ...
    def alloc(self, shape: Sequence[int], dtype: np.dtype[Any]) -> HostDevice: ...
    def htod(self, dst: int, host: np.ndarray, stream: Any) -> None: ...
    def dtoh(self, host: np.ndarray, src: int, stream: Any) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any, stream: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    def synchronize(self, stream: Any) -> None: ...
    def begin_capture(self, stream: Any) -> None: ...
    def end_capture(self, stream: Any) -> Any: ...
    def launch(self, graph_exec: Any, stream: Any) -> None: ...
    def drop_graph(self, graph_exec: Any) -> None: ...


def import_cudart() -> Any | None:
    """cuda-python's runtime module in either layout, or None."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        return None


def import_pycuda() -> Any | None:
    """``pycuda.driver`` with a context on device 0 (``pycuda.autoinit``, as NVIDIA's samples before 8.6 do), or
    None when pycuda is absent; a CUDA init failure becomes one line."""
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        if "libcuda" in str(exc):  # pycuda is there, its driver library is not
            raise EdgefuseError(NO_DRIVER) from None
        return None
    try:
        import pycuda.autoinit  # noqa: F401  (cuInit and a context on device 0)
    except drv.Error as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgefuseError(f"CUDA initialisation failed (pycuda): {text}: check 'nvidia-smi' (desktop) or that the "
                            "user is in the 'video' group (Jetson)") from None
    return drv


def open_cuda(cudart: Any | None = None, pycuda: Any | None = None) -> CudaApi:
    """cuda-python when it is installed, else pycuda, else the install hint (the modules may be passed in)."""
    rt = cudart if cudart is not None else import_cudart()
    if rt is not None:
        return CudaPython(rt)
    drv = pycuda if pycuda is not None else import_pycuda()
    if drv is not None:
        return PyCuda(drv)
    raise EdgefuseError(CUDA_INSTALL_HINT)


def gpu_identity() -> dict[str, Any]:
    """Device 0's name, compute capability and memory, for the sidecar: read before anything is built."""
    api = open_cuda()
    identity = api.identity()
    log.info("GPU: %s (compute %s, %.1f GB), read through %s", identity.name, identity.compute_capability,
             identity.memory_gb, api.kind)
    return identity.to_dict()
