"""``open`` a clip source into a :class:`ClipSet`: sampled, preprocessed clips in memory.

Decoding happens once, in :func:`open_clips`, in ``workers`` processes (``fork`` where the
platform has it, so workers start instantly; they never touch torch). Forked workers write
their uint8 views straight into one anonymous shared mapping (elsewhere the views come back
through the pool's pipes). The set keeps the views as uint8 (a quarter of the float32 size:
8 x 224 x 224 views are 1.2 MB per clip) and normalises on access, with the official float32
operations. A clip that
cannot be read is logged, counted in :attr:`ClipSet.skipped` and listed by
:meth:`ClipSet.summary`; when none can be read, :class:`EdgefuseError` says why.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import mmap
import multiprocessing
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgefuse.clips.decode import Job, Result, attach_output, run_job
from edgefuse.clips.preprocess import Preprocess, normalise
from edgefuse.clips.sampling import Sampling
from edgefuse.clips.sources import DEFAULT_TEMPLATE, discover, read_classes, read_labels
from edgefuse.clips.subset import balanced_subset
from edgefuse.errors import EdgefuseError
from edgefuse.progress import progress as progress_bar
from edgefuse.utils import atomic_path

__all__ = ["Clip", "ClipSet", "open_clips"]

log = logging.getLogger(__name__)

MAX_LISTED = 20  # skipped clips named in the summary


@dataclass
class Clip:
    """One video's input: ``data`` (T, 3, H, W) float32, or (V, T, 3, H, W) for V = crops * clips
    views (crop-major); ``label`` None when unknown."""

    id: str
    data: torch.Tensor
    label: int | None = None


@dataclass(frozen=True)
class _Stored:
    id: str
    label: int | None
    pixels: np.ndarray | None = None  # (V, T, S, S, 3) uint8 RGB, decoded sources
    tensor: torch.Tensor | None = None  # (V, T, 3, H, W) float32, preprocessed .npz


class ClipSet:
    """Clips read from one source, in the source's order (list order, or sorted names)."""

    def __init__(self, source: str, items: Sequence[_Stored], skipped: Sequence[tuple[str, str]],
                 class_names: tuple[str, ...] | None, preprocess: Preprocess | None, sampling: Sampling | None,
                 planned: int) -> None:
        self.source = source
        self._items = list(items)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.class_names = class_names
        self.preprocess = preprocess
        self.sampling = sampling
        self.planned = planned

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Clip]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> Clip:
        item = self._items[i]
        data = self._tensor([item])[0]  # (V, T, 3, H, W)
        return Clip(item.id, data[0] if data.shape[0] == 1 else data, item.label)  # (T, 3, H, W) for one view

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self._items]

    @property
    def labels(self) -> list[int | None]:
        return [item.label for item in self._items]

    def _tensor(self, items: Sequence[_Stored]) -> torch.Tensor:
        tensors = [item.tensor for item in items if item.tensor is not None]
        if items and len(tensors) == len(items):
            return torch.stack(tensors)  # (N, V, T, 3, H, W)
        assert self.preprocess is not None
        stored = [item.pixels for item in items if item.pixels is not None]
        assert len(stored) == len(items), "a clip set holds either tensors or pixels for every clip"
        pixels = np.stack(stored)  # (N, V, T, S, S, 3)
        return normalise(pixels, self.preprocess)  # (N, V, T, 3, S, S)

    def stack(self) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        """(clips (N, T, 3, H, W) or (N, V, T, 3, H, W) float32, labels (N,) int64 or None when any
        is unknown, ids)."""
        if not self._items:
            raise EdgefuseError(f"{self.source}: no clips to stack")
        data = self._tensor(self._items)  # (N, V, T, 3, H, W)
        if data.shape[1] == 1:
            data = data[:, 0]  # (N, T, 3, H, W)
        labels = self.labels
        label_tensor = None if any(x is None for x in labels) else torch.tensor(labels, dtype=torch.int64)
        return data, label_tensor, self.ids

    def summary(self) -> str:
        """How many clips were read and which were skipped, and why."""
        what = ""
        if self.sampling is not None and self.preprocess is not None and self._items and \
                self._items[0].pixels is not None:
            s, p = self.sampling, self.preprocess
            what = (f" ({s.num_segments} segments {s.mode}{' train' if s.train else ''}, {s.clips} clip(s) x "
                    f"{s.crops} crop(s), {p.crop_size(s)} px {p.channel_order})")
        head = f"{self.source}: read {len(self)} of {self.planned} clips{what}"
        if not self.skipped:
            return head + "; none skipped"
        lines = [f"{head}; skipped {len(self.skipped)}:"]
        lines += [f"  {clip_id}: {reason}" for clip_id, reason in self.skipped[:MAX_LISTED]]
        if len(self.skipped) > MAX_LISTED:
            lines.append(f"  ... and {len(self.skipped) - MAX_LISTED} more")
        return "\n".join(lines)

    def to_npz(self, path: str | Path) -> Path:
        """Write ``clips``, ``ids``, ``labels`` (-1 = unknown), ``class_names`` and ``meta`` (JSON:
        preprocessing, sampling, source) atomically; :func:`open_clips` reads it back."""
        data, _, ids = self.stack()
        arrays: dict[str, np.ndarray] = {"clips": data.numpy(), "ids": np.array(ids, dtype=str)}
        if any(x is not None for x in self.labels):
            arrays["labels"] = np.array([-1 if x is None else x for x in self.labels], dtype=np.int64)
        if self.class_names is not None:
            arrays["class_names"] = np.array(self.class_names, dtype=str)
        meta = {"source": self.source,
                "preprocess": dataclasses.asdict(self.preprocess) if self.preprocess else None,
                "sampling": dataclasses.asdict(self.sampling) if self.sampling else None}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        dest = Path(path)
        with atomic_path(dest) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        return dest


