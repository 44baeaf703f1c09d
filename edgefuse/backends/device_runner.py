#!/usr/bin/env python3
"""edgefuse device runner: run a TensorRT engine on a folder of preprocessed clips and write the logits.

For Jetsons where edgefuse itself cannot be installed (JetPack 4.6: Python 3.6, TensorRT 8.0/8.2; JetPack 5:
Python 3.8, TensorRT 8.4/8.5). One self-contained file: the standard library, numpy, ``tensorrt`` and
cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) or pycuda. Runs on Python 3.6 and later.
Copy it to the device (``edgefuse.backends.device_io.runner_path()`` is where the package installed it)::

    python3 device_runner.py ENGINE CLIPS_DIR -o OUT_DIR [--batch N] [--warmup N] [--stream] [--dry-run]

CLIPS_DIR, written on the workstation by ``edgefuse.backends.device_io.write_clip_folder``:
  manifest.json  {"format": "edgefuse-clips", "version": 1, "input_name": "clips", "dtype": "float32",
                  "clip_shape": [T, 3, H, W], "count": N, "output_name": null,
                  "files": [{"file": "clips-00000.npy", "ids": ["a", "b"]}, ...]}
  clips-*.npy    one array (len(ids), *clip_shape) per file; a .npz holds it under the key "clips";
                 a file of one clip may hold just clip_shape
OUT_DIR, read back by ``edgefuse.backends.device_io.read_runner_logits``:
  logits.npy     (N, K) float32, rows in manifest order
  logits.json    {"format": "edgefuse-logits", "version": 1, "ids": [...], "shape": [N, K], "backend": "tensorrt",
                  "backend_version": "8.2.1.8", "tensorrt": "8.2.1.8", "api": "binding" | "tensor",
                  "cuda": "cuda-python" | "pycuda", "gpu": {...}, "batch": B, "warmup": W, "input_name": ...,
                  "output_name": ..., "engine": file name,
                  "timings": [{"id", "batch_index", "clips_in_batch", "h2d_ms", "compute_ms", "d2h_ms"}, ...]}
                 (``edgefuse infer``, the same run through any edgefuse engine, writes the same files with its
                 own "backend" and "backend_version"; records without "backend" are TensorRT's)
With --stream, each batch's results are also printed as soon as it has run, one line per batch on stdout
(flushed; read with ``edgefuse.backends.device_io.parse_stream_line``), so a reader keeps every clip reported
before a device drops; anything else the run prints (the final summary, TensorRT's or CUDA's own output) goes to
stderr while it streams:
  @@edgefuse-batch {"batch_index": i, "ids": [...], "logits": [[float, ...], ...], "h2d_ms": x,
                    "compute_ms": y, "d2h_ms": z}
  one row of logits per id (the padding of a static batch left out), each value float() of the float32 logit,
  so it reads back to the same float32 bits (:func:`stream_line` writes it, ``edgefuse infer --stream`` too).
Exit status: 0 done; 2 bad arguments, unreadable files, TensorRT or CUDA bindings missing; 1 TensorRT or CUDA
failing at run time. Every error is one line on stderr.

TensorRT API per version (chosen by ``api_for_version``): 8.0-8.4 the binding-index API (``set_binding_shape``,
``execute_async_v2``), 8.5 and later the tensor-name API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); sources: github.com/NVIDIA/TensorRT python/src/infer/pyCore.cpp at tags 8.0.1, 8.2.1,
8.4.1, 8.5.1, v10.0.0, v11.1. Functions using names of some versions only end with ``_trt80_84`` / ``_trt85plus``.
"""
import argparse
import atexit
import ctypes
import importlib
import json
import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# typing's List / Dict / Optional stay: this file runs on Python 3.6, where list[int] in an annotation fails
# ruff: noqa: UP006, UP035, UP045

