"""``--backend auto`` on the CPU: which CPU backend runs this graph faster on this machine.

Like TensorRT's tactic timing, the answer is measured, not guessed: the engine is built with each
CPU backend this machine has (ONNX Runtime always; OpenVINO when ``edgefuse[openvino]`` is
installed and the graph is one OpenVINO's runner takes: one clip input, not a stream graph), each
runs the same input in interleaved blocks, and the faster is kept. OpenVINO replaces ONNX Runtime
only when its median is at least ``MARGIN`` faster: ONNX Runtime is the embedded default, its engines
load wherever edgefuse runs, and a win inside this machine's run-to-run noise is not a win.
The timings go into the sidecar (``settings.backend_choice``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MARGIN = 0.10  # OpenVINO must be this much faster (median) to replace ONNX Runtime


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str
    median_ms: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.backend, "reason": self.reason, "median_ms": self.median_ms, "runs": self.runs,
                "rule": f"openvino only when its median is >= {MARGIN:.0%} below onnxruntime's"}


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def time_interleaved(runners: Mapping[str, Callable[[np.ndarray], Any]], x: np.ndarray, budget_s: float = 2.0,
                     block: int = 3, min_rounds: int = 3, max_rounds: int = 30,
                     after_block: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Milliseconds per run of each runner on ``x``: every runner runs ``block + 1`` consecutive
    runs in turn (the first of each block dropped: the previous runner's idle threads may still hold
    the cores), for at least ``min_rounds`` rounds and until ``budget_s`` seconds have passed."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():
        fn(x)  # warm-up: first-run allocations
    start = time.perf_counter()
    for i in range(max_rounds):
        if i >= min_rounds and time.perf_counter() - start >= budget_s:
            break
        for name, fn in runners.items():
            for j in range(block + 1):
                t = time.perf_counter()
                fn(x)
                if j:
                    times[name].append(1000 * (time.perf_counter() - t))
            if after_block is not None:
                after_block()  # progress
    return times


def decide(times: Mapping[str, list[float]]) -> Choice:
    """ONNX Runtime unless OpenVINO's median is at least MARGIN below it."""
    med = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    runs = {k: len(v) for k, v in times.items()}
    ort_ms, ov_ms = med["onnxruntime"], med["openvino"]
    if ov_ms <= (1 - MARGIN) * ort_ms:
        return Choice("openvino", f"OpenVINO {ov_ms:.2f} ms vs ONNX Runtime {ort_ms:.2f} ms (median) on this machine",
                      med, runs)
    return Choice("onnxruntime", f"ONNX Runtime {ort_ms:.2f} ms vs OpenVINO {ov_ms:.2f} ms (median): OpenVINO not "
                  f"{MARGIN:.0%} faster on this machine", med, runs)


def timing_input(profiles: Mapping[str, list[list[int]]], meta: Mapping[str, Any]) -> np.ndarray | None:
    """A random clip batch of the graph's optimal shape, or None when the graph is not a single-input
    clip graph (stream graphs carry states OpenVINO's runner does not feed)."""
    if len(profiles) != 1 or meta.get("stream_states"):
        return None
    (shapes,) = profiles.values()
    opt = shapes[1]
    if len(opt) != 5:
        return None
    return np.random.default_rng(0).standard_normal(opt).astype(np.float32)  # (N, T, 3, H, W)
