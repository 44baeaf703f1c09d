"""``open`` a clip source into a :class:`ClipSet`: sampled, preprocessed clips in memory.

Decoding happens once, in :func:`open_clips`, in ``workers`` processes (``fork`` where the
platform has it, so workers start instantly; they never touch torch). Forked workers write
their uint8 views straight into one anonymous shared mapping (elsewhere the views come back
through the pool's pipes). The set keeps the views as uint8 (a quarter of the float32 size:
8 x 224 x 224 views are 1.2 MB per clip) and normalises on access, with the official float32
operations. A clip that
cannot be read is logged, counted in :attr:`ClipSet.skipped` and listed by
:meth:`ClipSet.summary`; when none can be read, :class:`EdgefuseError` says why. Short clips follow
one rule whatever the source (:mod:`~edgefuse.clips.decode`): fewer than ``min_frames`` frames:
skipped; fewer than the sampling needs: frames repeat; each warned once with a count.

torch is imported only when clips are turned into tensors, so reading a source's entries and
checking its list files costs no torch import.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import mmap
import multiprocessing
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.clips.benchmarks import checkpoint_class_order, discover
from edgefuse.clips.decode import ClipInfo, Job, Result, attach_output, run_job
from edgefuse.clips.preprocess import Preprocess, normalise
from edgefuse.clips.sampling import Sampling
from edgefuse.clips.sources import DEFAULT_TEMPLATE, MIN_FRAMES, check_label, read_classes, read_labels, sniff
from edgefuse.clips.spec import ClipSource
from edgefuse.clips.spec import frame_template as printf_template
from edgefuse.clips.subset import balanced_subset
from edgefuse.errors import EdgefuseError
from edgefuse.progress import progress as progress_bar
from edgefuse.utils import atomic_path

if TYPE_CHECKING:
    import torch

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
    info: ClipInfo | None = None  # what decoding found (frames, duration, rotation, ...)


class ClipSet:
    """Clips read from one source, in the source's order (list order, or sorted names)."""

    def __init__(self, source: str, items: Sequence[_Stored], skipped: Sequence[tuple[str, str]],
                 class_names: tuple[str, ...] | None, preprocess: Preprocess | None, sampling: Sampling | None,
                 planned: int, *, kind: str = "npz", ignored: Sequence[str] = (), too_short: int = 0,
                 min_frames: int = MIN_FRAMES, split: str | None = None, missing: Sequence[str] = (),
                 root: str | None = None, class_order: str | None = None) -> None:
        self.source = source
        self._items = list(items)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.class_names = class_names
        self.preprocess = preprocess
        self.sampling = sampling
        self.planned = planned
        self.kind = kind  # the source's kind: list, ssv2, videos, class_folders, ..., npz
        self.ignored = list(ignored)  # files of a folder source that are neither videos nor frames
        self.too_short = too_short  # skipped for having fewer than min_frames frames
        self.min_frames = min_frames
        # benchmark annotations: the split, the clips whose files are missing (not in ``planned``), the root of
        # the frames / videos, and the rule that ordered the classes
        self.split = split
        self.missing = list(missing)
        self.root = root
        self.class_order = class_order

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

    @property
    def clip_shape(self) -> tuple[int, ...]:
        """Shape of one clip as :meth:`stack` gives it: (T, 3, H, W), or (V, T, 3, H, W) for several views."""
        if not self._items:
            return ()
        item = self._items[0]
        if item.tensor is not None:
            shape = tuple(int(d) for d in item.tensor.shape)  # (V, T, 3, H, W)
        else:
            assert item.pixels is not None
            v, t, h, w, c = item.pixels.shape  # (V, T, S, S, 3)
            shape = (v, t, c, h, w)
        return shape[1:] if shape[0] == 1 else shape

    @property
    def infos(self) -> list[ClipInfo | None]:
        """What decoding found about each clip (None for .npz clips)."""
        return [item.info for item in self._items]

    def _tensor(self, items: Sequence[_Stored]) -> torch.Tensor:
        import torch

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
        import torch

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
        if self.missing:
            head += f"; {len(self.missing)} more listed but missing under {self.root}"
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
    if _threads_running():  # forking a process that runs other threads can deadlock a worker on a copied lock
        from multiprocessing.pool import ThreadPool  # decoders release the GIL: threads share the output array

        output = np.empty((len(jobs), *view_shape), dtype=np.uint8)  # (N, V, T, S, S, 3)
        with ThreadPool(processes, initializer=attach_output, initargs=(output,)) as tpool:
            try:
                results = list(progress_bar(tpool.imap(run_job, jobs, chunksize=chunk), desc, total=len(jobs),
                                            enabled=show))
            finally:
                attach_output(None)
        return [(r, output[r.index] if r.shared else r.pixels) for r in results]
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