FORMAT, LOGITS_FORMAT, VERSION = "edgefuse-clips", "edgefuse-logits", 1
MANIFEST, LOGITS_NPY, LOGITS_JSON = "manifest.json", "logits.npy", "logits.json"
DTYPES = ("float32", "float16")
USAGE = "python3 device_runner.py ENGINE CLIPS_DIR -o OUT_DIR [--batch N] [--warmup N] [--stream] [--dry-run]"
# --stream: one line per batch on stdout, STREAM_MARK, a space, then a JSON object of STREAM_KEYS (stream_line)
STREAM_MARK = "@@edgefuse-batch"
STREAM_KEYS = ("batch_index", "ids", "logits", "h2d_ms", "compute_ms", "d2h_ms")
TIMING_KEYS = ("h2d_ms", "compute_ms", "d2h_ms")
TRT_HINT = ("TensorRT's Python package (tensorrt) is not installed for this Python: on a Jetson it comes with "
            "JetPack for the system python3 (sudo apt install python3-libnvinfer; check with 'dpkg -l | grep "
            "nvinfer'; a virtualenv needs --system-site-packages), on a desktop GPU 'pip install tensorrt'")
CUDA_HINT = ("no CUDA bindings for Python (cuda-python or pycuda) are installed: on JetPack 4.6 (Python 3.6) "
             "'pip3 install pycuda' with /usr/local/cuda/bin on the PATH; on JetPack 5 and later 'pip3 install "
             "cuda-python' of your CUDA major version, or pycuda")


