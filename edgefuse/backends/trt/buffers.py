"""Pure decisions of the TensorRT runner, tested without TensorRT: which API path a version takes, whether a shape
is inside the engine's profile, the buffers a shape needs, how a run is launched, the DLA core of an engine, and the
per-shape cache of bound buffers."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from edgefuse.backends.trt.versions import parse_version
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends.trt.cuda import HostDevice

Shape = tuple[int, ...]
ShapeKey = tuple[tuple[str, Shape], ...]


# ---------------------------------------------------------------------------------------------
# Pure decisions (tested without TensorRT)

@dataclass(frozen=True)
class RunPath:
    """The suffix of the version-gated functions that run an engine of TensorRT ``version``."""

    version: str
    io: str  # "trt80_84": binding indices and execute_async_v2; "trt85plus": tensor names and execute_async_v3
    device_memory: str  # "trt8" / "trt100": device_memory_size; "trt101plus": device_memory_size_v2

    @property
    def enqueue(self) -> str:
        return "execute_async_v2" if self.io == "trt80_84" else "execute_async_v3"


def run_path(version: str) -> RunPath:
    """Which API runs an engine of TensorRT ``version`` (8.0 to 8.6, 10.x, 11.x): the tensor-name API since 8.5,
    device_memory_size_v2 since 10.1 (device_memory_size is gone in 11)."""
    major, minor = parse_version(version).key  # an unsupported version is an error there
    io = "trt80_84" if (major, minor) < (8, 5) else "trt85plus"
    memory = "trt8" if major == 8 else "trt100" if (major, minor) == (10, 0) else "trt101plus"
    return RunPath(version, io, memory)


def fmt(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def check_in_profile(name: str, shape: Sequence[int], profile: Sequence[Sequence[int]]) -> None:
    """An error naming the profile's min and max (read from the engine) when ``shape`` is outside it."""
    lo, _, hi = profile
    inside = len(shape) == len(lo) and all(a <= d <= b for d, a, b in zip(shape, lo, hi))
    if inside:
        return
    only_batch = len(shape) == len(lo) and all(a <= d <= b for d, a, b in zip(shape[1:], lo[1:], hi[1:]))
    fix = (f"run batches of {lo[0]} to {hi[0]} clips" if only_batch
           else "feed the shape the engine was built for")
    raise EdgefuseError(f"input {name}: shape {fmt(shape)} is outside the engine's optimization profile (min "
                        f"{fmt(lo)}, max {fmt(hi)}): {fix}, or rebuild with --shapes {name}:MIN,OPT,MAX")


def shape_key(feeds: Mapping[str, np.ndarray], inputs: Sequence[str]) -> ShapeKey:
    missing = [n for n in inputs if n not in feeds]
    if missing:
        raise EdgefuseError(f"the engine's inputs are {', '.join(inputs)}; no data for {', '.join(missing)}")
    return tuple((n, tuple(int(d) for d in np.shape(feeds[n]))) for n in inputs)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Shape
    dtype: np.dtype[Any]
    is_input: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def plan_buffers(inputs: Mapping[str, Sequence[int]], outputs: Mapping[str, Sequence[int]],
                 dtypes: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    """The buffers one input shape needs: inputs as fed, outputs as the context reports them once the input
    shapes are set (a dimension still -1 there is an error, not a negative allocation)."""
    specs = [TensorSpec(n, tuple(int(d) for d in s), np.dtype(dtypes[n]), True) for n, s in inputs.items()]
    for name, shape in outputs.items():
        if any(int(d) < 0 for d in shape):
            raise EdgefuseError(f"output {name}: TensorRT reports shape {fmt(shape)} after the input shapes were set "
                                "(a dimension it cannot infer); rebuild the engine from a graph with static output "
                                "shapes")
        specs.append(TensorSpec(name, tuple(int(d) for d in shape), np.dtype(dtypes[name]), False))
    return tuple(specs)


def binding_list(order: Sequence[str], pointers: Mapping[str, int]) -> list[int]:
    """execute_async_v2's bindings: device pointers in binding-index order."""
    return [int(pointers[n]) for n in order]


def launch_step(cuda_graph: bool, runs: int, captured: bool, capture_failed: bool) -> str:
    """``enqueue``, ``capture`` (then launch) or ``graph`` for the next run of one shape: a graph is captured after
    one warm-up run of the shape (trtexec --useCudaGraph), never again once a capture failed."""
    if not cuda_graph or capture_failed:
        return "enqueue"
    if captured:
        return "graph"
    return "capture" if runs >= 1 else "enqueue"


def dla_core_of(info: Mapping[str, Any]) -> int | None:
    """The DLA core the engine was built for (the sidecar's settings), set on the runtime before deserializing."""
    core = (info.get("settings") or {}).get("dla_core")
    if core is None:
        return None
    if isinstance(core, bool) or not isinstance(core, int) or core < 0:
        raise EdgefuseError(f"the sidecar's settings.dla_core is {core!r}, not a DLA core number: rebuild the engine "
                            "with 'edgefuse build-engine'")
    return core


V = TypeVar("V")


class ShapeCache(Generic[V]):
    """Per-shape state, the least recently used dropped past ``limit`` (``put`` returns what it dropped)."""

    def __init__(self, limit: int = 4) -> None:
        self.limit = max(limit, 1)
        self.items: OrderedDict[ShapeKey, V] = OrderedDict()

    def get(self, key: ShapeKey) -> V | None:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: ShapeKey, value: V) -> list[V]:
        self.items[key] = value
        self.items.move_to_end(key)
        dropped = []
        while len(self.items) > self.limit:
            dropped.append(self.items.popitem(last=False)[1])
        return dropped

    def clear(self) -> list[V]:
        values = list(self.items.values())
        self.items.clear()
        return values


@dataclass
class Bound:
    """One input shape's buffers (owning GPU memory), bindings (8.0-8.4) and CUDA graph."""

    specs: tuple[TensorSpec, ...]
    buffers: dict[str, HostDevice]
    bindings: list[int] = field(default_factory=list)
    graph: Any = None
    capture_failed: bool = False
    runs: int = 0
