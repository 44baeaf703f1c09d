"""``edgefuse bench --estimate``: latency of an ONNX graph on a device profile, predicted by a roofline.

Every node gets its MACs and the bytes it moves (:func:`layer_costs`, shapes from one ONNX Runtime run with every
tensor exposed, so static and dynamic graphs alike), and the precision it runs in. :func:`estimate` then charges each
layer ``max(2 * MACs / peak[precision], bytes / bandwidth) + overhead`` and sums. The peaks are the device profile's
published dense figures for a GPU or Jetson, and figures measured here (:func:`measure_cpu_peak`) for ``cpu``.

It is an estimate, labelled as one (``Estimate.label``), with its assumptions listed (``Estimate.assumptions``):

* published peaks are never reached by real kernels, so on a GPU the estimate is optimistic (a lower bound on time);
* the bandwidth is DRAM's: tensors small enough to stay in cache move faster than that, so memory-bound layers of
  small models are estimated pessimistically;
* what engines fuse is modelled (``fuse=True``): constant subgraphs and shape arithmetic are folded; reshapes are
  views; Q/DQ pairs disappear into the INT8 kernels, which read and write 8-bit tensors; an activation, batch norm,
  residual Add or constant scale right after a Conv/Gemm/MatMul is its epilogue (one kernel, the intermediate tensor
  never written). Any other fusion (TensorRT's horizontal merges, attention kernels) is not;
* a Q/DQ graph runs as TensorRT runs it on a GPU or Jetson (every layer after a DequantizeLinear in INT8), and as
  ONNX Runtime's CPU provider runs it on ``cpu``: a Q/DQ Conv or Gemm is INT8 there only when its output goes
  straight to a QuantizeLinear, else it runs in FP32 behind its DequantizeLinear kernels.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from edgefuse.backends.ort.cpu import cpu_identity
from edgefuse.devices import DeviceProfile
from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import macs_of_node

log = logging.getLogger(__name__)

LABEL = "estimate (roofline)"

# Fixed time added to every layer that runs as its own kernel, in microseconds. GPU/Jetson: a TensorRT kernel launch
# plus the gap between dependent kernels on one stream is a few microseconds (5 us taken; Jetsons are at the high end,
# desktop GPUs with CUDA graphs lower). CPU: ONNX Runtime's per-node dispatch (kernel lookup, allocation from the
# arena, thread-pool fork/join for a parallel kernel) is about a microsecond (1 us taken).
LAUNCH_OVERHEAD_US = {"gpu": 5.0, "jetson": 5.0, "cpu": 1.0}

COMPUTE_OPS = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger",
               "QLinearMatMul")
NATIVE_INT8_OPS = ("ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul")
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")  # metadata only: no kernel
SHAPE_OPS = ("Shape", "Size")  # their outputs are known when the engine is built (or computed on the host)
EPILOGUE_HOSTS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul")
ORT_NEEDS_OUTPUT_Q = ("Conv", "Gemm")  # ONNX Runtime CPU: Q/DQ forms that stay float without a quantized output
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
               "Softplus", "Gelu", "BatchNormalization")
_RANDOM = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")


@dataclass(frozen=True)
class LayerCost:
    """One node: its MACs, the tensors it reads and writes (name -> bytes) and the precision it runs in.

    ``fused`` says why the node costs no kernel of its own: ``"constant"`` (all inputs constant: folded when the
    engine is built), ``"view"`` (a reshape: metadata only), ``"qdq"`` (a Q/DQ node absorbed by the INT8 kernels)
    or ``"epilogue"`` (absorbed by ``fused_into``, the Conv/Gemm/MatMul before it); ``None``: a kernel of its own.
    """

    name: str
    op: str
    precision: str  # int8 | fp16 | fp32
    macs: int
    inputs: dict[str, int]  # activations read: tensor -> bytes
    weights: dict[str, int]  # constant inputs read (weights, biases, scales)
    outputs: dict[str, int]  # tensors written
    fused: str | None = None
    fused_into: str | None = None
    activation_dtype: str | None = None  # int8 layers: the 8-bit type of the activation (int8 or uint8)

    @property
    def input_bytes(self) -> int:
        return sum(self.inputs.values())

    @property
    def weight_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def output_bytes(self) -> int:
        return sum(self.outputs.values())

    @property
    def bytes(self) -> int:
        return self.input_bytes + self.weight_bytes + self.output_bytes


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op: str
    precision: str
    macs: int  # of the kernel: its own plus its epilogue's (0)
    bytes: int  # moved by the kernel, epilogue included (tensors internal to the fused kernel not counted)
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    time_ms: float
    bound: str  # compute | memory | fused
    fused: str | None = None  # why it costs nothing (see LayerCost.fused)
    fused_into: str | None = None
    epilogue: tuple[str, ...] = ()  # nodes fused into this one


@dataclass(frozen=True)
class Estimate:
    device: str
    profile: str  # the profile file
    total_ms: float
    layers: tuple[LayerEstimate, ...]
    peaks: dict[str, Any]  # what was used: GFLOP/s or GOP/s per precision, GB/s, and where they came from
    overhead_us: float
    assumptions: tuple[str, ...]
    fuse: bool = True
    label: str = LABEL

    @property
    def kernels(self) -> tuple[LayerEstimate, ...]:
        """The layers that run as kernels (not fused away)."""
        return tuple(lay for lay in self.layers if lay.fused is None)

    @property
    def macs(self) -> int:
        return sum(lay.macs for lay in self.kernels)

    @property
    def bytes(self) -> int:
        return sum(lay.bytes for lay in self.kernels)

    def split(self) -> dict[str, float]:
        """Milliseconds spent in compute-bound layers, in memory-bound layers and in fixed overhead."""
        out = {"compute_bound_ms": 0.0, "memory_bound_ms": 0.0, "overhead_ms": 0.0}
        for lay in self.kernels:
            out[f"{lay.bound}_bound_ms"] += lay.time_ms - lay.overhead_ms
            out["overhead_ms"] += lay.overhead_ms
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(label=self.label, macs=self.macs, bytes=self.bytes, kernels=len(self.kernels), **self.split())
        return d

    def table(self, top: int | None = None) -> str:
        """The kernels, slowest first (``top`` of them), as a plain-text table."""
        from edgefuse.cli.render import format_table

        rows = sorted(self.kernels, key=lambda lay: -lay.time_ms)[:top]
        return format_table(
            [{"name": r.name, "op": "+".join((r.op, *[e.rsplit("/", 1)[-1] for e in r.epilogue])) if r.epilogue
              else r.op, "precision": r.precision, "mmacs": r.macs / 1e6, "kb": r.bytes / 1e3,
              "us": r.time_ms * 1e3, "bound": r.bound} for r in rows],
            ["name", "op", "precision", "mmacs", "kb", "us", "bound"],
            ["layer", "op", "precision", "MMACs", "kB", "time (us)", "bound"])

    def summary(self) -> str:
        s = self.split()
        return (f"{self.label} on {self.device}: {self.total_ms:.3f} ms ({len(self.kernels)} kernels, "
                f"{self.macs / 1e9:.3f} GMACs, {self.bytes / 1e6:.1f} MB moved; compute-bound {s['compute_bound_ms']:.3f}"
                f" ms, memory-bound {s['memory_bound_ms']:.3f} ms, overhead {s['overhead_ms']:.3f} ms)")


# ----------------------------------------------------------------------------------------------- layer costs


def _dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):  # undefined element type
        return np.dtype(object)


def _probe(model: onnx.ModelProto, meta: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and element type of every tensor of the main graph, from one ONNX Runtime run with all exposed."""
    from edgefuse.graph.query import run_exposed

    inits = {i.name for i in model.graph.initializer}
    names = list(dict.fromkeys(o for n in model.graph.node for o in n.output if o and o not in inits))
    try:
        feeds, outs = run_exposed(model, meta, names, threads=1)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own untyped errors
        raise EdgefuseError(f"ONNX Runtime cannot run the graph to measure its tensors ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]}); check it with 'edgefuse inspect'") from None
    info: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for i in model.graph.initializer:
        info[i.name] = (tuple(int(d) for d in i.dims), _dtype(i.data_type))
    for name, arr in feeds.items():
        info[name] = (tuple(arr.shape), arr.dtype)
    for name, v in outs.items():
        if isinstance(v, np.ndarray):
            info[name] = (tuple(v.shape), v.dtype)
    return info