class RunnerError(Exception):
    """One line for stderr and the exit status (2: arguments, files, missing packages; 1: run time)."""

    def __init__(self, message: str, code: int = 2) -> None:
        Exception.__init__(self, message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Pure helpers: the clip folder, batching, the output files (no TensorRT, no CUDA)

def read_manifest(clips_dir: str) -> Dict[str, Any]:
    """The manifest of a clip folder, checked: format, dtype, shapes, files present, ids unique and counted."""
    path = os.path.join(clips_dir, MANIFEST)
    if not os.path.isdir(clips_dir):
        raise RunnerError(f"{clips_dir}: not a folder; pass the folder written by edgefuse's write_clip_folder")
    if not os.path.isfile(path):
        raise RunnerError(f"{clips_dir}: no {MANIFEST}; write the folder with edgefuse's write_clip_folder")
    try:
        with open(path) as f:
            m = json.load(f)
    except ValueError as e:
        raise RunnerError(f"{path}: not valid JSON ({e}); write it again with edgefuse")
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise RunnerError(f"{path}: not an edgefuse clip manifest (format is not {FORMAT!r})")
    if m.get("version") != VERSION:
        raise RunnerError(f"{path}: manifest version {m.get('version')!r}, this runner reads {VERSION}; copy the "
                          "runner of the same edgefuse")
    missing = [k for k in ("input_name", "dtype", "clip_shape", "count", "files") if k not in m]
    if missing:
        raise RunnerError(f"{path}: the manifest has no {', '.join(missing)}")
    if m["dtype"] not in DTYPES:
        raise RunnerError(f"{path}: dtype {m['dtype']!r}, expected one of {', '.join(DTYPES)}")
    shape = m["clip_shape"]
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise RunnerError(f"{path}: clip_shape {shape!r} is not a list of positive sizes")
    ids = []  # type: List[str]
    for entry in m["files"]:
        name = entry.get("file", "") if isinstance(entry, dict) else ""
        if not name or os.path.basename(name) != name or not name.endswith((".npy", ".npz")):
            raise RunnerError(f"{path}: bad file entry {entry!r} (a .npy or .npz name inside the folder)")
        if not os.path.isfile(os.path.join(clips_dir, name)):
            raise RunnerError(f"{clips_dir}: {name} is listed but missing; copy the whole folder")
        ids.extend(str(i) for i in entry.get("ids", []))
    if len(ids) != m["count"]:
        raise RunnerError(f"{path}: count {m['count']!r} but the files list {len(ids)} clip ids")
    if len(set(ids)) != len(ids):
        raise RunnerError(f"{path}: clip ids are not unique")
    if not ids:
        raise RunnerError(f"{path}: no clips")
    return m


def manifest_ids(manifest: Dict[str, Any]) -> List[str]:
    return [str(i) for entry in manifest["files"] for i in entry["ids"]]


def load_file(clips_dir: str, entry: Dict[str, Any], manifest: Dict[str, Any]) -> np.ndarray:
    """One listed file as (len(ids), *clip_shape), shape and dtype checked against the manifest."""
    path = os.path.join(clips_dir, entry["file"])
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "clips" not in z.files:
                    raise RunnerError(f"{path}: no array named 'clips' (has {', '.join(z.files) or 'none'})")
                arr = z["clips"]
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise RunnerError(f"{path}: unreadable ({e}); copy it again")
    n, clip = len(entry["ids"]), tuple(manifest["clip_shape"])
    if n == 1 and tuple(arr.shape) == clip:
        arr = arr[None]
    if tuple(arr.shape) != (n,) + clip:
        raise RunnerError(f"{path}: shape {list(arr.shape)}, the manifest says {[n] + list(clip)}")
    if str(arr.dtype) != manifest["dtype"]:
        raise RunnerError(f"{path}: dtype {arr.dtype}, the manifest says {manifest['dtype']}")
    return arr


def iter_batches(clips_dir: str, manifest: Dict[str, Any], batch: int,
                 pad: bool) -> Iterator[Tuple[List[str], np.ndarray, int]]:
    """(ids, clips, real count) in manifest order, ``batch`` clips at a time, read one file at a time;
    with ``pad`` (a static batch) the last batch is filled up by repeating its last clip."""
    if batch < 1:
        raise RunnerError(f"batch {batch}: must be at least 1")
    ids, parts, held = [], [], 0  # type: List[str], List[np.ndarray], int
    for entry in manifest["files"]:
        arr = load_file(clips_dir, entry, manifest)
        start = 0
        while start < len(arr):
            take = min(batch - held, len(arr) - start)
            parts.append(arr[start:start + take])
            ids.extend(str(i) for i in entry["ids"][start:start + take])
            held, start = held + take, start + take
            if held == batch:
                yield ids, np.ascontiguousarray(np.concatenate(parts)), held
                ids, parts, held = [], [], 0
    if held:
        data = np.concatenate(parts)
        if pad and held < batch:
            data = np.concatenate([data, np.repeat(data[-1:], batch - held, axis=0)])
        yield ids, np.ascontiguousarray(data), held


def plan_batch(input_shape: Sequence[int], profile: Optional[Sequence[Sequence[int]]],
               requested: Optional[int]) -> Tuple[int, bool]:
    """(clips per run, pad the last run): an engine's static batch, else ``requested`` (default: the
    profile's opt batch) checked against the profile's min..max."""
    first = int(input_shape[0]) if len(input_shape) else -1
    if first > 0:
        if requested is not None and requested != first:
            raise RunnerError(f"the engine's batch is fixed at {first}; drop --batch {requested} or build the "
                              "engine with a dynamic batch")
        return first, True
    if profile is None:
        raise RunnerError("the engine's batch is dynamic but it has no optimization profile")
    lo, opt, hi = (int(p[0]) for p in profile)
    batch = opt if requested is None else requested
    if not lo <= batch <= hi:
        raise RunnerError(f"--batch {batch} is outside the engine's profile (batch {lo}..{hi}, opt {opt})")
    return batch, False


def check_clip_shape(input_shape: Sequence[int], clip_shape: Sequence[int], name: str) -> None:
    engine = [int(d) for d in input_shape[1:]]
    if len(engine) != len(clip_shape) or any(e > 0 and e != c for e, c in zip(engine, clip_shape)):
        raise RunnerError(f"the engine's input {name} takes (batch, {', '.join(str(d) for d in engine)}), the clips "
                          f"are {list(clip_shape)}; write the clips with the engine's input size")


def api_for_version(version: str) -> str:
    """'binding' for TensorRT 8.0-8.4, 'tensor' (the tensor-name API) for 8.5 and later."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        raise RunnerError(f"TensorRT version {version!r} is not MAJOR.MINOR[...]", 1)
    if major < 8:
        raise RunnerError(f"TensorRT {version} is older than 8.0 (JetPack 4.6); this runner needs 8.0 or later")
    return "binding" if (major, minor) < (8, 5) else "tensor"


def per_clip_timings(batches: Sequence[Tuple[Sequence[str], Dict[str, float]]]) -> List[Dict[str, Any]]:
    """One entry per clip carrying its run's H2D / compute / D2H milliseconds."""
    out = []
    for index, (ids, t) in enumerate(batches):
        for clip_id in ids:
            row = {"id": clip_id, "batch_index": index, "clips_in_batch": len(ids)}  # type: Dict[str, Any]
            row.update(t)
            out.append(row)
    return out


def write_outputs(out_dir: str, ids: Sequence[str], logits: np.ndarray, record: Dict[str, Any]) -> None:
    """logits.npy and logits.json, each written to a temporary name and renamed (no half-written file)."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 2 or len(logits) != len(ids):
        raise RunnerError(f"logits of shape {list(logits.shape)} for {len(ids)} clips", 1)
    os.makedirs(out_dir, exist_ok=True)
    body = dict(record)
    body.update({"format": LOGITS_FORMAT, "version": VERSION, "ids": list(ids), "shape": list(logits.shape)})
    tmp = os.path.join(out_dir, ".logits.tmp.npy")
    np.save(tmp, logits)
    os.replace(tmp, os.path.join(out_dir, LOGITS_NPY))
    tmp = os.path.join(out_dir, ".logits.tmp.json")
    with open(tmp, "w") as f:
        json.dump(body, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, LOGITS_JSON))


def stream_line(batch_index: int, ids: Sequence[str], logits: Any, timing: Mapping[str, float]) -> str:
    """The --stream line of one batch (no newline): STREAM_MARK, a space, then compact JSON of STREAM_KEYS.
    ``logits`` (len(ids), K) are written as float() of each float32 value, which reads back to the same float32;
    ``timing`` gives h2d_ms, compute_ms and d2h_ms (a missing one is 0.0)."""
    rows = np.asarray(logits, dtype=np.float32)
    if rows.ndim != 2 or len(rows) != len(ids) or not len(ids):
        raise RunnerError(f"batch {batch_index}: logits of shape {list(rows.shape)} for {len(ids)} clips", 1)
    body = {"batch_index": int(batch_index), "ids": [str(i) for i in ids],
            "logits": rows.astype(np.float64).tolist()}  # type: Dict[str, Any]  # = float() of each float32
    for key in TIMING_KEYS:
        body[key] = float(timing.get(key, 0.0))
    return STREAM_MARK + " " + json.dumps(body, separators=(",", ":"))


class StreamOut:
    """Where --stream lines go: the process's standard output (file descriptor 1), one flushed write per line.
    While it is open, everything else written to file descriptor 1 (a print, TensorRT's or CUDA's own output)
    goes to stderr instead, so stdout carries stream lines only; :meth:`close` puts stdout back."""

    def __init__(self) -> None:
        sys.stdout.flush()
        try:
            self.fd = os.dup(1)
            os.dup2(2, 1)
        except OSError as e:
            raise RunnerError(f"--stream: no standard output to stream to ({e})")
        self.out = os.fdopen(self.fd, "w", closefd=False)
        self.stdout, sys.stdout = sys.stdout, sys.stderr  # Python's own prints too, whatever sys.stdout was

    def write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        try:
            self.out.close()  # flushed; the descriptor stays open (closefd=False) until put back below
        finally:
            sys.stdout = self.stdout
            os.dup2(self.fd, 1)
            os.close(self.fd)


# ---------------------------------------------------------------------------------------------
# Imports of TensorRT and CUDA: one line and exit 2 when absent

def import_tensorrt() -> Any:
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        raise RunnerError(f"{TRT_HINT} ({e})")
    if not hasattr(trt, "Runtime"):
        raise RunnerError(TRT_HINT + " (only type stubs named tensorrt are installed)")
    return trt


class CudaPython:
    """CUDA through cuda-python's runtime module (NVIDIA's samples since TensorRT 8.6)."""

    name = "cuda-python"

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        count = self.call(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")[0]
        if count < 1:
            raise RunnerError("CUDA sees no GPU (cudaGetDeviceCount is 0)")
        self.call(rt.cudaSetDevice(0), "cudaSetDevice")
        prop = self.call(rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")[0]
        raw = prop.name
        name = raw.split(b"\0")[0].decode() if isinstance(raw, bytes) else str(raw)
        self.gpu = {"name": name, "compute_capability": f"{prop.major}.{prop.minor}"}
        self.stream = self.call(rt.cudaStreamCreate(), "cudaStreamCreate")[0]
        self.handle = int(self.stream)

    def call(self, result: Any, what: str) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if err != self.rt.cudaError_t.cudaSuccess:
            text = self.rt.cudaGetErrorString(err)[1]
            raise RunnerError(f"CUDA {what} failed: {text.decode() if isinstance(text, bytes) else text}",
                              2 if what == "cudaGetDeviceCount" else 1)
        return result[1:] if isinstance(result, tuple) else ()

    def pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        ptr = self.call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost")[0]
        atexit.register(self.rt.cudaFreeHost, ptr)
        raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return raw[:int(np.prod(shape)) * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def device(self, nbytes: int) -> int:
        ptr = self.call(self.rt.cudaMalloc(max(1, nbytes)), "cudaMalloc")[0]
        atexit.register(self.rt.cudaFree, ptr)
        return int(ptr)

    def h2d(self, dev: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call(self.rt.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def d2h(self, host: np.ndarray, dev: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call(self.rt.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def event(self) -> Any:
        return self.call(self.rt.cudaEventCreate(), "cudaEventCreate")[0]

    def record(self, event: Any) -> None:
        self.call(self.rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self.call(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime")[0])

    def synchronize(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class PyCuda:
    """CUDA through pycuda (the fallback; the only choice on JetPack 4.6's Python 3.6)."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self.cuda = driver
        try:
            driver.init()
            dev = driver.Device(0)
            self.context = dev.make_context()
        except Exception as e:  # noqa: BLE001  (pycuda's driver errors: no GPU, no driver, no context)
            raise RunnerError(f"CUDA could not start through pycuda: {str(e).splitlines()[0]}")
        atexit.register(self.context.pop)
        major, minor = dev.compute_capability()
        self.gpu = {"name": str(dev.name()), "compute_capability": f"{major}.{minor}"}
        self.stream = driver.Stream()
        self.handle = int(self.stream.handle)
        self.keep = []  # type: List[Any]

    def pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), dtype)

    def device(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(max(1, nbytes))
        self.keep.append(alloc)
        return int(alloc)

    def h2d(self, dev: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dev, host, self.stream)

    def d2h(self, host: np.ndarray, dev: int) -> None:
        self.cuda.memcpy_dtoh_async(host, dev, self.stream)

    def event(self) -> Any:
        return self.cuda.Event()

    def record(self, event: Any) -> None:
        event.record(self.stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end.time_since(start))

    def synchronize(self) -> None:
        self.stream.synchronize()


def import_cuda() -> Any:
    """cuda-python first (``cuda.bindings.runtime``, then the older ``cuda.cudart``), pycuda as the fallback."""
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return CudaPython(importlib.import_module(module))
        except ImportError:
            continue
    try:
        return PyCuda(importlib.import_module("pycuda.driver"))
    except ImportError:
        raise RunnerError(CUDA_HINT)


# ---------------------------------------------------------------------------------------------
# TensorRT: one function per API difference, the choice made by api_for_version

def _dims(dims: Any) -> Tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def tensors_trt80_84(trt: Any, engine: Any) -> List[Dict[str, Any]]:
    """The engine's inputs and outputs of profile 0 through the binding-index API."""
    if engine.has_implicit_batch_dimension:
        raise RunnerError("the engine has an implicit batch dimension; build it from ONNX with an explicit batch")
    per_profile = engine.num_bindings // max(1, engine.num_optimization_profiles)
    out = []
    for i in range(per_profile):
        is_input, shape = bool(engine.binding_is_input(i)), _dims(engine.get_binding_shape(i))
        profile = [_dims(d) for d in engine.get_profile_shape(0, i)] if is_input and min(shape) < 0 else None
        out.append({"name": engine.get_binding_name(i), "index": i, "input": is_input, "shape": shape,
                    "dtype": np.dtype(trt.nptype(engine.get_binding_dtype(i))), "profile": profile})
    return out


def tensors_trt85plus(trt: Any, engine: Any) -> List[Dict[str, Any]]:
    """The engine's inputs and outputs through the tensor-name API."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input, shape = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, _dims(engine.get_tensor_shape(name))
        profile = [_dims(d) for d in engine.get_tensor_profile_shape(name, 0)] if is_input and min(shape) < 0 else None
        out.append({"name": name, "index": i, "input": is_input, "shape": shape,
                    "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(name))), "profile": profile})
    return out


def _refused(call: str, tensor: Dict[str, Any], shape: Sequence[int]) -> RunnerError:
    lo, _, hi = tensor["profile"] or ((), (), ())
    return RunnerError(f"TensorRT's {call} refused shape {list(shape)} for {tensor['name']} (profile 0: "
                       f"{list(lo)} .. {list(hi)})", 1)


def set_input_shape_trt80_84(context: Any, tensor: Dict[str, Any], shape: Sequence[int]) -> None:
    if not context.set_binding_shape(tensor["index"], tuple(shape)):  # a sequence converts to Dims (pybind11)
        raise _refused("set_binding_shape", tensor, shape)


def set_input_shape_trt85plus(context: Any, tensor: Dict[str, Any], shape: Sequence[int]) -> None:
    if not context.set_input_shape(tensor["name"], tuple(shape)):
        raise _refused("set_input_shape", tensor, shape)


def output_shape_trt80_84(context: Any, tensor: Dict[str, Any]) -> Tuple[int, ...]:
    return _dims(context.get_binding_shape(tensor["index"]))


def output_shape_trt85plus(context: Any, tensor: Dict[str, Any]) -> Tuple[int, ...]:
    return _dims(context.get_tensor_shape(tensor["name"]))


def bind_trt80_84(context: Any, engine: Any, addresses: Dict[str, int], tensors: Sequence[Dict[str, Any]]) -> Any:
    """The bindings list execute_async_v2 takes (every binding of every profile; profile 0's filled)."""
    bindings = [0] * engine.num_bindings
    for t in tensors:
        bindings[t["index"]] = addresses[t["name"]]
    return bindings


def bind_trt85plus(context: Any, engine: Any, addresses: Dict[str, int], tensors: Sequence[Dict[str, Any]]) -> Any:
    for t in tensors:
        if not context.set_tensor_address(t["name"], addresses[t["name"]]):
            raise RunnerError(f"TensorRT's set_tensor_address refused the device buffer of {t['name']}", 1)
    return None


def execute_trt80_84(context: Any, bindings: Any, stream_handle: int) -> None:
    if not context.execute_async_v2(bindings, stream_handle):
        raise RunnerError("TensorRT's execute_async_v2 failed; its log above names the layer", 1)


def execute_trt85plus(context: Any, bindings: Any, stream_handle: int) -> None:
    if not context.execute_async_v3(stream_handle):
        raise RunnerError("TensorRT's execute_async_v3 failed; its log above names the layer", 1)


API = {
    "binding": (tensors_trt80_84, set_input_shape_trt80_84, output_shape_trt80_84, bind_trt80_84, execute_trt80_84),
    "tensor": (tensors_trt85plus, set_input_shape_trt85plus, output_shape_trt85plus, bind_trt85plus,
               execute_trt85plus),
}


def pick_tensors(tensors: Sequence[Dict[str, Any]], input_name: str,
                 output_name: Optional[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The one input (named as in the manifest) and the logits output (the only one, or ``output_name``)."""
    inputs = [t for t in tensors if t["input"]]
    outputs = [t for t in tensors if not t["input"]]
    if len(inputs) != 1:
        names = ", ".join(t["name"] for t in inputs)
        raise RunnerError(f"the engine has {len(inputs)} inputs ({names}); the runner feeds clip engines with one "
                          "input (stream engines with state inputs are not supported)")
    if inputs[0]["name"] != input_name:
        name = inputs[0]["name"]
        raise RunnerError(f"the engine's input is {name}, the clips were written for {input_name}; write them with "
                          f"input_name={name!r}")
    chosen = [t for t in outputs if t["name"] == output_name] if output_name else outputs
    if len(chosen) != 1:
        names = ", ".join(t["name"] for t in outputs)
        raise RunnerError(f"cannot tell the logits among the engine's outputs ({names}); write the clips with "
                          "output_name set to one of them")
    return inputs[0], chosen[0]


class Session:
    """An engine, its context, and pinned host and device buffers allocated once per input shape (addresses
    bound when the shape changes, i.e. at most for the last, smaller batch of a dynamic-batch engine)."""

    def __init__(self, trt: Any, cuda: Any, engine_path: str, api: str) -> None:
        self.cuda = cuda
        self.list_tensors, self.set_shape, self.out_shape, self.bind, self.execute = API[api]
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self.runtime = trt.Runtime(logger)
        with open(engine_path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RunnerError(f"{engine_path}: TensorRT {trt.__version__} could not deserialize it (corrupt, or "
                              "built by another TensorRT version or for another GPU); build it on this device", 1)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RunnerError(f"{engine_path}: TensorRT could not create an execution context (GPU memory?)", 1)
        self.tensors = self.list_tensors(trt, self.engine)
        self.buffers = {}  # type: Dict[Tuple[int, ...], Dict[str, Any]]
        self.active = ()  # type: Tuple[int, ...]
        self.events = [cuda.event() for _ in range(4)]

    def prepare(self, inp: Dict[str, Any], out: Dict[str, Any], shape: Tuple[int, ...]) -> Dict[str, Any]:
        """The buffers of input ``shape``, made active (shape set, addresses bound) if they are not."""
        dynamic = min(inp["shape"]) < 0
        if shape not in self.buffers:
            if dynamic:
                self.set_shape(self.context, inp, shape)
            host_in = self.cuda.pinned(shape, inp["dtype"])
            host_out = self.cuda.pinned(self.out_shape(self.context, out), out["dtype"])
            self.buffers[shape] = {"host_in": host_in, "host_out": host_out,
                                   "addresses": {inp["name"]: self.cuda.device(host_in.nbytes),
                                                 out["name"]: self.cuda.device(host_out.nbytes)}}
            self.active = ()
        buf = self.buffers[shape]
        if self.active != shape:
            if dynamic:
                self.set_shape(self.context, inp, shape)
            others = [t["name"] for t in self.tensors if t["name"] not in buf["addresses"]]
            if others:
                raise RunnerError("the engine has tensors the runner does not feed: " + ", ".join(others))
            buf["bindings"] = self.bind(self.context, self.engine, buf["addresses"], self.tensors)
            self.active = shape
        return buf

    def run(self, inp: Dict[str, Any], out: Dict[str, Any], clips: np.ndarray) -> Tuple[np.ndarray, Dict[str, float]]:
        """Output of one batch and its H2D / compute / D2H milliseconds (events right around each step)."""
        cuda, ev = self.cuda, self.events
        buf = self.prepare(inp, out, tuple(int(d) for d in clips.shape))
        np.copyto(buf["host_in"], clips, casting="same_kind")  # float32 clips into a float16 input too
        cuda.record(ev[0])
        cuda.h2d(buf["addresses"][inp["name"]], buf["host_in"])
        cuda.record(ev[1])
        self.execute(self.context, buf["bindings"], cuda.handle)
        cuda.record(ev[2])
        cuda.d2h(buf["host_out"], buf["addresses"][out["name"]])
        cuda.record(ev[3])
        cuda.synchronize()
        ms = [round(cuda.elapsed_ms(a, b), 4) for a, b in zip(ev, ev[1:])]  # noqa: RUF007 (pairwise: 3.10+)
        return np.array(buf["host_out"]), {"h2d_ms": ms[0], "compute_ms": ms[1], "d2h_ms": ms[2]}


# ---------------------------------------------------------------------------------------------
# The command

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line instead of argparse's usage block
        raise RunnerError(f"{message} (usage: {USAGE}; --help for more)")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(prog="device_runner.py", description=(
        "Run a TensorRT engine on a folder of preprocessed clips written by edgefuse (manifest.json + .npy/.npz) "
        "and write logits.npy and logits.json (per-clip H2D/compute/D2H ms, TensorRT version) to OUT_DIR, for "
        "'edgefuse validate' on the workstation. Needs numpy, tensorrt and cuda-python or pycuda."))
    p.add_argument("engine", metavar="ENGINE", help="serialized TensorRT engine (.engine / .plan) built on this device")
    p.add_argument("clips", metavar="CLIPS_DIR", help="folder with manifest.json and the clip arrays")
    p.add_argument("-o", "--out", metavar="OUT_DIR", required=True, help="folder for logits.npy and logits.json")
    p.add_argument("--batch", type=int, metavar="N", help="clips per run for a dynamic-batch engine "
                   "(default: the profile's opt batch; a static batch is used as built)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs of the first batch (default 2)")
    p.add_argument("--stream", action="store_true", help="print each batch's logits and timings as one line on "
                   "stdout as soon as it has run ('@@edgefuse-batch {json}'; the summary goes to stderr)")
    p.add_argument("--dry-run", action="store_true", help="read and check every clip, print one summary line, "
                   "run nothing (no TensorRT needed)")
    args = p.parse_args(list(argv))
    if args.batch is not None and args.batch < 1:
        raise RunnerError(f"--batch {args.batch}: must be at least 1")
    if args.warmup < 0:
        raise RunnerError(f"--warmup {args.warmup}: must be 0 or more")
    return args


def dry_run(clips_dir: str, manifest: Dict[str, Any], batch: int) -> Dict[str, Any]:
    runs, total, seen = 0, 0.0, []  # type: int, float, List[str]
    for ids, data, n in iter_batches(clips_dir, manifest, batch, pad=False):
        runs, total = runs + 1, total + float(data[:n].astype(np.float64).sum())
        seen.extend(ids)
    return {"clips": len(seen), "clip_shape": manifest["clip_shape"], "dtype": manifest["dtype"], "batch": batch,
            "runs": runs, "sum": total, "first": seen[0], "last": seen[-1]}


def run(args: argparse.Namespace, emit: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """The whole run; ``emit`` (--stream) takes each batch's :func:`stream_line` as soon as it has run."""
    if not os.path.isfile(args.engine) and not args.dry_run:
        raise RunnerError(f"{args.engine}: no such engine file")
    manifest = read_manifest(args.clips)
    if args.dry_run:
        return dry_run(args.clips, manifest, args.batch or 1)
    trt = import_tensorrt()
    api = api_for_version(str(trt.__version__))
    cuda = import_cuda()
    session = Session(trt, cuda, args.engine, api)
    inp, out = pick_tensors(session.tensors, manifest["input_name"], manifest.get("output_name"))
    check_clip_shape(inp["shape"], manifest["clip_shape"], inp["name"])
    batch, pad = plan_batch(inp["shape"], inp["profile"], args.batch)
    first = next(iter_batches(args.clips, manifest, batch, pad))[1]
    for _ in range(args.warmup):
        session.run(inp, out, first)
    rows, runs = [], []  # type: List[np.ndarray], List[Tuple[List[str], Dict[str, float]]]
    for ids, data, n in iter_batches(args.clips, manifest, batch, pad):
        logits, times = session.run(inp, out, data)
        rows.append(logits.reshape(len(data), -1)[:n])
        if emit is not None:
            emit(stream_line(len(runs), ids, rows[-1], times))
        runs.append((ids, times))
    ids_all = manifest_ids(manifest)
    version = str(trt.__version__)
    record = {"backend": "tensorrt", "backend_version": version, "tensorrt": version, "api": api, "cuda": cuda.name,
              "gpu": cuda.gpu, "batch": batch, "padded": pad, "warmup": args.warmup, "input_name": inp["name"],
              "output_name": out["name"], "input_dtype": str(inp["dtype"]), "clips_dtype": manifest["dtype"],
              "engine": os.path.basename(args.engine), "timings": per_clip_timings(runs)}
    write_outputs(args.out, ids_all, np.concatenate(rows), record)
    return {"clips": len(ids_all), "out": args.out, "tensorrt": record["tensorrt"], "batch": batch}


def main(argv: Optional[Sequence[str]] = None) -> int:
    stream, say = None, sys.stdout  # type: Optional[StreamOut], Any
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.stream:
            say = sys.stderr  # stdout carries the stream lines only
            if not args.dry_run:
                stream = StreamOut()
        summary = run(args, stream.write if stream is not None else None)
    except RunnerError as e:
        sys.stderr.write("device_runner: error: " + str(e).replace("\n", " ") + "\n")
        return e.code
    except KeyboardInterrupt:
        sys.stderr.write("device_runner: interrupted\n")
        return 130
    except Exception as e:  # TensorRT's and CUDA's own errors: one line, the traceback on request
        if os.environ.get("DEVICE_RUNNER_TRACEBACK"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        sys.stderr.write(f"device_runner: error: {type(e).__name__}: {first} (DEVICE_RUNNER_TRACEBACK=1 shows where)\n")
        return 1
    finally:
        if stream is not None:
            stream.close()
    say.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
