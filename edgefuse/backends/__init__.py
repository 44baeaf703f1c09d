"""Engines: build one from an ONNX graph for a device, load any engine (or graph) as a runner.

```python
from edgefuse import backends

result = backends.build_engine(backends.BuildConfig(Path("m.int8.onnx"), Path("m.engine"), device="cpu"))
runner = backends.load("m.engine")        # or "m.onnx": run directly in ONNX Runtime
logits = runner.run(clips)                # (N, T, 3, H, W) float32 -> (N, K)
```

Backends: ONNX Runtime on the CPU (:mod:`.ort`, the default), OpenVINO on the CPU (:mod:`.openvino`,
optional: ``edgefuse[openvino]``) and
TensorRT on NVIDIA GPUs and Jetsons (:mod:`.trt`, needs ``tensorrt`` and cuda-python or pycuda, imported
only when used; or :mod:`.trtexec` where the Python bindings are missing). Each engine ``X`` has a sidecar ``X.json`` (:mod:`.sidecar`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgefuse.backends.sidecar import Sidecar
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.backends.plan import BuildPlan
    from edgefuse.devices import DeviceProfile
    from edgefuse.graph.runner import Outputs

log = logging.getLogger(__name__)

__all__ = ["BuildConfig", "BuildResult", "Runner", "build_engine", "load"]


class Runner(Protocol):
    """What every engine runner offers: ``run`` clips (N, T, 3, H, W) -> logits (N, K); ``run_logits_and`` the
    logits and the intermediate tensors it can expose (ONNX Runtime's: those given as ``extra_outputs`` to
    :func:`load`; the other backends expose none and refuse a request for some); ``timings``: the backend's own
    split of its last run in ms (TensorRT: h2d_ms, compute_ms, d2h_ms), empty when it has none; ``gpu_memory_mb``:
    the engine's GPU memory (TensorRT), else None."""

    backend: str
    info: dict[str, Any]
    metadata: dict[str, Any]
    timings: dict[str, float]
    gpu_memory_mb: float | None

    def run(self, clips: np.ndarray) -> np.ndarray: ...

    def run_logits_and(self, clips: np.ndarray, tensors: Sequence[str] = (), progress: bool = False,
                       desc: str = "") -> Outputs: ...