def _size(dtype: np.dtype | None) -> int:
    return 0 if dtype is None or dtype == np.dtype(object) else int(dtype.itemsize)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def layer_costs(model: onnx.ModelProto, meta: dict[str, Any] | None = None, fuse: bool = True,
                runtime: str = "tensorrt") -> list[LayerCost]:
    """MACs, bytes and precision of every node of ``model``'s main graph, in graph order.

    Shapes and element types come from one ONNX Runtime run at the optimal shape (``meta['dynamic_ranges']``, as
    ``edgefuse inspect`` does) with every tensor exposed. Bytes are inputs + weights + outputs, each tensor once per
    node, at its element size (int8 1, fp16 2, fp32 4 bytes). With ``fuse`` (what TensorRT and ONNX Runtime do with
    a Q/DQ graph) a tensor a DequantizeLinear reads, and one only QuantizeLinear nodes read, are counted at their 8-bit
    size: the INT8 kernels read and write 8-bit tensors; ``fuse=False`` counts every tensor at its own type.

    Precision: ``int8`` for the quantized operators and for a node whose activation input comes from a
    DequantizeLinear (through reshapes); ``fp16`` when its output is float16; else ``fp32``. That is how TensorRT
    runs a Q/DQ graph (``runtime="tensorrt"``). ``runtime="onnxruntime"`` (with ``fuse``) follows ONNX Runtime's CPU
    provider instead, which runs a Q/DQ Conv or Gemm in int8 only when its output goes straight to a QuantizeLinear
    (or through a Relu that QuantizeLinear's zero point makes redundant; checked with ONNX Runtime 1.32): otherwise
    the layer is ``fp32`` and its DequantizeLinear nodes are kernels of their own.
    """
    if runtime not in ("tensorrt", "onnxruntime"):
        raise EdgefuseError(f"runtime must be tensorrt or onnxruntime, not {runtime!r}")
    from edgefuse.graph.metadata import read_metadata

    meta = meta if meta is not None else read_metadata(model)
    info = _probe(model, meta)
    shape = {k: v[0] for k, v in info.items()}
    nodes = list(model.graph.node)
    names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(nodes)]
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
        for t in dict.fromkeys(x for x in n.input if x):
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}

    # constants: initializers, and whatever is computed from constants and shapes only
    const = {i.name for i in model.graph.initializer} - {vi.name for vi in model.graph.input}
    folded: set[int] = set()
    for i, n in enumerate(nodes):
        ins = [x for x in n.input if x]
        if n.op_type in SHAPE_OPS or (n.op_type not in _RANDOM and all(x in const for x in ins)):
            folded.add(i)
            const.update(o for o in n.output if o)

    def source(t: str) -> int | None:
        """The node that really produces ``t``, looking through views."""
        i = producer.get(t)
        while i is not None and nodes[i].op_type in VIEW_OPS and nodes[i].input and nodes[i].input[0]:
            i = producer.get(nodes[i].input[0])
        return i

    def from_dq(t: str) -> int | None:
        i = source(t)
        return i if i is not None and nodes[i].op_type == "DequantizeLinear" and i not in folded else None

    inits = {i.name: i for i in model.graph.initializer}

    def zero_point_at_min(q: onnx.NodeProto) -> bool:
        """A QuantizeLinear whose zero point is its type's lowest value (uint8 0, int8 -128): a Relu before it
        changes nothing (ONNX Runtime's ReluQuantFusion drops it)."""
        if len(q.input) < 3 or not q.input[2]:
            return True  # uint8, zero point 0
        zp = inits.get(q.input[2])
        if zp is None:
            return False
        v = onnx.numpy_helper.to_array(zp)
        return bool(np.issubdtype(v.dtype, np.integer) and (v == np.iinfo(v.dtype).min).all())

    def quantized_output(t: str) -> bool:
        """ONNX Runtime's QDQ Conv / Gemm fusion: the output goes straight to QuantizeLinear (or through a Relu it
        drops)."""
        users = consumers.get(t, [])
        if t in graph_outputs or not users:
            return False
        for c in users:
            if nodes[c].op_type == "QuantizeLinear":
                continue
            r = nodes[c].output[0] if nodes[c].op_type == "Relu" else None
            if r and r not in graph_outputs and consumers.get(r) and all(
                    nodes[q].op_type == "QuantizeLinear" and zero_point_at_min(nodes[q]) for q in consumers[r]):
                continue
            return False
        return True

    # fusion of Q/DQ nodes, views and epilogues
    fused: dict[int, str] = {i: "constant" for i in folded}
    host: dict[int, int] = {}
    demoted: set[int] = set()  # ONNX Runtime: Q/DQ layers it runs in float
    if fuse:
        for i, n in enumerate(nodes):
            if i in fused:
                continue
            outs = [o for o in n.output if o]
            if n.op_type in VIEW_OPS:
                fused[i] = "view"
            elif n.op_type == "DequantizeLinear" and not any(o in graph_outputs for o in outs) \
                    and all(consumers.get(o) for o in outs):
                fused[i] = "qdq"
        for i, n in enumerate(nodes):  # epilogues, in graph order so chains (Conv -> Add -> Relu) collapse
            if i in fused:
                continue
            acts = [x for x in n.input if x and x not in const]
            if n.op_type in ACTIVATIONS or n.op_type == "Add" or (n.op_type in ("Mul", "Div", "Sub") and len(acts) == 1):
                for x in acts:
                    p = producer.get(x)
                    if p is None or x in graph_outputs or consumers.get(x) != [i]:
                        continue
                    root = host.get(p, p) if fused.get(p) == "epilogue" else p
                    if nodes[root].op_type in EPILOGUE_HOSTS and root not in fused:
                        fused[i], host[i] = "epilogue", root
                        break
        if runtime == "onnxruntime":
            # ONNX Runtime's CPU provider makes a Q/DQ Conv or Gemm a QLinearConv / QGemm only when its output is
            # quantized straight away; otherwise it runs the float op on dequantized tensors, its DequantizeLinear nodes
            # (weights included: they are not constant-folded) as kernels of their own. A Q/DQ MatMul becomes
            # MatMulIntegerToFloat either way.
            for i, n in enumerate(nodes):
                if n.op_type not in ORT_NEEDS_OUTPUT_Q or i in fused:
                    continue
                dqs = [d for d in (source(x) for x in n.input[:2] if x)
                       if d is not None and nodes[d].op_type == "DequantizeLinear"]
                if not any(d not in folded for d in dqs):
                    continue  # not a Q/DQ layer
                if quantized_output(n.output[0]):
                    continue  # QLinearConv / QGemm
                demoted.add(i)
                for d in dqs:
                    fused.pop(d, None)
        for i, n in enumerate(nodes):  # a QuantizeLinear read only by DequantizeLinear nodes: its producer
            # writes 8-bit (TensorRT: any kernel; ONNX Runtime: an int8 QLinearConv / QGemm / QLinearMatMul). A
            # QuantizeLinear of a graph input is a kernel of its own.
            if n.op_type != "QuantizeLinear" or i in fused or n.output[0] in graph_outputs:
                continue
            src = source(n.input[0])
            if src is None or not consumers.get(n.output[0]) or \
                    not all(nodes[c].op_type == "DequantizeLinear" for c in consumers[n.output[0]]):
                continue
            if runtime == "onnxruntime":
                root = host.get(src, src)
                if nodes[root].op_type not in EPILOGUE_HOSTS or root in demoted or \
                        not any(from_dq(x) is not None for x in nodes[root].input[:1] if x):
                    continue
            fused[i] = "qdq"

    def stored_size(t: str) -> int:
        """Element size ``t`` is stored at: its own, or 8-bit for the tensors fused Q/DQ nodes read and write."""
        seen = 0
        while fuse and seen < 64:
            seen += 1
            i = producer.get(t)
            if i is not None and nodes[i].op_type in VIEW_OPS + ("DequantizeLinear",) and fused.get(i) in (
                    "view", "qdq", "constant") and nodes[i].input:
                t = nodes[i].input[0]  # a view aliases its input; a fused DQ's reader reads the 8-bit tensor
                continue
            users = consumers.get(t, [])
            if users and t not in graph_outputs and all(
                    nodes[c].op_type == "QuantizeLinear" and fused.get(c) == "qdq" for c in users):
                return _size(info.get(nodes[users[0]].output[0], ((), np.dtype(np.int8)))[1])
            break
        return _size(info.get(t, ((), None))[1])

    def nbytes(t: str) -> int:
        shp = shape.get(t)
        return 0 if shp is None else int(np.prod(shp)) * stored_size(t)

    costs = []
    for i, n in enumerate(nodes):
        ins = list(dict.fromkeys(x for x in n.input if x))
        outs = list(dict.fromkeys(o for o in n.output if o))
        dq = [d for d in (from_dq(x) for x in ins if x not in const) if d is not None]
        act_name = None
        if n.op_type in NATIVE_INT8_OPS or (dq and i not in demoted):
            precision = "int8"
            a = n.input[0] if n.op_type in NATIVE_INT8_OPS else nodes[dq[0]].input[0]
            act_name = "uint8" if info.get(a, ((), None))[1] == np.dtype(np.uint8) else "int8"
        elif outs and info.get(outs[0], ((), None))[1] == np.dtype(np.float16):
            precision = "fp16"
        else:
            precision = "fp32"
        costs.append(LayerCost(
            name=names[i], op=n.op_type, precision=precision, macs=macs_of_node(n, shape),
            inputs={x: nbytes(x) for x in ins if x not in const}, weights={x: nbytes(x) for x in ins if x in const},
            outputs={o: nbytes(o) for o in outs}, fused=fused.get(i),
            fused_into=names[host[i]] if i in host else None, activation_dtype=act_name if precision == "int8" else None))
    return costs


