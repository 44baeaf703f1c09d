"""CPU peaks measured here: what ONNX Runtime's kernels achieve on this machine (MatMul, MatMulInteger, a
streaming Add), the figures a CPU estimate charges layers at."""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from edgefuse.backends.ort.cpu import cpu_identity
from edgefuse.errors import EdgefuseError
from edgefuse.graph.ort import ort_session


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    g = onnx.helper.make_graph(nodes, "peak", inputs, outputs, inits)
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)], producer_name="edgefuse.estimate")
    m.ir_version = 8
    return m


def _best(run: Callable[[], object], repeats: int) -> float:
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
    sess = ort_session(m, threads)
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
    sess = ort_session(m, threads)
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
    cpu = cpu_identity()
    isa = cpu["isa"]
    return (("fp32_gflops", fp32 / 1e9), ("int8_u8s8_gops", u8s8 / 1e9), ("int8_s8s8_gops", s8s8 / 1e9),
            ("bandwidth_gbs", bw / 1e9), ("threads", threads), ("size", size), ("repeats", repeats),
            ("bandwidth_mb", bandwidth_mb), ("cpu", str(cpu["name"])), ("logical_cpus", os.cpu_count()),
            ("isa", list(isa) if isinstance(isa, (list, tuple)) else []), ("onnxruntime", ort.__version__),
            ("method", method))


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