@dataclass(frozen=True)
class BuildConfig:
    model: Path
    output: Path
    device: str = "auto"
    precision: str = "auto"
    shapes: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    workspace_mb: int | None = None
    dla: int | None = None
    gpu_fallback: bool = False
    timing_cache: Path | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads (default: ONNX Runtime's, one per physical core, pinned)
    cpu_int8: str = "auto"  # ONNX Runtime INT8: auto | exact | qdq (edgefuse.backends.ort.build.build_ort)
    # cpu: onnxruntime (auto) or openvino (optional, edgefuse.backends.openvino); GPU / Jetson: tensorrt (the Python
    # bindings) or trtexec; auto = the bindings where they import, else trtexec
    backend: str = "auto"
    calibration_cache: Path | None = None  # DLA INT8 (implicit): the cache 'edgefuse calibrate --trt-cache' wrote


@dataclass(frozen=True)
class BuildResult:
    """What ``build_engine`` wrote: the engine, its sidecar file and the sidecar's facts."""

    path: Path
    sidecar_path: Path
    sidecar: Sidecar

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sidecar_path": str(self.sidecar_path), "sidecar": self.sidecar.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildResult:
        return cls(Path(d["path"]), Path(d["sidecar_path"]), Sidecar.from_dict(d["sidecar"]))


def build_engine(cfg: BuildConfig) -> BuildResult:
    """Build ``cfg.model`` for ``cfg.device``: an ONNX Runtime engine for ``cpu``, a TensorRT
    engine for a GPU or Jetson profile (on that machine, with TensorRT installed). The engine and its sidecar
    are built in a staging folder and appear together or not at all (an interrupt included)."""
    from edgefuse.backends.sidecar import engine_set, sidecar_path

    with engine_set(cfg.output) as staged:
        result = _build_engine(dataclasses.replace(cfg, output=staged))
    return dataclasses.replace(result, path=cfg.output, sidecar_path=sidecar_path(cfg.output))


def _build_engine(cfg: BuildConfig) -> BuildResult:
    """:func:`build_engine` into ``cfg.output`` as it is (a staging path)."""
    from edgefuse.backends.plan import graph_precision, optimization_profiles, plan_precision
    from edgefuse.backends.sidecar import write_sidecar
    from edgefuse.devices import detect_device, get_device
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import dims, graph_inputs
    from edgefuse.utils import sha256_file

    start = time.monotonic()
    if cfg.device in ("auto", "jetson"):
        profile = detect_device()
        if cfg.device == "jetson" and profile.kind != "jetson":
            raise EdgefuseError(f"--device jetson: this machine is not a Jetson (it is {profile.title}); build on the "
                                "Jetson itself, or name its profile ('edgefuse devices')")
    else:
        profile = get_device(cfg.device)
    model = load_onnx(cfg.model)
    meta = read_metadata(model)
    graph = graph_precision(model, meta)
    inputs = {vi.name: dims(vi) for vi in graph_inputs(model)}
    profiles = optimization_profiles(inputs, meta.get("dynamic_ranges") or {}, cfg.shapes)
    if cfg.dla is not None and (profile.dla_cores or 0) <= cfg.dla:
        raise EdgefuseError(f"--dla {cfg.dla}: {profile.name} has {profile.dla_cores or 0} DLA core(s); "
                            + ("build without --dla" if not profile.dla_cores else f"use 0..{profile.dla_cores - 1}"))
    calibration = meta.get("calibration") if isinstance(meta.get("calibration"), dict) else None
    if cfg.backend not in BACKENDS:
        raise EdgefuseError(f"--backend {cfg.backend}: use one of {', '.join(BACKENDS)}")
    if cfg.backend in ("onnxruntime", "openvino") and profile.kind != "cpu":
        raise EdgefuseError(f"--backend {cfg.backend} builds for the CPU, not for {profile.name}: use --device cpu")
    if cfg.backend in ("tensorrt", "trtexec") and profile.kind == "cpu":
        raise EdgefuseError(f"--backend {cfg.backend} builds for NVIDIA GPUs and Jetsons, not for the CPU: name a GPU "
                            "or Jetson profile with --device (or auto on that machine)")
    bf16 = cfg.precision == "bf16" and profile.kind == "cpu" and cfg.backend in ("auto", "openvino")
    if cfg.precision == "bf16" and not bf16:
        raise EdgefuseError(f"--precision bf16 is OpenVINO's on the CPU (--device cpu --backend openvino), not "
                            f"{'ONNX Runtime' if profile.kind == 'cpu' else profile.name}'s: use fp32 or int8")
    if bf16 and graph != "fp32":
        raise EdgefuseError("--precision bf16 (OpenVINO) computes an FP32 graph in bf16: build from the FP32 graph")
    # the device's verdict, before any backend is imported (a DLA build has its own rules: backends.plan.plan_dla)
    if cfg.dla is None:
        plan_precision("auto" if bf16 else cfg.precision, graph, profile)
    if profile.kind == "cpu":
        plan = plan_precision("auto" if bf16 else cfg.precision, graph, profile)
        from edgefuse.backends.ort.cpu import cpu_identity

        backend, version, settings, precision = _build_cpu(cfg, model, graph, plan.precision, bf16, profiles, meta)
        plan = dataclasses.replace(plan, precision=precision)
        hardware = cpu_identity()
    else:
        backend = "tensorrt"
        plan, version, settings, hardware = _build_trt(cfg, graph, profile, profiles)
    for note in plan.notes:
        log.info("%s: %s", cfg.output, note)
    sidecar = Sidecar(
        backend=backend, backend_version=version, device=profile.name, hardware=hardware, precision=plan.precision,
        engine_sha256=sha256_file(cfg.output), source_onnx=str(cfg.model),
        source_onnx_sha256=sha256_file(Path(cfg.model)), profiles=profiles,
        settings=settings, calibration=calibration, metadata=meta, build_seconds=round(time.monotonic() - start, 2),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), notes=list(plan.notes),
    )
    side = write_sidecar(cfg.output, sidecar)
    return BuildResult(cfg.output, side, sidecar)


BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "trtexec")