def _threads_running() -> bool:
    """Whether this process runs threads besides the caller's (native ones included: ONNX Runtime's and
    OpenMP's pools), where a forked worker may inherit a lock held by one of them and never return."""
    import os
    import threading

    try:
        return len(os.listdir("/proc/self/task")) > 1
    except OSError:  # no /proc: Python's own threads only
        return threading.active_count() > 1


def _all_failed(src: Path, skipped: Sequence[tuple[str, str]], template: str) -> EdgefuseError:
    reasons = "; ".join(f"{i}: {r}" for i, r in skipped[:3])
    return EdgefuseError(f"{src}: none of the {len(skipped)} clips could be read ({reasons}); check the files, "
                         f"the root (--root) and the frame template (--frame-template, now {template!r})")


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


def _check_finite(clips: np.ndarray, ids: Sequence[str], path: Path) -> None:
    finite = np.isfinite(clips.reshape(clips.shape[0], -1)).all(axis=1)  # (N,)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        more = f" ({len(bad)} of {len(finite)} clips do)" if len(bad) > 1 else ""
        raise EdgefuseError(f"{path}: clip {int(bad[0])} (id {ids[int(bad[0])]!r}) holds NaN or infinite values{more}; "
                            "re-create the .npz from the source clips ('edgefuse clips SRC -o clips.npz')")


def _check_npz_labels(stored: Sequence[int], ids: Sequence[str], num_classes: int | None, path: Path) -> None:
    for i, label in enumerate(stored):
        if label == -1:
            continue  # unknown, as ClipSet.to_npz writes it
        where = f"{path}: clip {i} (id {ids[i]!r})"
        if label < -1:
            raise EdgefuseError(f"{where}: label {label} is negative (-1 marks an unknown label); fix the labels array")
        check_label(label, num_classes, where)


def _open_npz(path: Path, pre: Preprocess | None, sampling: Sampling | None, labels: Any, classes: Any,
              num_clips: int | None, seed: int, num_classes: int | None = None) -> ClipSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "clips" not in data:
                raise EdgefuseError(f"{path}: no 'clips' array (has {', '.join(data.files)}); store clips=(N, T, 3, "
                                    "H, W) float32 with numpy.savez")
            raw = data["clips"]
            if raw.dtype.kind not in "fiu":
                raise EdgefuseError(f"{path}: clips are {raw.dtype}, not numbers; store clips=(N, T, 3, H, W) float32")
            clips = _npz_views(np.asarray(raw, dtype=np.float32), path)  # (N, V, T, 3, H, W)
            n = clips.shape[0]
            ids = [str(i) for i in data["ids"]] if "ids" in data else [str(i) for i in range(n)]
            raw_labels = data["labels"] if "labels" in data else np.full(n, -1)
            names = tuple(str(x) for x in data["class_names"]) if "class_names" in data else None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise EdgefuseError(f"{path}: not a readable .npz archive ({e}); write it with ClipSet.to_npz or "
                            "numpy.savez") from None
    if n == 0:
        raise EdgefuseError(f"{path}: the archive holds no clips; re-create it from a clip source")
    if raw_labels.ndim != 1 or raw_labels.dtype.kind not in "iu":
        raise EdgefuseError(f"{path}: labels are {raw_labels.dtype} of shape {raw_labels.shape}, expected (N,) "
                            "integers (-1 = unknown)")
    stored = [int(x) for x in raw_labels]
    if len(ids) != n or len(stored) != n:
        raise EdgefuseError(f"{path}: {n} clips but {len(ids)} ids and {len(stored)} labels; the arrays must match")
    _check_npz(clips, path, pre, sampling)
    _check_finite(clips, ids, path)
    class_names, index = read_classes(classes)
    known = len(class_names) if class_names is not None else len(names) if names is not None else num_classes
    _check_npz_labels(stored, ids, known, path)
    given = read_labels(labels, index, known)
    label_list = [given.get(i, None if x < 0 else x) for i, x in zip(ids, stored)]
    keep = balanced_subset(label_list, num_clips, seed) if num_clips is not None else list(range(n))
    import torch  # only once the archive passed its checks

    items = [_Stored(ids[i], label_list[i], tensor=torch.from_numpy(np.ascontiguousarray(clips[i])))
             for i in keep]  # each (V, T, 3, H, W)
    return ClipSet(str(path), items, [], class_names or names, pre, sampling, len(keep))


