"""``edgefuse clips``: what a clip source holds, and the same clips written as the ``.npz`` other stages take.

:func:`survey` reads a source exactly as calibrate, validate and device-clips read it (same
discovery, sampling, preprocessing, short-clip rule and skips) and returns a :class:`ClipsReport`:
counts, classes, every clip's frame count, duration, frame rate and orientation, and the clips it
could not read with the reason. With ``output`` it also writes the clips with
:meth:`~edgefuse.clips.ClipSet.to_npz`: ``clips`` (N, T, 3, H, W) float32, ``ids``, ``labels``
(-1 = unknown, when any clip has a label), ``class_names`` (when known) and ``meta`` (JSON:
preprocessing, sampling, source): what ``edgefuse export --policy-clips / --parity-clips`` and
every ``--clips`` option read.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.clips.clipset import open_clips
from edgefuse.clips.decode import ClipInfo
from edgefuse.clips.preprocess import Preprocess
from edgefuse.clips.sampling import Sampling
from edgefuse.errors import EdgefuseError

__all__ = ["ClipRow", "ClipsReport", "survey"]


@dataclass(frozen=True)
class ClipRow:
    """One clip that was read: its id, label and what decoding found (None for .npz clips)."""

    id: str
    label: int | None
    info: ClipInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "info": self.info.to_dict() if self.info else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClipRow:
        return cls(str(d["id"]), d.get("label"), ClipInfo.from_dict(dict(d["info"])) if d.get("info") else None)


@dataclass(frozen=True)
class ClipsReport:
    """What :func:`survey` found: ``shape`` is the clips' array shape (N, T, 3, H, W), ``output`` the .npz
    written, if any."""

    source: str
    kind: str  # list | ssv2 | videos | class_folders | frame_folders | frames | video | npz | sthv1 | jester | ...
    planned: int
    clips: tuple[ClipRow, ...]
    skipped: tuple[tuple[str, str], ...]  # (id, reason)
    class_names: tuple[str, ...] | None
    preprocess: Preprocess | None
    sampling: Sampling | None
    preprocessing_from: str  # where the preprocessing came from: "defaults", a graph, a model name
    min_frames: int
    too_short: int = 0
    ignored: tuple[str, ...] = ()
    output: str | None = None
    shape: tuple[int, ...] | None = None
    split: str | None = None  # benchmark annotations: the split read
    missing: tuple[str, ...] = ()  # clips the annotation lists whose files are not under the root
    root: str | None = None  # where the frames / videos were found
    class_order: str | None = None  # the rule that ordered the classes

    @property
    def read(self) -> int:
        return len(self.clips)

    def class_counts(self) -> dict[str, int]:
        """Clips per class name (or index when the names are unknown), unlabelled ones as "(no label)"."""
        counts: dict[str, int] = {}
        for row in self.clips:
            if row.label is None:
                name = "(no label)"
            elif self.class_names is not None and 0 <= row.label < len(self.class_names):
                name = self.class_names[row.label]
            else:
                name = str(row.label)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def stats(self, what: str) -> tuple[float, float, float] | None:
        """(min, median, max) of ``frames``, ``duration`` or ``fps`` over the clips that have it."""
        values = [getattr(r.info, what) for r in self.clips if r.info is not None and getattr(r.info, what) is not None]
        if not values:
            return None
        arr = np.asarray(values, dtype=np.float64)
        return float(arr.min()), float(np.median(arr)), float(arr.max())

    def count(self, predicate: str) -> int:
        """Clips whose info has ``predicate`` true: ``repeats``, ``vfr``, ``mirrored``, or ``rotation``."""
        return sum(1 for r in self.clips if r.info is not None and bool(getattr(r.info, predicate)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "kind": self.kind, "planned": self.planned, "read": self.read,
            "clips": [r.to_dict() for r in self.clips], "skipped": [list(s) for s in self.skipped],
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "class_counts": self.class_counts(),
            "preprocess": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in dataclasses.asdict(self.preprocess).items()} if self.preprocess else None,
            "sampling": dataclasses.asdict(self.sampling) if self.sampling else None,
            "preprocessing_from": self.preprocessing_from, "min_frames": self.min_frames,
            "too_short": self.too_short, "ignored": list(self.ignored), "output": self.output,
            "shape": list(self.shape) if self.shape is not None else None,
            "split": self.split, "missing": list(self.missing), "root": self.root, "class_order": self.class_order,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClipsReport:
        pre = d.get("preprocess")
        sampling = d.get("sampling")
        return cls(
            source=str(d["source"]), kind=str(d["kind"]), planned=int(d["planned"]),
            clips=tuple(ClipRow.from_dict(r) for r in d["clips"]),
            skipped=tuple((str(i), str(r)) for i, r in d["skipped"]),
            class_names=tuple(d["class_names"]) if d.get("class_names") is not None else None,
            preprocess=Preprocess(**pre) if pre else None, sampling=Sampling(**sampling) if sampling else None,
            preprocessing_from=str(d["preprocessing_from"]), min_frames=int(d["min_frames"]),
            too_short=int(d.get("too_short", 0)), ignored=tuple(d.get("ignored", ())),
            output=d.get("output"), shape=tuple(d["shape"]) if d.get("shape") is not None else None,
            split=d.get("split"), missing=tuple(d.get("missing", ())), root=d.get("root"),
            class_order=d.get("class_order"),
        )


def survey(src: str | Path, preprocess: Preprocess | None = None, sampling: Sampling | None = None, *,
           output: str | Path | None = None, root: str | Path | None = None, num_clips: int | None = None,
           seed: int = 0, workers: int = 2, progress: bool = True, num_classes: int | None = None,
           preprocessing_from: str = "defaults", **read: Any) -> ClipsReport:
    """Read ``src`` (a path or a :class:`~edgefuse.clips.ClipSource`) with ``preprocess`` /
    ``sampling`` (None: :class:`Preprocess` and :class:`Sampling` defaults for decoded sources,
    the stored clips as they are for an ``.npz``) and report on it;
    write the clips to ``output`` (an ``.npz``) when given. ``num_classes``: the model's class
    count, which labels must fit. ``read``: more keywords of :func:`edgefuse.clips.open`
    (``labels``, ``classes``, ``frame_template``, ...)."""
    if output is not None:
        out = Path(output)
        if out.suffix.lower() != ".npz":
            raise EdgefuseError(f"{out}: the output is an .npz archive; name it with .npz")
        if out.is_dir():
            raise EdgefuseError(f"{out}: is a folder; name the .npz file to write")
        if sampling is not None and sampling.views != 1:
            raise EdgefuseError(f"{out}: the .npz other commands read holds one view per clip; sample one clip and "
                                f"one crop (got {sampling.clips} x {sampling.crops})")
    clip_set = open_clips(src, preprocess, sampling, root=root, num_clips=num_clips, seed=seed, workers=workers,
                          progress=progress, num_classes=num_classes, **read)
    shape = (len(clip_set), *clip_set.clip_shape)  # what stack() and to_npz give
    written: str | None = None
    if output is not None:
        if len(shape) != 5:
            raise EdgefuseError(f"{src}: its clips hold {shape[1]} views each; the .npz other commands read holds "
                                "one view per clip (N, T, 3, H, W)")
        written = str(clip_set.to_npz(output))
    rows = tuple(ClipRow(i, label, info) for i, label, info in zip(clip_set.ids, clip_set.labels, clip_set.infos))
    return ClipsReport(
        source=str(src), kind=clip_set.kind, planned=clip_set.planned, clips=rows,
        skipped=tuple(clip_set.skipped), class_names=clip_set.class_names, preprocess=clip_set.preprocess,
        sampling=clip_set.sampling, preprocessing_from=preprocessing_from, min_frames=clip_set.min_frames,
        too_short=clip_set.too_short, ignored=tuple(clip_set.ignored), output=written, shape=shape,
        split=clip_set.split, missing=tuple(clip_set.missing), root=clip_set.root, class_order=clip_set.class_order)
