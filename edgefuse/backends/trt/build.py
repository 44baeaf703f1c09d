"""Building a TensorRT engine: parse, configure, build, write (TensorRT 8.0 to 11.x).

Every decision is made beforehand by pure code: the flags and the DLA checks by
:mod:`edgefuse.backends.plan`, which function serves which TensorRT version by
:func:`edgefuse.backends.trt.versions.build_api`. A function whose body uses names of some TensorRT versions
only ends with a suffix naming them (``_trt80_82``, ``_trt84plus``, ``_trt8``, ``_trt8_10``, ``_trt10plus``);
``tests/test_trt_versions.py`` checks each against the names NVIDIA's bindings export in exactly those
versions, and mypy checks this module against the ``tensorrt-stubs`` (10.13) type stubs: names those stubs
lack (8.x only) are reached with ``getattr``/``setattr`` and a string, which the name check reads too.
Nothing here has run in edgefuse's CI (no GPU, no TensorRT there).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefuse.backends.trt.versions import BuildApi, build_api
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

if TYPE_CHECKING:  # mypy checks this module against NVIDIA's type stubs (tensorrt-stubs)
    import tensorrt as trt
else:
    trt = None  # bound by _bind(): importing edgefuse never imports TensorRT

log = logging.getLogger(__name__)


def _bind() -> None:
    global trt
    from edgefuse.backends.trt.adapter import import_tensorrt

    trt = import_tensorrt()


# ---------------------------------------------------------------------------------------------
# One small function per API difference (build_api names which one a version calls)

def _set_workspace_trt80_82(config: trt.IBuilderConfig, workspace_mb: int) -> None:
    # max_workspace_size: 8.0 - 8.6, removed in 10.0 (absent from the 10.13 stubs, hence setattr)
    setattr(config, "max_workspace_size", workspace_mb << 20)  # noqa: B010


def _set_workspace_trt84plus(config: trt.IBuilderConfig, workspace_mb: int) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)


def _parser_errors_trt8(parser: trt.OnnxParser) -> list[str]:
    return [f"node {parser.get_error(i).node()}: {parser.get_error(i).desc()}" for i in range(parser.num_errors)]


def _parser_errors_trt10plus(parser: trt.OnnxParser) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        out.append(f"node {error.node()} ({error.node_name()}, {error.node_operator()}): {error.desc()}")
    return out


def _cache_calibrator_trt8_10(cache: bytes) -> Any:
    """An implicit-INT8 calibrator that only reads a calibration cache (no batches: TensorRT takes the
    scales from the cache, as DLA INT8 builds need). IInt8EntropyCalibrator2: 8.0 - 10.x."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> Any:  # None: no data, the cache has every scale
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return CacheCalibrator()


def _set_calibrator_trt8_10(config: trt.IBuilderConfig, calibrator: Any) -> None:
    config.int8_calibrator = calibrator


# ---------------------------------------------------------------------------------------------
# Common to every supported version

def _network_flags(names: Sequence[str]) -> int:
    creation = 0
    for name in names:
        creation |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return creation


def _timing_cache(config: trt.IBuilderConfig, path: Path | None) -> tuple[bool, str | None]:
    """Give the builder a timing cache (the file's, when there is one). (reused, why not) where ``reused`` is
    True only when TensorRT accepted the file's cache: ``set_timing_cache`` returns False for a cache it
    rejects (another TensorRT version or GPU), and then an empty cache is used. (The boolean result is documented
    since 8.0: github.com/NVIDIA/TensorRT@8.0.1:python/docstrings/infer/pyCoreDoc.h, set_timing_cache.)"""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if data and cache is not None and config.set_timing_cache(cache, False):
        return True, None
    why = None
    if data:
        why = f"timing cache {path} rejected (another TensorRT version or GPU); built without it and rewrote it"
        log.warning("%s", why)
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):
        raise EdgefuseError("TensorRT refused an empty timing cache; build without --timing-cache")
    return False, why


def _dla_layers(network: trt.INetworkDefinition, config: trt.IBuilderConfig, dla_core: int,
                gpu_fallback: bool) -> list[str]:
    """Put the build on a DLA core; the layers DLA cannot run (before anything is built)."""
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    if gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    fell_back: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not config.can_run_on_DLA(layer):
            fell_back.append(layer.name)
    if fell_back and not gpu_fallback:
        shown = ", ".join(fell_back[:5]) + (f" and {len(fell_back) - 5} more" if len(fell_back) > 5 else "")
        raise EdgefuseError(f"{len(fell_back)} layer(s) cannot run on DLA ({shown}); pass --gpu-fallback to run them "
                            "on the GPU, or build without --dla")
    return fell_back


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


def build_engine_file(onnx_path: Path, output: Path, version: str, flags: Sequence[str],
                      network_flags: Sequence[str], profiles: Mapping[str, Sequence[Sequence[int]]],
                      workspace_mb: int | None = None, dla_core: int | None = None, gpu_fallback: bool = False,
                      timing_cache: Path | None = None, mark: Sequence[str] = (),
                      calibration_cache: Path | None = None) -> dict[str, Any]:
    """Parse, configure and build with TensorRT ``version`` (the running one); write the serialized engine to
    ``output`` atomically. Returns what the sidecar's settings record (flags, DLA core and the layers that fell
    back to the GPU, whether a timing cache was reused)."""
    _bind()
    api: BuildApi = build_api(version)
    fns = globals()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(network_flags))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = fns[api.parser_errors](parser)
        raise EdgefuseError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    if workspace_mb:
        fns[api.workspace](config, workspace_mb)
    for name in flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    if calibration_cache is not None:
        if api.calibrator is None:
            raise EdgefuseError(f"TensorRT {api.version} has no implicit INT8 calibration; build from a Q/DQ graph")
        _set_calibrator_trt8_10(config, fns[api.calibrator](calibration_cache.read_bytes()))
    fell_back = _dla_layers(network, config, dla_core, gpu_fallback) if dla_core is not None else []
    marked = _mark_all_outputs(network, mark) if mark else []
    reused, cache_note = _timing_cache(config, timing_cache) if timing_cache is not None else (False, None)
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
            "workspace_mb": workspace_mb, "reused_timing_cache": reused, "timing_cache_note": cache_note,
            "calibration_cache": str(calibration_cache) if calibration_cache else None, "marked_outputs": marked}