# ----------------------------------------------------------------------------------------------- CPU peaks


def _session(model: onnx.ModelProto, threads: int | None):  # type: ignore[no-untyped-def]
    import onnxruntime as ort  # type: ignore[import-untyped]

    from edgefuse.graph.ort import session_options

    opts = session_options(threads)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _model(nodes: list[onnx.NodeProto], inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    g = onnx.helper.make_graph(nodes, "peak", inputs, outputs, inits)
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)], producer_name="edgefuse.estimate")
    m.ir_version = 8
    return m


def _best(run, repeats: int) -> float:  # type: ignore[no-untyped-def]
    run()  # warm-up: first-run allocations, weight prepacking, thread-pool start
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _matmul_rate(a_type: int, b_type: int | None, size: int, threads: int | None, repeats: int) -> float:
    """Operations per second (2 per MAC) of a size^3 MatMul / MatMulInteger in ONNX Runtime, best of ``repeats``."""
    from onnx import TensorProto as T

    rng = np.random.default_rng(0)
    n = size
    if b_type is None:
        b = onnx.numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "B")
        node, out_t = onnx.helper.make_node("MatMul", ["A", "B"], ["Y"]), T.FLOAT
        a = rng.standard_normal((n, n)).astype(np.float32)
    else:
        np_b = onnx.helper.tensor_dtype_to_np_dtype(b_type)
        b = onnx.numpy_helper.from_array(rng.integers(-100, 100, (n, n)).astype(np_b), "B")
        node, out_t = onnx.helper.make_node("MatMulInteger", ["A", "B"], ["Y"]), T.INT32
        np_a = onnx.helper.tensor_dtype_to_np_dtype(a_type)
        lo = 0 if np_a == np.uint8 else -100
        a = rng.integers(lo, 100, (n, n)).astype(np_a)
    m = _model([node], [onnx.helper.make_tensor_value_info("A", a_type, [n, n])],
               [onnx.helper.make_tensor_value_info("Y", out_t, [n, n])], [b])
    sess = _session(m, threads)
    seconds = _best(lambda: sess.run(None, {"A": a}), repeats)
    return 2.0 * n ** 3 / seconds