# ---------------------------------------------------------------------------------------------
# Reading

def _decode_all(jobs: Sequence[Job], workers: int, show: bool,
                view_shape: tuple[int, ...]) -> list[tuple[Result, np.ndarray | None]]:
    """(result, pixels) per job, in order. Forked workers write pixels straight into one
    anonymous shared mapping (no pickling of megabytes through pipes: that cost more than
    the decoding for small clips); elsewhere they come back through the pool's pipes."""
    desc = "decoding clips"
    if workers <= 1 or len(jobs) <= 1:
        return [(r, r.pixels) for r in (run_job(job) for job in progress_bar(jobs, desc, enabled=show))]
    processes = min(workers, len(jobs))
    chunk = max(1, min(8, len(jobs) // (4 * processes)))  # dispatch costs ~2 ms a task: as much as a small clip
    if "fork" not in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = list(progress_bar(pool.imap(run_job, jobs, chunksize=chunk), desc, total=len(jobs), enabled=show))
        return [(r, r.pixels) for r in results]
    size = len(jobs) * int(np.prod(view_shape))
    output = np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=np.uint8)[:size]
    output = output.reshape(len(jobs), *view_shape)  # (N, V, T, S, S, 3) shared with the forked workers
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=attach_output, initargs=(output,)) as pool:
        results = list(progress_bar(pool.imap(run_job, jobs, chunksize=chunk), desc, total=len(jobs), enabled=show))
    return [(r, output[r.index] if r.shared else r.pixels) for r in results]


def _all_failed(src: Path, skipped: Sequence[tuple[str, str]], template: str) -> EdgefuseError:
    reasons = "; ".join(f"{i}: {r}" for i, r in skipped[:3])
    return EdgefuseError(f"{src}: none of the {len(skipped)} clips could be read ({reasons}); check the files, "
                         f"root= and frame_template= ({template!r})")


