"""Benchmark folders (``edgefuse synth`` output, TSN layout) as training data."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from edgefuse.errors import EdgefuseError
from edgefuse.lab.train.config import Data, TrainConfig, TrainResult
from edgefuse.lab.train.loop import train
from edgefuse.lab.train.model import model_config


def _list_frames(path: Path) -> int:
    """The fewest frames any entry of a TSN list file (``path num_frames label``) has."""
    from edgefuse.clips.sources import parse_list_file

    entries = parse_list_file(path)
    unknown = next((e for e in entries if e.num_frames is None), None)
    if unknown is not None:
        raise EdgefuseError(f"{path}: entry {unknown.id!r} gives no frame count; training needs "
                            "'relative_path num_frames label' lines")
    return min(e.num_frames for e in entries if e.num_frames is not None)


def _benchmark_files(data_dir: Path) -> tuple[Path, Path, Path]:
    files = tuple(data_dir / n for n in ("train.txt", "val.txt", "classes.txt"))
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise EdgefuseError(f"{data_dir}: not a benchmark folder (no {', '.join(missing)}); make one with "
                            f"'edgefuse synth -o {data_dir}' or give a folder with TSN list files train.txt, "
                            "val.txt and classes.txt")
    return files  # type: ignore[return-value]


def load_benchmark(cfg: TrainConfig, data_dir: str | Path, *, progress: bool = True
                   ) -> tuple[Data, Data, tuple[str, ...]]:
    """A benchmark folder as training data: (train frames uint8 (N, F, S, S, 3) at the scale size
    with labels, val clips (N, T, 3, size, size) preprocessed exactly as :mod:`edgefuse.clips`
    evaluates, with labels, class names). ``F`` is the fewest frames of any train entry; frames
    are decoded by :func:`edgefuse.clips.open` (short side resized to the scale size, centre
    square), every one of them (F segments of one frame each)."""
    from edgefuse import clips  # decoders (PyAV, Pillow) only when a folder is read

    root = Path(data_dir)
    train_list, val_list, classes_file = _benchmark_files(root)
    frames = _list_frames(train_list)
    raw = clips.Preprocess(input_size=cfg.scale_size, scale_size=cfg.scale_size, mean=(0.0, 0.0, 0.0),
                           std=(1.0, 1.0, 1.0), pixel_range=255.0)  # pixel values as they are
    train_set = clips.open(train_list, raw, clips.Sampling(num_segments=frames), classes=classes_file,
                           workers=cfg.workers, progress=progress)
    if any(label is None for label in train_set.labels):
        raise EdgefuseError(f"{train_list}: some clips have no label; training needs 'path num_frames label' lines")
    pixels = torch.stack([c.data.round().to(torch.uint8).permute(0, 2, 3, 1) for c in train_set])  # (N, F, S, S, 3)
    train_labels = torch.tensor(train_set.labels, dtype=torch.int64)
    del train_set
    pre = clips.Preprocess.from_model_config(model_config(cfg))
    val_set = clips.open(val_list, pre, clips.Sampling(num_segments=cfg.segments), classes=classes_file,
                         workers=cfg.workers, progress=progress)
    val_clips, val_labels, _ = val_set.stack()
    names = tuple(val_set.class_names or ())
    if val_labels is None:
        raise EdgefuseError(f"{val_list}: some clips have no label; training needs 'path num_frames label' lines")
    return (pixels, train_labels), (val_clips, val_labels), names


def train_from_dir(cfg: TrainConfig, data_dir: str | Path, *, progress: bool = True) -> TrainResult:
    """:func:`train` on a benchmark folder (``edgefuse synth`` output: ``train.txt``, ``val.txt``,
    ``classes.txt``, frame folders ``frames/<id>/00001.jpg``). The classes (their number and
    names) are those of ``classes.txt``; ``cfg.class_names``, when set, must have as many."""
    train_data, val_data, names = load_benchmark(cfg, data_dir, progress=progress)
    if cfg.class_names is not None and names and len(cfg.class_names) != len(names):
        raise EdgefuseError(f"{data_dir}: classes.txt lists {len(names)} classes, the config names "
                            f"{len(cfg.class_names)}; drop the class names or make them match")
    if names and cfg.class_names is None:
        cfg = dataclasses.replace(cfg, num_classes=len(names), class_names=names)
    return train(cfg, train_data, val_data, progress=progress)