def _bandwidth(mb: int, threads: int | None, repeats: int) -> float:
    """Bytes per second of ONNX Runtime's Add of a constant to an ``mb`` MB float32 tensor (reads it once, writes it
    once), into a preallocated output bound with IOBinding (no page faults in the timing)."""
    import onnxruntime as ort
    from onnx import TensorProto as T

    n = mb * (1 << 20) // 4
    m = _model([onnx.helper.make_node("Add", ["X", "one"], ["Y"])], [onnx.helper.make_tensor_value_info("X", T.FLOAT, [n])],
               [onnx.helper.make_tensor_value_info("Y", T.FLOAT, [n])],
               [onnx.numpy_helper.from_array(np.ones((1,), np.float32), "one")])
    sess = _session(m, threads)
    x = np.ones(n, np.float32)
    y = np.empty_like(x)
    y.fill(0)  # touch the pages before timing
    binding = sess.io_binding()
    binding.bind_ortvalue_input("X", ort.OrtValue.ortvalue_from_numpy(x))
    binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy(y))
    seconds = _best(lambda: sess.run_with_iobinding(binding), repeats)
    return 2.0 * x.nbytes / seconds


@functools.lru_cache(maxsize=8)
def _measure(threads: int | None, size: int, repeats: int, bandwidth_mb: int) -> tuple[tuple[str, Any], ...]:
    import onnxruntime as ort
    from onnx import TensorProto as T

    fp32 = _matmul_rate(T.FLOAT, None, size, threads, repeats)
    u8s8 = _matmul_rate(T.UINT8, T.INT8, size, threads, repeats)
    s8s8 = _matmul_rate(T.INT8, T.INT8, size, threads, repeats)
    bw = _bandwidth(bandwidth_mb, threads, repeats)
    method = (f"ONNX Runtime {ort.__version__} CPUExecutionProvider, intra-op threads "
              f"{threads or 'default (one per physical core)'}: a {size}x{size}x{size} float32 MatMul and uint8 x int8 / "
              f"int8 x int8 MatMulInteger with the second matrix an initializer (2 ops per MAC), and an Add of a "
              f"constant to a {bandwidth_mb} MB float32 tensor into a bound output (read + write counted); best of "
              f"{repeats} runs after one warm-up")
    return (("fp32_gflops", fp32 / 1e9), ("int8_u8s8_gops", u8s8 / 1e9), ("int8_s8s8_gops", s8s8 / 1e9),
            ("bandwidth_gbs", bw / 1e9), ("threads", threads), ("size", size), ("repeats", repeats),
            ("bandwidth_mb", bandwidth_mb), ("cpu", str(cpu_identity()["name"])), ("logical_cpus", os.cpu_count()), ("isa", list(cpu_identity()["isa"])),
            ("onnxruntime", ort.__version__), ("method", method))


