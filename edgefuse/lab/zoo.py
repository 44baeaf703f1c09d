"""Adding trained checkpoints to the pretrained tags (:mod:`edgefuse.models.pretrained`).

The tags and their manifest ship with the models (``edgefuse/models/weights``); reading them is the
registry's (``create_model("tsm_resnet18.synth_w025", pretrained=True)``). This module writes:
:func:`add_checkpoint` copies a checkpoint written by ``edgefuse train`` into the folder and adds its
entry, built from the figures the checkpoint carries; :func:`zoo_entry` builds an entry from a
:class:`~edgefuse.lab.train.TrainResult`; :func:`add_to_zoo` adds an entry. ``directory`` (else
``$EDGEFUSE_ZOO_DIR``, else the package's folder) is the folder written.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefuse.errors import EdgefuseError
from edgefuse.models.pretrained import (
    MANIFEST,
    check_entry,
    pretrained_dir,
    read_manifest,
)

if TYPE_CHECKING:
    from edgefuse.lab.train import TrainResult

__all__ = ["add_checkpoint", "add_to_zoo", "zoo_entry"]

def zoo_entry(name: str, result: TrainResult, trained_with: str, tag: str | None = None) -> dict[str, Any]:
    """A manifest entry for a :class:`edgefuse.lab.train.TrainResult` saved to a checkpoint (its
    ``checkpoint`` and ``sha256`` must be set; the checkpoint's file name is stored). ``tag``: the
    pretrained tag (``model.tag``), default ``name``."""
    if result.checkpoint is None or result.sha256 is None:
        raise EdgefuseError(f"zoo entry {name!r}: the training result has no checkpoint; train with out= set")
    cfg, m = result.config, result.metrics
    return {
        "name": name, "model": cfg.model, "tag": tag or name, "options": dict(cfg.options),
        "num_classes": cfg.num_classes, "segments": cfg.segments, "size": cfg.size,
        "class_names": list(result.model.config.class_names or ()),
        "checkpoint": Path(result.checkpoint).name, "sha256": result.sha256,
        "val_top1": m.top1, "val_within_pair": m.within_pair, "dense_gmacs_clip": m.dense_gmacs_clip,
        "gmacs_clip_given_decisions": m.gmacs_clip_given_decisions, "saving_pct": m.saving_pct,
        "trained_with": trained_with, "train_seconds": round(result.train_seconds, 1),
    }


def add_checkpoint(name: str, checkpoint: str | Path, directory: str | Path | None = None,
                   tag: str | None = None) -> dict[str, Any]:
    """Copy a checkpoint written by ``edgefuse train`` into the folder as ``<name>.pth`` and add its
    entry (tag ``tag``, default ``name``), built from the figures the checkpoint carries."""
    import pickle
    import zipfile

    import torch

    from edgefuse.lab.train import TrainConfig
    from edgefuse.utils import atomic_path, sha256_file

    src = Path(checkpoint)
    try:
        meta = torch.load(src, map_location="cpu", weights_only=True).get("edgefuse") or {}
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError,
            zipfile.BadZipFile) as e:  # unreadable or not a dict: one clear line
        raise EdgefuseError(f"{src}: not a readable edgefuse checkpoint ({type(e).__name__}); train it with "
                            "'edgefuse train'") from None
    missing = [k for k in ("model", "val_top1", "train_config", "options") if k not in meta]
    if missing:
        raise EdgefuseError(f"{src}: lacks the training figures ({', '.join(missing)}); only checkpoints written by "
                            "'edgefuse train' go into the zoo")
    folder = pretrained_dir(directory)
    dest = folder / f"{name}.pth"
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    cfg = dataclasses.replace(TrainConfig.from_dict(meta["train_config"]), out=None)
    commands = [*meta.get("trained_from", []), cfg.recorded_command()]  # a warm start's own commands first
    seconds = meta.get("train_seconds_total", meta.get("train_seconds"))
    entry = {
        "name": name, "model": meta["model"], "tag": tag or name, "options": dict(meta["options"]),
        "num_classes": meta["num_classes"], "segments": meta["segments"], "size": meta["size"],
        "class_names": list(meta.get("class_names") or ()),
        "checkpoint": dest.name, "sha256": sha256_file(dest),
        "val_top1": meta["val_top1"], "val_within_pair": meta.get("val_within_pair"),
        "dense_gmacs_clip": meta.get("dense_gmacs_clip"),
        "gmacs_clip_given_decisions": meta.get("gmacs_clip_given_decisions"), "saving_pct": meta.get("saving_pct"),
        "trained_with": " && ".join(commands), "train_seconds": round(float(seconds or 0.0), 1),
    }
    add_to_zoo(entry, folder)
    return entry


def add_to_zoo(entry: Mapping[str, Any], directory: str | Path | None = None) -> Path:
    """Add ``entry`` to the manifest (replacing one of the same name), atomically; the checkpoint
    must already be in the folder with the entry's sha256."""
    from edgefuse.utils import atomic_path, sha256_file

    folder = pretrained_dir(directory)
    entry = check_entry(dict(entry), folder / MANIFEST, 0)
    ckpt = folder / entry["checkpoint"]
    if not ckpt.is_file() or sha256_file(ckpt) != entry["sha256"]:
        raise EdgefuseError(f"zoo entry {entry['name']!r}: {ckpt} is missing or its sha256 differs from the entry's; "
                            "copy the checkpoint into the zoo folder first")
    entries = [e for e in read_manifest(folder) if e["name"] != entry["name"]] + [entry]
    path = folder / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path
