"""The TensorRT runner: a deserialized engine, one execution context, and timing as trtexec does it.

Per input shape, pinned host and device buffers are allocated once and reused, the input shapes and tensor
addresses are set once (again only when the shape changes), and the events are recorded directly around the copies
and the enqueue, so that H2D, compute and D2H are timed apart with no host work inside (the feeds are copied into
the pinned buffers before the first event). With ``cuda_graph`` the enqueue is captured in a CUDA graph after one
warm-up run per shape and the graph is launched from then on (trtexec ``--useCudaGraph``; a capture that fails
falls back to plain enqueues with a warning, as trtexec does). Every boolean TensorRT returns is checked.

The TensorRT API differs by version; each difference is one function whose suffix names the versions it serves
(``_trt80_84``: binding-index API and execute_async_v2; ``_trt85plus``: tensor-name API and execute_async_v3;
``_trt8`` / ``_trt100``: device_memory_size; ``_trt101plus``: device_memory_size_v2), and which one runs is decided
by :func:`run_path`, a pure function of the version string. Functions for 8.x only take their TensorRT objects as
``Any``: the type stubs describe TensorRT 10. Tested with stand-ins for TensorRT and CUDA (tests/test_trt_runner.py);
nothing in this module has run on a GPU.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.backends.trt.adapter import import_tensorrt
from edgefuse.backends.trt.buffers import (
    Bound,
    Shape,
    ShapeCache,
    ShapeKey,
    binding_list,
    check_in_profile,
    dla_core_of,
    fmt,
    launch_step,
    plan_buffers,
    run_path,
    shape_key,
)
from edgefuse.backends.trt.cuda import CudaApi, HostDevice, open_cuda
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:  # mypy checks this module against NVIDIA's type stubs (tensorrt-stubs, TensorRT 10)
    import tensorrt as trt

    from edgefuse.graph.runner import Outputs
else:
    trt = None  # bound by _bind_tensorrt(): importing edgefuse never imports TensorRT

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------
# Version-gated TensorRT calls

def _dims(dims: Any) -> Shape:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _io_trt80_84(engine: Any) -> list[tuple[str, bool, Any]]:
    """(name, is input, dtype) in binding order; with several profiles the bindings repeat per profile."""
    count = engine.num_bindings // max(engine.num_optimization_profiles, 1)
    return [(engine.get_binding_name(i), bool(engine.binding_is_input(i)), engine.get_binding_dtype(i))
            for i in range(count)]


def _io_trt85plus(engine: trt.ICudaEngine) -> list[tuple[str, bool, Any]]:
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, engine.get_tensor_dtype(n)) for n in names]


def _profile_trt80_84(engine: Any, name: str) -> list[Shape]:
    return [_dims(d) for d in engine.get_profile_shape(0, name)]


def _profile_trt85plus(engine: trt.ICudaEngine, name: str) -> list[Shape]:
    return [_dims(d) for d in engine.get_tensor_profile_shape(name, 0)]


def _set_input_shape_trt80_84(engine: Any, context: Any, name: str, shape: Shape) -> bool:
    return bool(context.set_binding_shape(engine.get_binding_index(name), trt.Dims(list(shape))))


def _set_input_shape_trt85plus(context: trt.IExecutionContext, name: str, shape: Shape) -> bool:
    return bool(context.set_input_shape(name, trt.Dims(list(shape))))


def _shape_trt80_84(engine: Any, context: Any, name: str) -> Shape:
    return _dims(context.get_binding_shape(engine.get_binding_index(name)))


def _shape_trt85plus(context: trt.IExecutionContext, name: str) -> Shape:
    return _dims(context.get_tensor_shape(name))


def _set_addresses_trt85plus(context: trt.IExecutionContext, pointers: Mapping[str, int]) -> list[str]:
    """Set every tensor address; the names TensorRT refused."""
    return [n for n, p in pointers.items() if not context.set_tensor_address(n, p)]


def _enqueue_trt80_84(context: Any, bindings: list[int], stream: int) -> bool:
    return bool(context.execute_async_v2(bindings, stream))


def _enqueue_trt85plus(context: trt.IExecutionContext, stream: int) -> bool:
    return bool(context.execute_async_v3(stream))


def _device_memory_trt8(engine: Any) -> int:
    return int(engine.device_memory_size)


def _device_memory_trt100(engine: Any) -> int:
    return int(engine.device_memory_size)


def _device_memory_trt101plus(engine: trt.ICudaEngine) -> int:
    return int(engine.device_memory_size_v2)


def _bind_tensorrt() -> Any:
    global trt
    trt = import_tensorrt()
    return trt


# ---------------------------------------------------------------------------------------------
# The runner

class TrtRunner:
    """``run(clips) -> logits`` like every runner; ``timings`` splits the last run (h2d_ms, compute_ms, d2h_ms)."""

    backend = "tensorrt"

    def __init__(self, path: Path, info: Mapping[str, Any], cuda_graph: bool = False, cuda: CudaApi | None = None,
                 shapes_kept: int = 4) -> None:
        _bind_tensorrt()
        self.api = run_path(str(trt.__version__))
        self.cuda = cuda if cuda is not None else open_cuda()
        if cuda_graph and not self.cuda.supports_graphs:
            raise EdgefuseError("--cuda-graph needs cuda-python ('pip install cuda-python'); only pycuda is installed")
        self.cuda_graph = cuda_graph
        self.info = dict(info)
        self.metadata = dict(info.get("metadata") or {})
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        core = dla_core_of(info)
        if core is not None:
            runtime.DLA_core = core  # before deserializing: the engine runs on the core it was built for
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EdgefuseError(f"{path}: TensorRT {self.api.version} could not deserialize the engine (corrupt, or "
                                "built by another TensorRT version or device); rebuild it with 'edgefuse build-engine'")
        self.engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise EdgefuseError(f"{path}: TensorRT could not create an execution context (out of GPU memory?): stop "
                                "other GPU programs")
        self.context = context
        self.gpu_memory_mb: float | None = (self._device_memory() + path.stat().st_size) / 2**20  # scratch + weights
        io = _io_trt80_84(engine) if self.api.io == "trt80_84" else _io_trt85plus(engine)
        self.order = [n for n, _, _ in io]
        self.inputs = [n for n, is_input, _ in io if is_input]
        self.outputs = [n for n, is_input, _ in io if not is_input]
        self.dtypes = {n: np.dtype(trt.nptype(t)) for n, _, t in io}
        self.profiles = {n: self._profile(n) for n in self.inputs}
        self.stream = self.cuda.stream()
        self.events = [self.cuda.event() for _ in range(4)]
        self.bound: ShapeCache[Bound] = ShapeCache(shapes_kept)
        self.current: ShapeKey | None = None
        self.timings: dict[str, float] = {}

    # the version-gated calls, by self.api
    def _device_memory(self) -> int:
        gated = {"trt8": _device_memory_trt8, "trt100": _device_memory_trt100, "trt101plus": _device_memory_trt101plus}
        return gated[self.api.device_memory](self.engine)

    def _profile(self, name: str) -> list[Shape]:
        if self.api.io == "trt80_84":
            return _profile_trt80_84(self.engine, name)
        return _profile_trt85plus(self.engine, name)

    def _apply_shapes(self, key: ShapeKey) -> None:
        for name, shape in key:
            check_in_profile(name, shape, self.profiles[name])
            ok = (_set_input_shape_trt80_84(self.engine, self.context, name, shape) if self.api.io == "trt80_84"
                  else _set_input_shape_trt85plus(self.context, name, shape))
            if not ok:
                lo, _, hi = self.profiles[name]
                raise EdgefuseError(f"TensorRT {self.api.version} refused shape {fmt(shape)} for input {name} (profile "
                                    f"min {fmt(lo)}, max {fmt(hi)}); its log above gives the reason")

    def _output_shape(self, name: str) -> Shape:
        if self.api.io == "trt80_84":
            return _shape_trt80_84(self.engine, self.context, name)
        return _shape_trt85plus(self.context, name)

    def _set_addresses(self, bound: Bound) -> None:
        if self.api.io == "trt80_84":
            return  # execute_async_v2 takes the bindings with each enqueue
        refused = _set_addresses_trt85plus(self.context, {n: b.device for n, b in bound.buffers.items()})
        if refused:
            raise EdgefuseError(f"TensorRT {self.api.version} refused the buffer address of {', '.join(refused)}; "
                                "its log above gives the reason")

    def _enqueue(self, bound: Bound) -> bool:
        handle = self.cuda.handle(self.stream)
        if self.api.io == "trt80_84":
            return _enqueue_trt80_84(self.context, bound.bindings, handle)
        return _enqueue_trt85plus(self.context, handle)

    # buffers per shape
    def _allocate(self, key: ShapeKey) -> Bound:
        self._apply_shapes(key)
        specs = plan_buffers(dict(key), {n: self._output_shape(n) for n in self.outputs}, self.dtypes)
        buffers: dict[str, HostDevice] = {}
        try:
            for spec in specs:
                buffers[spec.name] = self.cuda.alloc(spec.shape, spec.dtype)
        except BaseException:
            for made in buffers.values():
                made.release()
            raise
        bindings = binding_list(self.order, {n: b.device for n, b in buffers.items()}) if self.api.io == "trt80_84" \
            else []
        log.debug("buffers for %s: %d bytes", key, sum(s.nbytes for s in specs))
        return Bound(specs, buffers, bindings)

    def _select(self, key: ShapeKey) -> Bound:
        bound = self.bound.get(key)
        if bound is None:
            bound = self._allocate(key)
            for old in self.bound.put(key, bound):
                self._release(old)
            self._set_addresses(bound)
        elif key != self.current:
            self._apply_shapes(key)
            self._set_addresses(bound)
        self.current = key
        return bound

    def _release(self, bound: Bound) -> None:
        if bound.graph is not None:
            self.cuda.drop_graph(bound.graph)
        for buf in bound.buffers.values():
            buf.release()

    def _capture(self, bound: Bound) -> None:
        try:
            self.cuda.begin_capture(self.stream)
            ok = self._enqueue(bound)
            graph = self.cuda.end_capture(self.stream)
        except EdgefuseError as exc:
            log.warning("CUDA graph capture failed (%s): timing plain enqueues, as trtexec does", exc)
            bound.capture_failed = True
            return
        if not ok:
            self.cuda.drop_graph(graph)
            log.warning("CUDA graph capture failed (%s returned False): timing plain enqueues", self.api.enqueue)
            bound.capture_failed = True
            return
        bound.graph = graph

    def run_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = shape_key(feeds, self.inputs)
        bound = self._select(key)
        for name in self.inputs:  # host work, before the first event
            np.copyto(bound.buffers[name].host, feeds[name], casting="same_kind")
        step = launch_step(self.cuda_graph, bound.runs, bound.graph is not None, bound.capture_failed)
        if step == "capture":
            self._capture(bound)
            step = "graph" if bound.graph is not None else "enqueue"
        cuda, stream = self.cuda, self.stream
        start, h2d_done, compute_done, end = self.events
        cuda.record(start, stream)
        for name in self.inputs:
            cuda.htod(bound.buffers[name].device, bound.buffers[name].host, stream)
        cuda.record(h2d_done, stream)
        if step == "graph":
            cuda.launch(bound.graph, stream)
        elif not self._enqueue(bound):
            raise EdgefuseError(f"TensorRT {self.api.version}: {self.api.enqueue} returned False for input shapes "
                                f"{', '.join(f'{n} {fmt(s)}' for n, s in key)}; its log above gives the reason")
        cuda.record(compute_done, stream)
        for name in self.outputs:
            cuda.dtoh(bound.buffers[name].host, bound.buffers[name].device, stream)
        cuda.record(end, stream)
        cuda.synchronize(stream)
        bound.runs += 1
        self.timings = {"h2d_ms": cuda.elapsed_ms(start, h2d_done), "compute_ms": cuda.elapsed_ms(h2d_done, compute_done),
                        "d2h_ms": cuda.elapsed_ms(compute_done, end)}
        return {n: bound.buffers[n].host.copy() for n in self.outputs}  # the pinned buffers are reused

    def close(self) -> None:
        """Free every buffer and graph now (otherwise they live as long as the runner)."""
        for bound in self.bound.clear():
            self._release(bound)
        self.current = None

    def run(self, clips: np.ndarray) -> np.ndarray:
        return self.run_feeds({self.inputs[0]: clips})[self.outputs[0]]

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