def measure_cpu_peak(threads: int | None = None, size: int = 1024, repeats: int = 5, bandwidth_mb: int = 256
                     ) -> dict[str, Any]:
    """Achieved peaks of this machine in ONNX Runtime: ``fp32_gflops`` (float32 MatMul), ``int8_u8s8_gops`` and
    ``int8_s8s8_gops`` (MatMulInteger, uint8 or int8 activations x int8 weights), ``bandwidth_gbs`` (an elementwise
    Add streaming ``bandwidth_mb`` MB in and out), with ``method`` saying how. ``threads=None``: ONNX Runtime's
    default. Measured once per process for the same arguments (cached)."""
    if size < 1 or repeats < 1 or bandwidth_mb < 1:
        raise EdgefuseError(f"measure_cpu_peak: size, repeats and bandwidth_mb must be positive (got {size}, "
                            f"{repeats}, {bandwidth_mb})")
    return dict(_measure(threads, int(size), int(repeats), int(bandwidth_mb)))


# ----------------------------------------------------------------------------------------------- estimate


def _profile_peaks(profile: DeviceProfile) -> dict[str, Any]:
    peaks: dict[str, Any] = {"source": f"published figures in {profile.path}"}
    if profile.fp16_tflops is not None:
        peaks["fp16_gflops"] = profile.fp16_tflops * 1e3
        peaks["fp32_gflops"] = profile.fp16_tflops * 1e3 / 2
    if profile.int8_tops is not None:
        peaks["int8_gops"] = profile.int8_tops * 1e3
    if profile.memory_bandwidth_gbs is not None:
        peaks["bandwidth_gbs"] = profile.memory_bandwidth_gbs
    return peaks