def trt_plan(cfg: BuildConfig, graph: str, profile: DeviceProfile, version: str,
              profiles: dict[str, list[list[int]]]) -> BuildPlan:
    """The TensorRT build plan for ``version``: on a DLA core by the DLA rules, else on the GPU."""
    from edgefuse.backends.plan import plan_dla, plan_precision

    if cfg.dla is not None:
        cache = cfg.calibration_cache
        header = None
        if cache is not None:
            if not cache.is_file():
                raise EdgefuseError(f"{cache}: no such calibration cache; write one with 'edgefuse calibrate ... "
                                    "--trt-cache FILE'")
            header = (cache.read_text(encoding="utf-8", errors="replace").splitlines() or [""])[0]
        return plan_dla(cfg.precision, graph, profile, version, cfg.dla, profiles,
                        str(cache) if cache is not None else None, header)
    if cfg.calibration_cache is not None:
        raise EdgefuseError("a calibration cache is for INT8 on a DLA core (--dla N --precision int8); on the GPU build "
                            "from the Q/DQ graph 'edgefuse calibrate' writes")
    return plan_precision(cfg.precision, graph, profile, version)


def _build_trt(cfg: BuildConfig, graph: str, profile: DeviceProfile, profiles: dict[str, list[list[int]]]
               ) -> tuple[BuildPlan, str, dict[str, Any], dict[str, Any]]:
    """(plan, TensorRT version, sidecar settings, GPU identity) of a TensorRT engine written to ``cfg.output``: with
    the Python bindings (the GPU's identity read before the build), or with trtexec where they are missing
    (``backend`` auto) or asked for."""
    from edgefuse.backends.trt import adapter

    use_trtexec = cfg.backend == "trtexec"
    if cfg.backend == "auto" and not adapter.bindings_available():
        from edgefuse.backends.trtexec import find_trtexec

        try:
            find_trtexec()
        except EdgefuseError:
            raise EdgefuseError(f"{adapter.INSTALL_HINT}; or install trtexec (it ships with every JetPack and "
                                "TensorRT) and build with --backend trtexec") from None
        use_trtexec = True
    if use_trtexec:
        from edgefuse.backends.trtexec import build_with_trtexec, probe_version

        version = probe_version()
        plan = trt_plan(cfg, graph, profile, version, profiles)
        settings = build_with_trtexec(Path(cfg.model), Path(cfg.output), plan.flags, plan.network_flags, profiles,
                                      cfg.workspace_mb, plan.dla_core, cfg.gpu_fallback, cfg.timing_cache,
                                      version=version,
                                      calibration_cache=Path(plan.calibration_cache) if plan.calibration_cache else None)
        return plan, str(settings["trtexec_version"]), settings, dict(settings["trtexec_device"] or {})
    from edgefuse.backends.trt.build import build_engine_file
    from edgefuse.backends.trt.cuda import gpu_identity

    version = adapter.tensorrt_version()
    plan = trt_plan(cfg, graph, profile, version, profiles)
    hardware = gpu_identity()  # before anything is built: no engine without the facts of its sidecar
    settings = build_engine_file(cfg.model, cfg.output, version, plan.flags, plan.network_flags, profiles,
                                 cfg.workspace_mb, plan.dla_core, cfg.gpu_fallback, cfg.timing_cache,
                                 calibration_cache=Path(plan.calibration_cache) if plan.calibration_cache else None)
    if settings.get("timing_cache_note"):
        plan = dataclasses.replace(plan, notes=(*plan.notes, str(settings["timing_cache_note"])))
    return plan, version, settings, hardware


