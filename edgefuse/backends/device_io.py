"""The workstation side of the device runner: clip folders for it, its logits back.

Where edgefuse cannot be installed (a Jetson on JetPack 4.6 or 5, Python 3.6 or 3.8), the engine runs under
``device_runner.py``, one self-contained file shipped in this package (:func:`runner_path`). The workstation
preprocesses the clips (``edgefuse.clips``) and writes them with :func:`write_clip_folder`; the device runs::

    python3 device_runner.py model.engine clips/ -o logits/

and :func:`read_runner_logits` reads ``logits/`` back for comparison (``edgefuse infer``, the same run through any
edgefuse engine where edgefuse is installed, writes the same folder). The folder layouts and the ``--stream`` line
format are defined in ``device_runner.py``'s docstring; the manifest is read here by the runner's own reader, so
the workstation refuses a folder exactly where the device would, and :func:`parse_stream_line` reads the lines
``--stream`` prints, batch by batch, while a run goes on.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgefuse.backends import device_runner as dr
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path

log = logging.getLogger(__name__)

__all__ = ["ClipFolder", "ClipTiming", "RunnerLogits", "RunnerRun", "StreamBatch", "parse_stream_line",
           "prepare_clip_folder", "read_clip_folder", "read_runner_logits", "runner_path", "write_clip_folder"]


def runner_path() -> Path:
    """Where the package installed ``device_runner.py`` (copy this file to the device)."""
    return Path(dr.__file__).resolve()


def write_clip_folder(clips: np.ndarray, ids: Sequence[str], input_name: str, out_dir: str | Path, *,
                      output_name: str | None = None, chunk: int = 64, fmt: str = "npy",
                      metadata: Mapping[str, Any] | None = None) -> Path:
    """Write preprocessed ``clips`` (N, *clip_shape), float32 or float16, as a clip folder for the runner:
    ``chunk`` clips per .npy (or .npz) file and ``manifest.json`` last. ``output_name`` names the logits
    output when the engine has several; ``metadata`` (e.g. the engine's edgefuse metadata) is kept in the
    manifest under "edgefuse". Files of an earlier folder at ``out_dir`` are replaced. Returns ``out_dir``."""
    out = Path(out_dir)
    clips = np.asarray(clips)
    if clips.ndim < 2 or len(clips) == 0:
        raise EdgefuseError(f"{out}: clips of shape {list(clips.shape)}; expected (N, T, 3, H, W) with N >= 1")
    if str(clips.dtype) not in dr.DTYPES:
        if not np.issubdtype(clips.dtype, np.floating):
            raise EdgefuseError(f"{out}: clips of dtype {clips.dtype}; write preprocessed float32 clips")
        clips = clips.astype(np.float32)
    names = [str(i) for i in ids]
    if len(names) != len(clips):
        raise EdgefuseError(f"{out}: {len(clips)} clips but {len(names)} ids; pass one id per clip")
    if len(set(names)) != len(names):
        raise EdgefuseError(f"{out}: clip ids are not unique; the runner's output is matched back by id")
    if fmt not in ("npy", "npz") or chunk < 1:
        raise EdgefuseError(f"{out}: fmt {fmt!r}, chunk {chunk}; use fmt 'npy' or 'npz' and chunk >= 1")
    out.mkdir(parents=True, exist_ok=True)
    (out / dr.MANIFEST).unlink(missing_ok=True)  # no manifest while the folder is half written
    for stale in [*out.glob("clips-*.npy"), *out.glob("clips-*.npz")]:
        stale.unlink()
    files = []
    for k, start in enumerate(range(0, len(clips), chunk)):
        name = f"clips-{k:05d}.{fmt}"
        part = np.ascontiguousarray(clips[start:start + chunk])
        with atomic_path(out / name) as tmp, tmp.open("wb") as f:
            if fmt == "npz":
                np.savez(f, clips=part)
            else:
                np.save(f, part)
        files.append({"file": name, "ids": names[start:start + chunk]})
    manifest = {"format": dr.FORMAT, "version": dr.VERSION, "input_name": input_name, "output_name": output_name,
                "dtype": str(clips.dtype), "clip_shape": [int(d) for d in clips.shape[1:]], "count": len(names),
                "files": files, "edgefuse": dict(metadata or {})}
    with atomic_path(out / dr.MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    log.debug("wrote %d clips in %d file(s) to %s", len(names), len(files), out)
    return out


def read_clip_folder(clips_dir: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(clips (N, *clip_shape), ids, manifest) of a clip folder, checked as the runner checks it."""
    folder = str(clips_dir)
    try:
        manifest = dr.read_manifest(folder)
        arrays = [np.asarray(dr.load_file(folder, entry, manifest)) for entry in manifest["files"]]
    except dr.RunnerError as e:
        raise EdgefuseError(str(e)) from None
    return np.concatenate(arrays), dr.manifest_ids(manifest), manifest


@dataclass(frozen=True)
class ClipTiming:
    """One clip's run on the device: the milliseconds of the batch it ran in."""

    id: str
    batch_index: int
    clips_in_batch: int
    h2d_ms: float
    compute_ms: float
    d2h_ms: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClipTiming:
        return cls(str(d["id"]), int(d["batch_index"]), int(d["clips_in_batch"]), float(d["h2d_ms"]),
                   float(d["compute_ms"]), float(d["d2h_ms"]))


@dataclass(frozen=True)
class RunnerRun:
    """What the runner (device_runner.py, or ``edgefuse infer``) recorded besides the logits: backend and its
    version, device, batching, per-clip timings. ``tensorrt``, ``api``, ``cuda`` and ``gpu`` are TensorRT's
    (empty for other backends); ``backend``, ``backend_version`` and :attr:`device_name` hold for every backend."""

    tensorrt: str  # the TensorRT version; "" when another backend ran
    api: str  # "binding" (TensorRT 8.0-8.4) or "tensor" (8.5 and later); "" for other backends
    cuda: str  # "cuda-python" or "pycuda"; "" for other backends
    gpu: dict[str, Any]
    batch: int
    warmup: int
    engine: str
    input_name: str
    output_name: str
    per_clip: tuple[ClipTiming, ...]
    backend: str = "tensorrt"  # "tensorrt", "onnxruntime", "openvino" (records without it are TensorRT's)
    backend_version: str = ""
    hardware: dict[str, Any] = field(default_factory=dict)  # what ran it: the GPU, or the CPU (name, isa, ...)

    @property
    def device_name(self) -> str:
        """The GPU's or CPU's name as recorded, else "device"."""
        return str(self.hardware.get("name") or self.gpu.get("name") or "device")

    def batch_compute_ms(self) -> list[float]:
        """GPU compute milliseconds of each timed run, in order."""
        seen: dict[int, float] = {}
        for t in self.per_clip:
            seen.setdefault(t.batch_index, t.compute_ms)
        return [seen[k] for k in sorted(seen)]


class RunnerLogits(NamedTuple):
    logits: np.ndarray  # (N, K) float32, rows in the clip folder's order
    ids: list[str]
    timings: RunnerRun


def read_runner_logits(out_dir: str | Path, expect_ids: Sequence[str] | None = None) -> RunnerLogits:
    """The runner's ``logits.npy`` and ``logits.json`` from ``out_dir``, checked against each other (and
    against ``expect_ids``, the clip folder's ids, when given)."""
    folder = Path(out_dir)
    npy, meta = folder / dr.LOGITS_NPY, folder / dr.LOGITS_JSON
    for path in (meta, npy):
        if not path.is_file():
            raise EdgefuseError(f"{folder}: no {path.name}; run 'python3 device_runner.py ENGINE CLIPS_DIR -o OUT_DIR' "
                                "(or 'edgefuse infer ENGINE CLIPS_DIR -o OUT_DIR') on the device and copy OUT_DIR "
                                "back whole")
    try:
        info = json.loads(meta.read_text())
        logits = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EdgefuseError(f"{folder}: unreadable runner output ({e}); copy the folder again") from None
    if not isinstance(info, dict) or info.get("format") != dr.LOGITS_FORMAT or info.get("version") != dr.VERSION:
        raise EdgefuseError(f"{meta}: not the output of this edgefuse's device_runner.py or 'edgefuse infer' (format "
                            f"{dr.LOGITS_FORMAT!r} version {dr.VERSION}); run the runner from the same edgefuse")
    ids = [str(i) for i in info.get("ids", [])]
    if logits.ndim != 2 or len(logits) != len(ids) or list(logits.shape) != info.get("shape"):
        raise EdgefuseError(f"{folder}: logits.npy has shape {list(logits.shape)} but logits.json lists {len(ids)} "
                            f"clips of shape {info.get('shape')}; copy the folder again")
    if expect_ids is not None and [str(i) for i in expect_ids] != ids:
        raise EdgefuseError(f"{folder}: the runner's {len(ids)} clip ids differ from the clip folder's "
                            f"{len(expect_ids)}; run the runner on the same clip folder")
    try:
        per_clip = tuple(ClipTiming.from_dict(t) for t in info["timings"])
        backend = str(info.get("backend") or "tensorrt")  # device_runner.py before "backend": TensorRT
        trt = backend == "tensorrt"  # TensorRT's record names its version, API and CUDA bindings
        version = str(info["tensorrt"] if trt and "backend_version" not in info else info["backend_version"])
        gpu = dict(info.get("gpu") or {})
        run = RunnerRun(str(info["tensorrt"] if trt else info.get("tensorrt") or ""),
                        str(info["api"] if trt else info.get("api") or ""),
                        str(info["cuda"] if trt else info.get("cuda") or ""), gpu,
                        int(info["batch"]), int(info["warmup"]), str(info["engine"]), str(info["input_name"]),
                        str(info["output_name"]), per_clip, backend, version, dict(info.get("hardware") or gpu))
    except (KeyError, TypeError, ValueError) as e:
        raise EdgefuseError(f"{meta}: incomplete runner record ({type(e).__name__}: {e}); copy it again") from None
    if [t.id for t in per_clip] != ids:
        raise EdgefuseError(f"{meta}: {len(per_clip)} timings for {len(ids)} clips; copy the folder again")
    return RunnerLogits(logits.astype(np.float32, copy=False), ids, run)


@dataclass(frozen=True, eq=False)  # eq=False: an array field makes == ambiguous
class StreamBatch:
    """One batch's results as ``--stream`` reports them (device_runner.py or ``edgefuse infer``): the clip ids in
    the clip folder's order, their logits (len(ids), K) float32, and the batch's H2D / compute / D2H ms."""

    batch_index: int
    ids: tuple[str, ...]
    logits: np.ndarray
    h2d_ms: float = 0.0
    compute_ms: float = 0.0
    d2h_ms: float = 0.0

    @property
    def timing(self) -> dict[str, float]:
        return {"h2d_ms": self.h2d_ms, "compute_ms": self.compute_ms, "d2h_ms": self.d2h_ms}

    def line(self) -> str:
        """The ``--stream`` line of this batch (no newline), written by device_runner's ``stream_line``."""
        try:
            return dr.stream_line(self.batch_index, self.ids, self.logits, self.timing)
        except dr.RunnerError as e:
            raise EdgefuseError(str(e)) from None


def _bad_stream_line(line: str, what: str) -> EdgefuseError:
    head = line if len(line) <= 80 else line[:77] + "..."
    return EdgefuseError(f"stream line {head!r}: {what}; the device's runner is not this edgefuse's (copy "
                         "device_runner.py, or install the same edgefuse, on the device)")


def parse_stream_line(line: str) -> StreamBatch | None:
    """The batch a ``--stream`` line reports, or None for any line that does not start with the marker
    (``@@edgefuse-batch``: other output on the way). A marker line that does not parse is an error: a reader that
    skipped it would lose those clips silently. Logits come back as the same float32 values the runner had."""
    text = line.rstrip("\r\n")
    if not text.startswith(dr.STREAM_MARK):
        return None
    payload = text[len(dr.STREAM_MARK):]
    if not payload.startswith(" "):
        raise _bad_stream_line(text, f"no space and JSON after {dr.STREAM_MARK}")
    try:
        body = json.loads(payload)
    except ValueError as e:
        raise _bad_stream_line(text, f"not JSON ({e}), perhaps cut off") from None
    if not isinstance(body, dict):
        raise _bad_stream_line(text, "not a JSON object")
    missing = [k for k in dr.STREAM_KEYS if k not in body]
    if missing:
        raise _bad_stream_line(text, f"no {', '.join(missing)}")
    index, ids, rows = body["batch_index"], body["ids"], body["logits"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _bad_stream_line(text, f"batch_index {index!r} is not a count")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise _bad_stream_line(text, "ids is not a non-empty list of strings")
    if (not isinstance(rows, list) or len(rows) != len(ids) or not all(isinstance(r, list) for r in rows)
            or len({len(r) for r in rows}) != 1 or not rows[0]):
        raise _bad_stream_line(text, f"logits is not {len(ids)} rows of one length, one row per id")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for v in r):
        raise _bad_stream_line(text, "a logit is not a number")
    try:
        logits = np.array(rows, dtype=np.float64).astype(np.float32)  # the JSON floats are float32 values: exact
        timing = [float(body[k]) for k in dr.TIMING_KEYS]
    except (TypeError, ValueError) as e:
        raise _bad_stream_line(text, f"a value is not a number ({e})") from None
    return StreamBatch(index, tuple(ids), logits, *timing)


@dataclass(frozen=True)
class ClipFolder:
    """What :func:`prepare_clip_folder` wrote: the folder, its clips and where the runner file is."""

    path: Path
    clips: int
    clip_shape: tuple[int, ...]
    input_name: str
    labelled: bool
    runner: Path
    skipped: int = 0  # clips of the source that could not be read (listed with their reasons in the manifest)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "clips": self.clips, "clip_shape": list(self.clip_shape),
                "input_name": self.input_name, "labelled": self.labelled, "runner": str(self.runner),
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClipFolder:
        return cls(Path(d["path"]), int(d["clips"]), tuple(d["clip_shape"]), str(d["input_name"]), bool(d["labelled"]),
                   Path(d["runner"]))


def prepare_clip_folder(model: str | Path, clips: str | Path, out_dir: str | Path, *, num_clips: int | None = 256,
                        seed: int = 0, root: Path | None = None, workers: int = 2, progress: bool = True) -> ClipFolder:
    """Sample and preprocess ``clips`` as ``model``'s metadata says (the FP32 graph from export, or any graph or
    engine built from it) and write them as a clip folder for the device runner, with the labels, class names and
    the graph's metadata in the manifest (``validate`` reads them back)."""
    from edgefuse.clips import Preprocess, Sampling, model_reading
    from edgefuse.clips import open as open_clips
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import graph_inputs

    graph = load_onnx(model)
    meta = read_metadata(graph)
    if not meta.get("segments") or not meta.get("input_size"):
        raise EdgefuseError(f"{model}: no edgefuse metadata (segments, input size), so the clips' sampling is unknown; "
                            "give the graph 'edgefuse export' wrote")
    clip_set = open_clips(clips, Preprocess.from_metadata(meta, source=str(model)),
                          Sampling(num_segments=int(meta["segments"])), root=root, num_clips=num_clips, seed=seed,
                          workers=workers, progress=progress, **model_reading(meta))
    data, labels, ids = clip_set.stack()
    input_name = graph_inputs(graph)[0].name
    facts = {**meta, "labels": None if labels is None else [int(x) for x in labels.tolist()],
             "source_class_names": list(clip_set.class_names or []) or None, "source": str(clips),
             "skipped": [[str(i), str(why)] for i, why in clip_set.skipped]}
    path = write_clip_folder(data.numpy(), ids, input_name, out_dir, metadata=facts)
    return ClipFolder(path, len(ids), tuple(int(d) for d in data.shape[1:]), input_name, labels is not None,
                      runner_path(), len(clip_set.skipped))