def _missing(profile: DeviceProfile, key: str, why: str) -> EdgefuseError:
    return EdgefuseError(f"{profile.path}: no {key}, needed for {why}; add the device's published dense figure as "
                         f"{key} to the profile, or pass measured peaks")


def estimate(model: onnx.ModelProto, meta: dict[str, Any] | None, profile: DeviceProfile,
             peaks: Mapping[str, Any] | None = None, *, overhead_us: float | None = None, fuse: bool = True,
             threads: int | None = None, cpu_int8: str = "auto") -> Estimate:
    """Roofline latency of one run of ``model`` on ``profile``.

    Each kernel takes ``max(2 * MACs / peak[precision], bytes / bandwidth) + overhead_us`` (default
    :data:`LAUNCH_OVERHEAD_US` for the device kind); fused nodes take nothing (see :func:`layer_costs`).

    GPU / Jetson: ``fp16_tflops`` for fp16 layers, ``int8_tops`` for int8, ``fp16_tflops / 2`` for fp32 (profiles
    carry no fp32 figure; TensorRT runs fp32 convolutions as TF32 on tensor cores, half the fp16 rate on Ampere and
    later), ``memory_bandwidth_gbs``; a figure a layer needs that the profile lacks is an error. CPU: the figures of
    :func:`measure_cpu_peak` (measured now with ``threads`` unless ``peaks`` are given). ``peaks`` (keys
    ``fp32_gflops``, ``fp16_gflops``, ``int8_gops``, ``int8_u8s8_gops``, ``int8_s8s8_gops``, ``bandwidth_gbs``)
    override the profile's figures on any device. ``cpu_int8`` is the CPU engine's option of the same name: ``auto``
    (the engine re-expresses int8 activations as uint8) charges every int8 layer at ``int8_u8s8_gops``; ``qdq`` (the
    graph as it is) at the figure for its activation type, ``int8_s8s8_gops`` for int8 activations.
    """
    if cpu_int8 not in ("auto", "qdq"):
        raise EdgefuseError(f"cpu_int8 must be auto or qdq, not {cpu_int8!r}")
    from edgefuse.graph.metadata import read_metadata

    meta = meta if meta is not None else read_metadata(model)
    cpu = profile.kind == "cpu"
    costs = layer_costs(model, meta, fuse=fuse, runtime="onnxruntime" if cpu else "tensorrt")
    used: dict[str, Any] = {}
    if cpu and peaks is None:
        used.update(measure_cpu_peak(threads=threads))
        used["source"] = "measured on this machine (measure_cpu_peak)"
    elif not cpu:
        used.update(_profile_peaks(profile))
    if peaks is not None:
        used.update(peaks)
        used.setdefault("source", "given")
        if peaks.get("source") is None and not cpu:
            used["source"] = f"given, over the published figures in {profile.path}"
    overhead = LAUNCH_OVERHEAD_US.get(profile.kind, 1.0) if overhead_us is None else float(overhead_us)

    def rate(lay: LayerCost) -> float:
        """Operations per second for a layer's precision."""
        if lay.precision == "int8":
            signed = cpu_int8 == "qdq" and lay.activation_dtype != "uint8"
            keys = ([f"int8_{'s8s8' if signed else 'u8s8'}_gops"] if cpu else []) + ["int8_gops"]
            why, figure = "the int8 layers", "int8_tops"
        elif lay.precision == "fp16" and not cpu:
            keys, why, figure = ["fp16_gflops"], "the fp16 layers", "fp16_tflops"
        else:
            keys = ["fp32_gflops"] + (["fp16_gflops"] if not cpu else [])
            why = "the fp16 layers (run in fp32 on a CPU)" if lay.precision == "fp16" else "the fp32 layers"
            figure = "fp16_tflops" if not cpu else "fp32_gflops"
            if not cpu:
                why += " (estimated at fp16_tflops / 2)"
        for k in keys:
            v = used.get(k)
            if v:
                return float(v) * 1e9 / (2.0 if k == "fp16_gflops" and lay.precision == "fp32" else 1.0)
        if cpu:
            raise EdgefuseError(f"peaks for {profile.name} lack {keys[0]}, needed for {why}; pass the result of "
                                f"measure_cpu_peak() or leave peaks out to measure")
        raise _missing(profile, figure, why)

    bandwidth = used.get("bandwidth_gbs")

    def bw() -> float:
        if not bandwidth:
            if cpu:
                raise EdgefuseError(f"peaks for {profile.name} lack bandwidth_gbs; pass the result of "
                                    "measure_cpu_peak() or leave peaks out to measure")
            raise _missing(profile, "memory_bandwidth_gbs", "the memory-bound time of every layer")
        return float(bandwidth) * 1e9

    # kernels: a node of its own plus the epilogue nodes fused into it; tensors passed inside a kernel are free
    members: dict[str, list[LayerCost]] = {c.name: [c] for c in costs if c.fused is None}
    for c in costs:
        if c.fused == "epilogue" and c.fused_into in members:
            members[c.fused_into].append(c)
    readers: dict[str, set[str]] = {}
    for c in costs:
        for t in (*c.inputs, *c.weights):
            readers.setdefault(t, set()).add(c.name)
    graph_outputs = {o.name for o in model.graph.output}

    layers = []
    for c in costs:
        if c.fused is not None:
            layers.append(LayerEstimate(c.name, c.op, c.precision, c.macs, 0, 0.0, 0.0, 0.0, 0.0, "fused", c.fused,
                                        c.fused_into))
            continue
        group = members[c.name]
        inside = {t for m in group for t in m.outputs}
        names = {m.name for m in group}
        moved: dict[str, int] = {}
        for m in group:
            moved.update({t: b for t, b in (*m.inputs.items(), *m.weights.items()) if t not in inside})
            moved.update({t: b for t, b in m.outputs.items()
                          if t in graph_outputs or not readers.get(t) or readers[t] - names})
        nbytes = sum(moved.values())
        macs = sum(m.macs for m in group)
        compute_s = 2.0 * macs / rate(c) if macs else 0.0
        memory_s = nbytes / bw() if nbytes else 0.0
        body = max(compute_s, memory_s)
        layers.append(LayerEstimate(
            c.name, c.op, c.precision, macs, nbytes, compute_s * 1e3, memory_s * 1e3, overhead / 1e3,
            body * 1e3 + overhead / 1e3, "compute" if compute_s > memory_s else "memory",
            epilogue=tuple(m.name for m in group[1:])))

    assumptions = [
        ("roofline: each kernel takes max(2 x MACs / peak for its precision, bytes moved / memory bandwidth) plus a "
         f"fixed {overhead:g} us launch/dispatch overhead"),
        "one clip at the graph's optimal shape (dynamic dimensions at their dynamic_ranges optimum)",
        ("bytes are each kernel's inputs, weights and outputs read or written once from DRAM: no cache reuse between "
         "layers (pessimistic for small tensors) and no extra traffic for tiling (optimistic for large ones)"),
        ("fusion modelled: constants folded, reshapes free, Q/DQ absorbed by INT8 kernels (8-bit tensors), "
         "activation / batch norm / residual Add after a Conv, Gemm or MatMul fused into it" if fuse else
         "no fusion modelled: every node but constant folding is its own kernel, every tensor at its own type"),
        "ops other than Conv, ConvTranspose, Gemm, MatMul (and their quantized forms) count 0 MACs (memory-bound)",
    ]
    if cpu:
        assumptions += [
            "peaks: " + (f"measured here: {used.get('method')}" if used.get("method") else str(used.get("source"))),
            ("fp32 layers at the float32 MatMul rate; int8 layers at the uint8 x int8 MatMulInteger rate (the CPU "
             "engine re-expresses int8 activations as uint8, --cpu-int8 auto)" if cpu_int8 == "auto" else
             "fp32 layers at the float32 MatMul rate; int8 layers at the MatMulInteger rate for their activation type "
             "as in the graph (uint8 x int8 or int8 x int8, --cpu-int8 qdq)"),
            ("fp16 layers at the fp32 rate (ONNX Runtime's CPU provider casts fp16 to fp32 on CPUs without fp16 "
             "arithmetic)"),
            ("a Q/DQ Conv or Gemm whose output does not go straight to a QuantizeLinear runs in fp32 with its "
             "DequantizeLinear nodes as kernels (ONNX Runtime forms QLinearConv / QGemm only then)"),
        ]
    else:
        assumptions += [
            (f"peaks: {used.get('source')}; dense peaks are upper bounds that real kernels do not reach, so the "
             "compute-bound time is optimistic"),
            ("fp32 layers at fp16_tflops / 2 (no fp32 figure in the profile; TensorRT runs fp32 as TF32 on tensor "
             "cores)"),
        ]
        assumptions += [f"profile note: {n}" for n in profile.notes if "figure" in n.lower() or "tops" in n.lower()]
    return Estimate(device=profile.name, profile=str(profile.path), total_ms=sum(lay.time_ms for lay in layers),
                    layers=tuple(layers), peaks={k: v for k, v in used.items()}, overhead_us=overhead,
                    assumptions=tuple(assumptions), fuse=fuse)


def compare_with_measurement(est: Estimate, measured_ms: float) -> dict[str, Any]:
    """How the estimate compares with a measured latency: ``ratio`` = estimate / measured (1 is exact, below 1 the
    estimate is optimistic) and ``error_pct`` = (estimate - measured) / measured x 100."""
    measured = float(measured_ms)
    if not measured > 0:
        raise EdgefuseError(f"measured latency must be a positive number of milliseconds, not {measured_ms!r}; "
                            "time the engine with 'edgefuse bench' first")
    return {
        "label": est.label,
        "device": est.device,
        "estimate_ms": est.total_ms,
        "measured_ms": measured,
        "ratio": est.total_ms / measured,
        "error_pct": (est.total_ms - measured) / measured * 100.0,
        "verdict": "optimistic" if est.total_ms < measured else "pessimistic",
    }