def _warn_short(src: Path, too_short: Sequence[tuple[str, str]], repeated: Sequence[tuple[str, int]],
                sampling: Sampling, min_frames: int, total: int) -> None:
    """One warning for each short-clip rule that applied, with its count."""
    if too_short:
        named = ", ".join(i for i, _ in too_short[:5]) + (", ..." if len(too_short) > 5 else "")
        log.warning("%s: skipped %d of %d clips with fewer than %d frames (%s); --min-frames sets the minimum",
                    src, len(too_short), total, min_frames, named)
    if repeated:
        shortest = min(n for _, n in repeated)
        log.warning("%s: %d of %d clips have fewer frames than the sampling takes (%d segments, %s; shortest %d "
                    "frames): their clips repeat frames (short=%r)", src, len(repeated), total, sampling.num_segments,
                    sampling.mode, shortest, sampling.short)


def model_reading(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a graph's edgefuse metadata says about reading clips for it (keywords of :func:`open_clips`): its class
    count, which labels are checked against, and the class order of its checkpoint (an official AdaFuse checkpoint
    numbers Something V1 / Jester classes in the labels file's order)."""
    return {"num_classes": meta.get("num_classes"),
            "default_class_order": checkpoint_class_order(meta.get("checkpoint_source"))}


def open_clips(src: str | Path, preprocess: Preprocess | None = None, sampling: Sampling | None = None, *,
               root: str | Path | None = None, labels: Any = None, classes: Any = None,
               num_clips: int | None = None, seed: int = 0, workers: int = 2, progress: bool = True,
               frame_template: str = DEFAULT_TEMPLATE, frame_start: int = 1, num_classes: int | None = None,
               min_frames: int | None = None, allow_outside_root: bool = False, format: str | None = None,
               split: str | None = None, class_order: str | None = None,
               default_class_order: str | None = None) -> ClipSet:
    """Read, sample and preprocess the clips of ``src`` (see :mod:`edgefuse.clips` for the sources).

    ``preprocess`` / ``sampling`` default to ``Preprocess()`` / ``Sampling()`` (ImageNet
    224/256, 8 segments, one centre clip); for an ``.npz`` they are only checked against the
    stored clips. ``labels``: id -> label mapping or an ``id label`` file, overriding the
    source's; ``classes``: class names (file, V2 labels JSON, sequence, or name -> index
    mapping). ``num_clips``: a class-balanced subset chosen with ``seed``
    (:func:`balanced_subset`) before anything is decoded. ``frame_template`` /
    ``frame_start``: file names of frame ``i`` (0-based) are ``frame_template.format(i +
    frame_start)`` (printf style ``img_%05d.jpg`` is converted). ``num_classes``: the class
    count labels are checked against (the model's; the class list's length when ``classes`` is
    given). ``min_frames``: clips with fewer frames are skipped (default 3).
    ``allow_outside_root``: accept list entries that leave the root. ``format``: the source's format (None:
    judged from its name and content; "tsn", or a benchmark annotation format of
    :mod:`edgefuse.clips.benchmarks`: sthv1, sthv2, jester, kinetics, ucf101, hmdb51); ``split``: the UCF101 /
    HMDB51 split (``1``, ``test2``, ``train3``) or a Kinetics CSV's split value; ``class_order``: "sorted" or
    "file" for Something V1 / Jester (default sorted, as TSM / GSF / TRN; AdaFuse's checkpoints use "file");
    ``default_class_order``: the order when neither ``class_order`` nor ``src`` names one (the model's: see
    :func:`model_reading`).

    ``src`` may be a :class:`~edgefuse.clips.spec.ClipSource`: its options (classes, frame
    template and start, sampling clock, minimum frames, outside-root permission) apply wherever
    the keywords here are left at their defaults.
    """
    if isinstance(src, ClipSource):
        opts = src.options()
        classes = classes if classes is not None else opts["classes"]
        frame_template = frame_template if frame_template != DEFAULT_TEMPLATE else opts["frame_template"]
        frame_start = frame_start if frame_start != 1 else opts["frame_start"]
        min_frames = min_frames if min_frames is not None else opts["min_frames"]
        allow_outside_root = allow_outside_root or opts["allow_outside_root"]
        format = format if format is not None else opts["format"]
        split = split if split is not None else opts["split"]
        class_order = class_order if class_order is not None else opts["class_order"]
        if opts["clock"] != "index":
            sampling = dataclasses.replace(sampling or Sampling(), clock=opts["clock"])
    class_order = class_order if class_order is not None else default_class_order
    frame_template = printf_template(frame_template)  # 'img_%05d.jpg' works as well as 'img_{:05d}.jpg'
    min_frames = MIN_FRAMES if min_frames is None else min_frames
    if min_frames < 1:
        raise EdgefuseError(f"min_frames must be at least 1, got {min_frames}")
    src = Path(src)
    if num_clips is not None and num_clips < 1:
        raise EdgefuseError(f"num_clips must be at least 1, got {num_clips}")
    if src.suffix.lower() == ".npz" or (src.is_file() and sniff(src) == "npz"):
        if not src.is_file():
            raise EdgefuseError(f"{src}: not found")
        return _open_npz(src, preprocess, sampling, labels, classes, num_clips, seed, num_classes)
    pre = preprocess or Preprocess()
    sampling = sampling or Sampling()
    source = discover(src, root=Path(root) if root is not None else None, labels=labels, classes=classes,
                      template=frame_template, frame_start=frame_start, num_classes=num_classes,
                      allow_outside_root=allow_outside_root, fmt=format, split=split, class_order=class_order)
    entries = list(source.entries)
    if num_clips is not None and num_clips < len(entries):
        keep = balanced_subset([e.label for e in entries], num_clips, seed)
        entries = [entries[i] for i in keep]
        log.info("%s: %d of %d clips chosen (class-balanced, seed %d)", src, len(entries), len(source.entries), seed)
    jobs = [Job(i, entry, pre, sampling, min_frames) for i, entry in enumerate(entries)]
    view_shape = (sampling.views, sampling.num_segments, pre.crop_size(sampling), pre.crop_size(sampling), 3)
    items, skipped, too_short, repeated = [], [], [], []
    for entry, (result, pixels) in zip(entries, _decode_all(jobs, workers, progress, view_shape)):
        if pixels is None:
            if result.too_short:
                too_short.append((entry.id, result.reason or "too short"))
            else:
                log.warning("%s: skipped clip %s: %s", src, entry.id, result.reason)
            skipped.append((entry.id, result.reason or "unknown"))
        else:
            items.append(_Stored(entry.id, entry.label, pixels=pixels, info=result.info))
            if result.info is not None and result.info.repeats:
                repeated.append((entry.id, result.info.frames))
    _warn_short(src, too_short, repeated, sampling, min_frames, len(entries))
    if not items:
        raise _all_failed(src, skipped, frame_template)
    clipset = ClipSet(str(src), items, skipped, source.class_names, pre, sampling, len(entries), kind=source.kind,
                      ignored=source.ignored, too_short=len(too_short), min_frames=min_frames, split=source.split,
                      missing=source.missing, root=source.root, class_order=source.class_order)
    if len(skipped) > len(too_short):
        log.warning("%s", clipset.summary())
    return clipset