def _npz_views(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 5:
        return arr[:, None]  # (N, 1, T, 3, H, W)
    if arr.ndim == 6:
        return arr
    raise EdgefuseError(f"{path}: clips have shape {arr.shape}, expected (N, T, 3, H, W) or (N, V, T, 3, H, W)")


def _check_npz(clips: np.ndarray, path: Path, pre: Preprocess | None, sampling: Sampling | None) -> None:
    _, views, segments, channels, height, width = clips.shape
    if channels != 3:
        raise EdgefuseError(f"{path}: clips have {channels} channels, expected 3 (shape (N, T, 3, H, W))")
    if sampling is not None and segments != sampling.num_segments:
        raise EdgefuseError(f"{path}: clips have {segments} frames but {sampling.num_segments} segments are asked "
                            "for; re-create the .npz or ask for matching segments")
    if sampling is not None and views not in (1, sampling.views):
        raise EdgefuseError(f"{path}: clips have {views} views but the sampling makes {sampling.views}")
    if pre is not None:
        size = pre.crop_size(sampling or Sampling())
        if (height, width) != (size, size):
            raise EdgefuseError(f"{path}: clips are {height}x{width} but the preprocessing crops {size}x{size}; "
                                "re-create the .npz with this model's preprocessing")


def _open_npz(path: Path, pre: Preprocess | None, sampling: Sampling | None, labels: Any, classes: Any,
              num_clips: int | None, seed: int) -> ClipSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "clips" not in data:
                raise EdgefuseError(f"{path}: no 'clips' array (has {', '.join(data.files)}); store clips=(N, T, 3, "
                                    "H, W) float32 with numpy.savez")
            clips = _npz_views(np.asarray(data["clips"], dtype=np.float32), path)  # (N, V, T, 3, H, W)
            n = clips.shape[0]
            ids = [str(i) for i in data["ids"]] if "ids" in data else [str(i) for i in range(n)]
            stored = [int(x) for x in data["labels"]] if "labels" in data else [-1] * n
            names = tuple(str(x) for x in data["class_names"]) if "class_names" in data else None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise EdgefuseError(f"{path}: not a readable .npz archive ({e}); write it with ClipSet.to_npz or "
                            "numpy.savez") from None
    if len(ids) != n or len(stored) != n:
        raise EdgefuseError(f"{path}: {n} clips but {len(ids)} ids and {len(stored)} labels; the arrays must match")
    _check_npz(clips, path, pre, sampling)
    class_names, index = read_classes(classes)
    given = read_labels(labels, index)
    label_list = [given.get(i, None if x < 0 else x) for i, x in zip(ids, stored)]
    keep = balanced_subset(label_list, num_clips, seed) if num_clips is not None else list(range(n))
    items = [_Stored(ids[i], label_list[i], tensor=torch.from_numpy(np.ascontiguousarray(clips[i])))
             for i in keep]  # each (V, T, 3, H, W)
    return ClipSet(str(path), items, [], class_names or names, pre, sampling, len(keep))


def open_clips(src: str | Path, preprocess: Preprocess | None = None, sampling: Sampling | None = None, *,
               root: str | Path | None = None, labels: Any = None, classes: Any = None,
               num_clips: int | None = None, seed: int = 0, workers: int = 2, progress: bool = True,
               frame_template: str = DEFAULT_TEMPLATE, frame_start: int = 1) -> ClipSet:
    """Read, sample and preprocess the clips of ``src`` (see :mod:`edgefuse.clips` for the sources).

    ``preprocess`` / ``sampling`` default to ``Preprocess()`` / ``Sampling()`` (ImageNet
    224/256, 8 segments, one centre clip); for an ``.npz`` they are only checked against the
    stored clips. ``labels``: id -> label mapping or an ``id label`` file, overriding the
    source's; ``classes``: class names (file, V2 labels JSON, sequence, or name -> index
    mapping). ``num_clips``: a class-balanced subset chosen with ``seed``
    (:func:`balanced_subset`) before anything is decoded. ``frame_template`` /
    ``frame_start``: file names of frame ``i`` (0-based) are ``frame_template.format(i +
    frame_start)``.
    """
    src = Path(src)
    if num_clips is not None and num_clips < 1:
        raise EdgefuseError(f"num_clips must be at least 1, got {num_clips}")
    if src.suffix.lower() == ".npz":
        if not src.is_file():
            raise EdgefuseError(f"{src}: not found")
        return _open_npz(src, preprocess, sampling, labels, classes, num_clips, seed)
    pre = preprocess or Preprocess()
    sampling = sampling or Sampling()
    source = discover(src, root=Path(root) if root is not None else None, labels=labels, classes=classes,
                      template=frame_template, frame_start=frame_start)
    entries = list(source.entries)
    if num_clips is not None and num_clips < len(entries):
        keep = balanced_subset([e.label for e in entries], num_clips, seed)
        entries = [entries[i] for i in keep]
        log.info("%s: %d of %d clips chosen (class-balanced, seed %d)", src, len(entries), len(source.entries), seed)
    jobs = [Job(i, entry, pre, sampling) for i, entry in enumerate(entries)]
    view_shape = (sampling.views, sampling.num_segments, pre.crop_size(sampling), pre.crop_size(sampling), 3)
    items, skipped = [], []
    for entry, (result, pixels) in zip(entries, _decode_all(jobs, workers, progress, view_shape)):
        if pixels is None:
            log.warning("%s: skipped clip %s: %s", src, entry.id, result.reason)
            skipped.append((entry.id, result.reason or "unknown"))
        else:
            items.append(_Stored(entry.id, entry.label, pixels=pixels))
    if not items:
        raise _all_failed(src, skipped, frame_template)
    clipset = ClipSet(str(src), items, skipped, source.class_names, pre, sampling, len(entries))
    if skipped:
        log.warning("%s", clipset.summary())
    return clipset