def _build_cpu(cfg: BuildConfig, model: Any, graph: str, precision: str, bf16: bool,
               profiles: dict[str, list[list[int]]], meta: dict[str, Any]) -> tuple[str, str, dict[str, Any], str]:
    """(backend, its version, settings, precision) of the CPU engine written to ``cfg.output``:
    the backend asked for, or with ``auto`` the faster on this machine (:mod:`.choose`)."""
    from edgefuse.backends.choose import Choice, decide, openvino_available, time_interleaved, timing_input
    from edgefuse.backends.ort.build import build_ort, ort_version

    int8 = cfg.cpu_int8 if graph == "int8" else None

    def with_openvino(output: Path) -> tuple[str, str, dict[str, Any], str]:
        from edgefuse.backends.openvino import build_openvino, openvino_version

        p = "bf16" if bf16 else precision
        return "openvino", openvino_version(), build_openvino(Path(cfg.model), output, p, cfg.threads), p

    def with_ort(output: Path, choice: Choice | None = None) -> tuple[str, str, dict[str, Any], str]:
        settings = build_ort(model, output, cfg.threads, int8=int8)
        if choice is not None:
            settings["backend_choice"] = choice.to_dict()
        return "onnxruntime", ort_version(), settings, precision

    if cfg.backend == "openvino" or bf16:
        return with_openvino(cfg.output)
    if cfg.backend == "onnxruntime":
        return with_ort(cfg.output)
    x = timing_input(profiles, meta)
    if not openvino_available():
        return with_ort(cfg.output, Choice("onnxruntime", "OpenVINO is not installed (pip install "
                                           "'edgefuse[openvino]' lets --backend auto time it too)"))
    if x is None:
        return with_ort(cfg.output, Choice("onnxruntime", "a stream or multi-input graph: OpenVINO's runner takes "
                                           "one clip input"))
    out = Path(cfg.output)
    tmp = {name: out.with_name(f".{out.name}.{name}") for name in ("onnxruntime", "openvino")}
    try:
        built = {"onnxruntime": with_ort(tmp["onnxruntime"])}
        try:
            built["openvino"] = with_openvino(tmp["openvino"])
        except EdgefuseError as e:
            log.info("%s: OpenVINO left out of the choice: %s", out, e)
            os.replace(tmp["onnxruntime"], out)
            backend, version, settings, p = built["onnxruntime"]
            settings["backend_choice"] = Choice("onnxruntime", f"OpenVINO could not build it ({e})").to_dict()
            return backend, version, settings, p
        from edgefuse.backends.openvino import OpenVinoRunner
        from edgefuse.graph.runner import OrtRunner

        runners = {"onnxruntime": OrtRunner(tmp["onnxruntime"], threads=cfg.threads, optimize=False).run,
                   "openvino": OpenVinoRunner(tmp["openvino"], {"settings": built["openvino"][2]}, cfg.threads).run}
        log.info("%s: timing ONNX Runtime and OpenVINO on a %s input (--backend auto)", out,
                 "x".join(str(d) for d in x.shape))
        choice = decide(time_interleaved(runners, x))
        del runners
        log.info("%s: %s chosen: %s", out, choice.backend, choice.reason)
        os.replace(tmp[choice.backend], out)
        backend, version, settings, p = built[choice.backend]
        settings["backend_choice"] = choice.to_dict()
        return backend, version, settings, p
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)


def load(path: str | Path, threads: int | None = None, extra_outputs: Sequence[str] = ()) -> Runner:
    """A runner for an engine (its sidecar says which backend) or an ONNX graph (ONNX Runtime);
    ``extra_outputs``: intermediate tensors an ONNX Runtime runner also returns (those the graph has)."""
    from edgefuse.backends.sidecar import read_sidecar, sidecar_path

    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such engine or ONNX file; check the path")
    if p.suffix.lower() == ".onnx" and not sidecar_path(p).is_file():
        from edgefuse.graph.io import load_onnx
        from edgefuse.graph.runner import OrtRunner

        return OrtRunner(load_onnx(p), extra_outputs=extra_outputs, threads=threads)
    sidecar = read_sidecar(p)
    if sidecar.backend == "onnxruntime":
        from edgefuse.backends.ort.build import load_ort_engine

        return load_ort_engine(p, threads, extra_outputs)
    if sidecar.backend == "openvino":
        from edgefuse.backends.openvino import load_openvino_engine

        return load_openvino_engine(p, sidecar, threads)
    if sidecar.backend == "tensorrt":
        from edgefuse.backends.sidecar import check_compatible, check_engine_bytes
        from edgefuse.backends.trt import adapter
        from edgefuse.backends.trt.cuda import gpu_identity
        from edgefuse.backends.trt.runner import TrtRunner
        from edgefuse.devices import detect_device

        here = detect_device()
        check_compatible(p, sidecar, adapter.tensorrt_version(), gpu_identity(), device=here.name,
                         dla_cores=here.dla_cores)
        check_engine_bytes(p, sidecar)
        return TrtRunner(p, sidecar.to_dict())
    raise EdgefuseError(f"{p}: unknown backend {sidecar.backend!r} in its sidecar; rebuild with 'edgefuse build-engine'")
