"""Calibrate's inputs: the FP32 graph and its metadata, the statistics cache's key and folder, and the
calibration and comparison clips (decoded once; the comparison set and the calibration clips' ids and skips are
kept in the cache)."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph.query import dims, graph_inputs
from edgefuse.quantize import qdq
from edgefuse.quantize.config import MIN_CLIPS, STATS_VERSION, CalibrateConfig
from edgefuse.utils import atomic_path, cache_root

if TYPE_CHECKING:
    from edgefuse.clips import ClipSet

log = logging.getLogger(__name__)


def load_fp32_graph(path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata

    model = load_onnx(path)
    if qdq.is_quantized(model):
        raise EdgefuseError(f"{path}: the graph is already quantized (it has Q/DQ or low-precision weights); "
                            "calibrate the FP32 graph from 'edgefuse export' instead")
    meta = read_metadata(model)
    missing = [k for k in ("segments", "input_size") if k not in meta]
    if missing:
        raise EdgefuseError(f"{path}: no edgefuse metadata ({', '.join(missing)} missing), so the clips' sampling "
                            "is unknown; export the model with 'edgefuse export'")
    return model, meta


def input_info(model: onnx.ModelProto, meta: dict[str, Any]) -> tuple[str, list[int | str]]:
    """(name, dims) of the clip input: the metadata's input name, else the first graph input; a stream graph's frame
    input as the clips it is fed, (N, T, 3, H, W)."""
    inputs = graph_inputs(model)
    name = meta.get("input_name") or inputs[0].name
    vi = next((i for i in inputs if i.name == name), inputs[0])
    if meta.get("stream_states"):  # one frame (N, 3, H, W) of clips (N, T, 3, H, W), fed frame by frame
        batch, *frame = dims(vi)
        return vi.name, [batch, "T", *frame]
    return vi.name, dims(vi)


def check_clip_shape(path: Path, input_dims: Sequence[int | str], clips: np.ndarray, what: str) -> None:
    """Clips (N, T, 3, H, W) against the graph input's static dimensions (after N)."""
    got = tuple(clips.shape[1:])
    want = tuple(input_dims[1:])
    if len(got) != len(want) or any(isinstance(w, int) and w > 0 and w != g for w, g in zip(want, got)):
        raise EdgefuseError(f"{path}: the graph takes clips of shape (N, {', '.join(str(w) for w in want)}), "
                            f"but {what} gives {got}; sample the clips with the graph's segments and size "
                            "(the metadata's) or export the graph with a dynamic shape")


