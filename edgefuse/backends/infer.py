"""``edgefuse infer``: device_runner.py's run for any engine edgefuse loads, where edgefuse is installed.

``infer(InferConfig(engine, clips, out))`` runs an engine (ONNX Runtime, OpenVINO, TensorRT; or an .onnx graph
without a sidecar, in ONNX Runtime) on a clip folder written by :func:`edgefuse.backends.device_io.write_clip_folder`
and writes the same ``logits.npy`` and ``logits.json`` as ``device_runner.py`` (with the engine's backend and its
version in the record), read back by :func:`edgefuse.backends.device_io.read_runner_logits` and by
``edgefuse validate OUT_DIR --clips CLIPS_DIR``. ``on_batch`` gets each batch's results as soon as it has run
(``edgefuse infer --stream`` prints them as device_runner.py's ``--stream`` lines). The clip folder, batching and
output files are device_runner.py's own pure helpers, so both read and write exactly the same folders.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse import __version__
from edgefuse.backends import device_runner as dr
from edgefuse.backends.device_io import StreamBatch
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends import Runner

log = logging.getLogger(__name__)

__all__ = ["EngineInput", "InferConfig", "InferResult", "engine_input", "infer"]

ANY_SIZE = 2**31 - 1  # the upper end of a dynamic dimension the graph gives no range for (ONNX Runtime takes any)


@dataclass(frozen=True)
class InferConfig:
    engine: Path  # an engine with its sidecar (any backend), or an .onnx graph (ONNX Runtime)
    clips: Path  # a clip folder (manifest.json + clips-*.npy)
    out: Path  # the folder for logits.npy and logits.json
    batch: int | None = None  # clips per run of a dynamic-batch engine (None: 1); a static batch runs as built
    warmup: int = 2  # untimed runs of the first batch
    threads: int | None = None  # CPU backends' threads (None: the engine's saved setting, else the backend's default)
    progress: bool = True


@dataclass(frozen=True)
class InferResult:
    """What :func:`infer` wrote: the folder, the clips run, the batching and the mean time of a run."""

    out_dir: Path
    clips: int
    batch: int
    backend: str
    backend_version: str
    mean_compute_ms: float
    engine: str = ""
    runs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "clips": self.clips, "batch": self.batch, "backend": self.backend,
                "backend_version": self.backend_version, "mean_compute_ms": self.mean_compute_ms,
                "engine": self.engine, "runs": self.runs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InferResult:
        return cls(Path(d["out_dir"]), int(d["clips"]), int(d["batch"]), str(d["backend"]), str(d["backend_version"]),
                   float(d["mean_compute_ms"]), str(d.get("engine", "")), int(d.get("runs", 0)))


@dataclass(frozen=True)
class EngineInput:
    """The engine's clip input: its name, its shape (-1 where dynamic) and, when some dimension is dynamic, the
    min / opt / max shapes it takes (device_runner.py's ``plan_batch`` and ``check_clip_shape`` read these)."""

    name: str
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None


def engine_input(path: Path, runner: Runner) -> EngineInput:
    """The clip input of the engine at ``path`` (loaded as ``runner``): from its sidecar's optimization profile,
    or, for an .onnx graph run without a sidecar, from the graph's input and its metadata's dynamic ranges."""
    from edgefuse.backends.sidecar import read_sidecar, sidecar_path
    from edgefuse.graph.runner import OrtRunner

    profiles = read_sidecar(path).profiles if sidecar_path(path).is_file() else {}
    if len(profiles) > 1:
        raise EdgefuseError(f"{path}: the engine has {len(profiles)} inputs ({', '.join(profiles)}); infer feeds clip "
                            "engines with one input (stream engines with state inputs are not supported)")
    if profiles:
        name, shapes = next(iter(profiles.items()))
        lo, opt, hi = (tuple(int(d) for d in s) for s in shapes)
        shape = tuple(a if a == b else -1 for a, b in zip(lo, hi))
        return EngineInput(name, shape, (lo, opt, hi) if -1 in shape else None)
    if not isinstance(runner, OrtRunner):
        raise EdgefuseError(f"{path}: its sidecar gives no input shapes (profiles); rebuild the engine with "
                            "'edgefuse build-engine'")
    ranges = runner.metadata.get("dynamic_ranges") or {}
    bounds: list[tuple[int, ...]] = []
    for d in runner.input_dims:
        given = ranges.get(str(d))
        if isinstance(d, int) and d > 0:
            bounds.append((d, d, d))
        elif isinstance(given, (list, tuple)) and len(given) == 3:
            bounds.append(tuple(int(v) for v in given))
        else:  # a dynamic dimension the metadata gives no range for
            bounds.append((1, 1, ANY_SIZE))
    shape = tuple(b[0] if b[0] == b[2] else -1 for b in bounds)
    lo, opt, hi = (tuple(b[k] for b in bounds) for k in range(3))
    return EngineInput(runner.input, shape, (lo, opt, hi) if -1 in shape else None)


def check_clips(path: Path, inp: EngineInput, clip_shape: Sequence[int]) -> None:
    """The clip folder's clip shape against the engine's input: static sizes equal, dynamic ones in range."""
    try:
        dr.check_clip_shape(inp.shape, clip_shape, inp.name)
    except dr.RunnerError as e:
        raise EdgefuseError(f"{path}: {e}") from None
    if inp.profile is None:
        return
    lo, _, hi = inp.profile
    for i, size in enumerate(clip_shape, start=1):
        if not lo[i] <= size <= hi[i]:
            span = f"{lo[i]}..{hi[i]}" if hi[i] < ANY_SIZE else f"{lo[i]} or more"
            raise EdgefuseError(f"{path}: the clips are {list(clip_shape)}, the engine's input {inp.name} takes "
                                f"{span} at dimension {i}; write the clips at a size the engine was built for")


def _run(runner: Runner, data: np.ndarray) -> np.ndarray:
    """One run of ``data`` as one batch."""
    from edgefuse.graph.runner import OrtRunner

    if isinstance(runner, OrtRunner) and runner.batch is None and not runner.is_stream:
        # a dynamic batch: OrtRunner.run would cut it into runs of one clip each
        return np.asarray(runner.session.run([runner.output], {runner.input: data})[0])
    return np.asarray(runner.run(data))


def _record(runner: Runner, inp: EngineInput, output_name: str) -> dict[str, Any]:
    """The run record's facts about the engine: backend, its version, what it ran on (TensorRT: its API and CUDA
    bindings too, under device_runner.py's names)."""
    info = dict(runner.info)
    backend = str(runner.backend)
    version = str(info.get("backend_version") or "")
    hardware = dict(info.get("hardware") or {})
    if backend == "onnxruntime" and not version:  # an .onnx graph without a sidecar
        from edgefuse.backends.ort.build import ort_version
        from edgefuse.backends.ort.cpu import cpu_identity

        version, hardware = ort_version(), dict(cpu_identity())
    trt = backend == "tensorrt"
    api = str(getattr(getattr(runner, "api", None), "io", "")) if trt else ""
    cuda = type(getattr(runner, "cuda", None)).__name__ if trt else ""
    return {"backend": backend, "backend_version": version, "tensorrt": version if trt else "",
            "api": {"trt80_84": "binding"}.get(api, "tensor" if api else ""),
            "cuda": {"CudaPython": "cuda-python", "PyCuda": "pycuda"}.get(cuda, cuda),
            "gpu": hardware if trt else {}, "hardware": hardware, "device": str(info.get("device") or ""),
            "input_name": inp.name, "output_name": output_name, "runner": "edgefuse infer", "edgefuse": __version__}


def _output_name(runner: Runner) -> str:
    out = getattr(runner, "output", None) or (getattr(runner, "outputs", None) or [""])[0]
    return str(out)


def infer(cfg: InferConfig, on_batch: Callable[[StreamBatch], None] | None = None) -> InferResult:
    """Run ``cfg.engine`` on the clip folder ``cfg.clips`` batch by batch and write ``logits.npy`` and
    ``logits.json`` to ``cfg.out`` as device_runner.py does; ``on_batch`` gets each batch as soon as it has run.
    compute_ms of a batch is the wall time of the runner's run (TensorRT: its own H2D / compute / D2H split)."""
    from edgefuse import backends
    from edgefuse.progress import Progress
    from edgefuse.utils import check_output

    engine, clips_dir = Path(cfg.engine), str(cfg.clips)
    if cfg.batch is not None and cfg.batch < 1:
        raise EdgefuseError(f"batch {cfg.batch}: must be at least 1")
    if cfg.warmup < 0:
        raise EdgefuseError(f"warmup {cfg.warmup}: must be 0 or more")
    if not engine.is_file():
        raise EdgefuseError(f"{engine}: no such engine file; give an engine 'edgefuse build-engine' wrote (with its "
                            "sidecar) or an .onnx graph")
    check_output(cfg.out, inputs=(engine, cfg.clips), what="logits folder", folder=True)  # before any work
    try:
        manifest = dr.read_manifest(clips_dir)
    except dr.RunnerError as e:
        raise EdgefuseError(str(e)) from None
    runner = backends.load(engine, threads=cfg.threads)
    if runner.metadata.get("stream_states"):
        raise EdgefuseError(f"{engine}: a stream graph (one frame and its state per run); infer runs clip engines: "
                            "export without --policy stream")
    inp = engine_input(engine, runner)
    clip_shape = [int(d) for d in manifest["clip_shape"]]
    check_clips(engine, inp, clip_shape)
    requested = cfg.batch
    if requested is None and inp.shape[0] < 0 and inp.profile is not None:
        requested = max(1, inp.profile[0][0])  # a dynamic batch: one clip per run unless asked
    try:
        batch, pad = dr.plan_batch(inp.shape, inp.profile, requested)
        first = next(dr.iter_batches(clips_dir, manifest, batch, pad))[1]
    except dr.RunnerError as e:
        raise EdgefuseError(f"{engine}: {e}") from None
    record = _record(runner, inp, _output_name(runner))
    log.info("%s: %s %s, %d clips of %s, %d per run", engine.name, record["backend"], record["backend_version"],
             manifest["count"], "x".join(map(str, clip_shape)), batch)
    for _ in range(cfg.warmup):
        _run(runner, np.ascontiguousarray(first, dtype=np.float32))
    rows: list[np.ndarray] = []
    runs: list[tuple[list[str], dict[str, float]]] = []
    bar = Progress(int(manifest["count"]), "infer", enabled=cfg.progress)
    try:
        for ids, data, n in dr.iter_batches(clips_dir, manifest, batch, pad):
            start = time.perf_counter()
            out = _run(runner, np.ascontiguousarray(data, dtype=np.float32))
            wall_ms = (time.perf_counter() - start) * 1e3
            split = dict(runner.timings)  # TensorRT's own split of the run; CPU backends have none
            times = {k: round(float(split.get(k, 0.0)), 4) for k in dr.TIMING_KEYS} if split else \
                {"h2d_ms": 0.0, "compute_ms": round(wall_ms, 4), "d2h_ms": 0.0}
            rows.append(out.reshape(len(data), -1)[:n].astype(np.float32, copy=False))
            if on_batch is not None:
                on_batch(StreamBatch(len(runs), tuple(ids), rows[-1], **times))
            runs.append((ids, times))
            bar.update(n)
    except dr.RunnerError as e:
        raise EdgefuseError(str(e)) from None
    finally:
        bar.close()
    record.update({"batch": batch, "padded": pad, "warmup": cfg.warmup, "input_dtype": "float32",
                   "clips_dtype": manifest["dtype"], "engine": engine.name, "threads": cfg.threads,
                   "timings": dr.per_clip_timings(runs)})
    try:
        dr.write_outputs(str(cfg.out), dr.manifest_ids(manifest), np.concatenate(rows), record)
    except (dr.RunnerError, OSError) as e:
        raise EdgefuseError(f"{cfg.out}: the logits could not be written ({e}); check the folder") from None
    mean = sum(t["compute_ms"] for _, t in runs) / len(runs)
    return InferResult(Path(cfg.out), int(manifest["count"]), batch, str(record["backend"]),
                       str(record["backend_version"]), round(mean, 4), engine.name, len(runs))