def _file_digest(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def cache_key(graph: onnx.ModelProto, cfg: CalibrateConfig, meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(graph.graph.SerializeToString())
    facts = {"clips": _file_digest(cfg.clips), "num_clips": cfg.num_clips, "seed": cfg.seed,
             "holdout": _file_digest(cfg.holdout) if cfg.holdout else None, "num_holdout": cfg.num_holdout,
             "root": str(cfg.root) if cfg.root else None,
             "reading": getattr(cfg.clips, "key", lambda: None)(),
             "holdout_reading": getattr(cfg.holdout, "key", lambda: None)(),
             "sampling": {"segments": meta.get("segments"), "mode": "tsn"}, "statistics": STATS_VERSION,
             "preprocess": {k: meta.get(k) for k in ("input_size", "scale_size", "mean", "std", "channel_order",
                                                     "pixel_range")}}
    h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    return cache_root() / "calibrate"


def _open(src: Path, meta: dict[str, Any], cfg: CalibrateConfig, n: int | None, seed: int) -> ClipSet:
    from edgefuse.clips import Preprocess, Sampling, model_reading
    from edgefuse.clips import open as open_clips

    pre = Preprocess.from_metadata(meta, source=str(cfg.model))
    sampling = Sampling(num_segments=int(meta["segments"]))
    return open_clips(src, pre, sampling, root=cfg.root, num_clips=n, seed=seed, workers=cfg.workers,
                      progress=cfg.progress, **model_reading(meta))


def _as_arrays(clipset: ClipSet) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    data, labels, ids = clipset.stack()
    if data.ndim != 5:
        raise EdgefuseError(f"{clipset.source}: calibration takes one view per clip (N, T, 3, H, W), got "
                            f"{tuple(data.shape)}")
    return data.numpy(), (labels.numpy() if labels is not None else None), ids


def _rounded(clips: np.ndarray) -> np.ndarray:
    """Held-out clips are kept as float16 in the cache; round them the same way on the first run so a
    cached rerun gives the same figures and the same graph."""
    return clips.astype(np.float16).astype(np.float32)


Skipped = list[tuple[str, str]]  # (clip id, why it could not be read)


@dataclass(frozen=True)
class HeldOutClips:
    """The clips calibrate compares FP32 and the candidate on: held out from calibration, or (``held_out``
    False) the calibration clips themselves when there are too few to hold any out."""

    clips: np.ndarray  # (N, T, 3, H, W) float32, rounded through float16 as the cache keeps them
    labels: np.ndarray | None  # (N,)
    ids: list[str]
    source: str  # where they came from, in words
    held_out: bool = True
    skipped: Skipped | None = None  # clips of --holdout that could not be read (None: not known)


@dataclass(frozen=True)
class CalibrationClips:
    """Which clips the statistics came from (None: not known, statistics from an older cache)."""

    ids: list[str] | None
    skipped: Skipped | None  # clips of --clips that could not be read


def _skipped_arrays(skipped: Skipped | None) -> dict[str, np.ndarray]:
    if skipped is None:
        return {}
    return {"skipped_ids": np.array([i for i, _ in skipped], dtype=str),
            "skipped_reasons": np.array([r for _, r in skipped], dtype=str)}


def _read_holdout(path: Path) -> HeldOutClips:
    with np.load(path) as z:
        skipped = ([(str(i), str(r)) for i, r in zip(z["skipped_ids"], z["skipped_reasons"])]
                   if "skipped_ids" in z else None)
        held = bool(z["held_out"]) if "held_out" in z else "no held-out set" not in str(z["source"])
        return HeldOutClips(z["clips"].astype(np.float32), z.get("labels"),
                            [str(i) for i in z["ids"]], str(z["source"]), held, skipped)


def _write_holdout(path: Path, holdout: HeldOutClips) -> None:
    arrays: dict[str, Any] = {"clips": holdout.clips.astype(np.float16), "ids": np.array(holdout.ids, dtype=str),
                              "source": np.array(holdout.source), "held_out": np.array(holdout.held_out),
                              **_skipped_arrays(holdout.skipped)}
    if holdout.labels is not None:
        arrays["labels"] = holdout.labels
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _read_calibration(path: Path) -> CalibrationClips:
    """The calibration clips' record the cache keeps beside its statistics (unknown when it has none)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return CalibrationClips(list(d["ids"]), [(str(i), str(r)) for i, r in d["skipped"]])
    except (OSError, ValueError, KeyError, TypeError):
        return CalibrationClips(None, None)


def load_clips(cfg: CalibrateConfig, meta: dict[str, Any], cache: Path, need_calibration: bool
               ) -> tuple[np.ndarray | None, HeldOutClips, CalibrationClips]:
    """(calibration clips or None when not needed, the comparison clips, which clips calibrate and which were
    skipped); the comparison set and the calibration record come from the cache when present."""
    holdout_file, calib_file = cache / "holdout.npz", cache / "calibration_clips.json"
    calib = None
    calib_skipped: Skipped = []
    holdout: HeldOutClips | None = None
    if holdout_file.is_file():
        holdout = _read_holdout(holdout_file)
        if not need_calibration:
            log.info("clips: comparison set from the cache %s; calibration statistics cached, no decoding", cache)
            return None, holdout, _read_calibration(calib_file)
    if cfg.holdout is not None:
        if need_calibration:
            clipset = _open(cfg.clips, meta, cfg, cfg.num_clips, cfg.seed)
            calib = _as_arrays(clipset)
            calib_skipped = list(clipset.skipped)
        if holdout is None:
            held_set = _open(cfg.holdout, meta, cfg, cfg.num_holdout, cfg.seed)
            data, labels, ids = _as_arrays(held_set)
            holdout = HeldOutClips(_rounded(data), labels, ids, str(cfg.holdout), True, list(held_set.skipped))
    else:
        clipset = _open(cfg.clips, meta, cfg, cfg.num_clips + cfg.num_holdout, cfg.seed)
        calib_skipped = list(clipset.skipped)
        data, labels, ids = _as_arrays(clipset)
        n = len(ids)
        if n < MIN_CLIPS:
            raise EdgefuseError(f"{cfg.clips}: only {n} clip(s) could be read; calibrate needs at least {MIN_CLIPS}")
        spare = n - cfg.num_clips
        if spare >= 32:
            from edgefuse.clips import balanced_subset

            held = set(balanced_subset(list(labels) if labels is not None else [None] * n, spare, cfg.seed + 1))
            hold_idx = sorted(held)
            calib_idx = [i for i in range(n) if i not in held]
            source, held_out = f"{cfg.clips} (held out from calibration)", True
        else:
            from edgefuse.clips import balanced_subset

            # --num-clips holds here too: the comparison runs on the calibration clips, no more
            calib_idx = balanced_subset(list(labels) if labels is not None else [None] * n, min(cfg.num_clips, n),
                                        cfg.seed)
            hold_idx = list(calib_idx)
            log.warning("%s: %d clips, too few to hold any out of calibration; the report compares FP32 and %s on "
                        "the %d calibration clips themselves, with no held-out set (give held-out clips, e.g. "
                        "--holdout val.txt, for unbiased figures)",
                        cfg.clips, n, cfg.precision.upper(), len(calib_idx))
            source, held_out = f"{cfg.clips} (the calibration clips: no held-out set)", False
        calib = (data[calib_idx], labels[calib_idx] if labels is not None else None, [ids[i] for i in calib_idx])
        if holdout is None:
            holdout = HeldOutClips(_rounded(data[hold_idx]), labels[hold_idx] if labels is not None else None,
                                   [ids[i] for i in hold_idx], source, held_out, [])
    assert holdout is not None
    if not holdout_file.is_file():
        _write_holdout(holdout_file, holdout)
    calibration = _read_calibration(calib_file)
    if calib is not None:
        calibration = CalibrationClips(list(calib[2]), calib_skipped)
        with atomic_path(calib_file) as tmp:
            tmp.write_text(json.dumps({"ids": calibration.ids, "skipped": calibration.skipped}) + "\n",
                           encoding="utf-8")
    assert calib is not None or not need_calibration
    if calib is not None and len(calib[2]) < MIN_CLIPS:
        raise EdgefuseError(f"{cfg.clips}: only {len(calib[2])} calibration clip(s); calibrate needs at least "
                            f"{MIN_CLIPS}")
    return (calib[0] if calib is not None else None), holdout, calibration
