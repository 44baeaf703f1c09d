"""The trained zoo that ships with edgefuse: small models trained on the synthetic benchmark.

The folder holds ``zoo.json`` and the checkpoints it names. ``zoo.json`` is a JSON list of
entries, one per model::

    {"name": "synth_tsm_r18w025",          # what load_zoo_model() takes
     "model": "tsm_resnet18",              # registry name
     "options": {"width": 0.25},           # create_model keyword options
     "num_classes": 10, "segments": 8, "size": 112,
     "class_names": ["moving left", ...],
     "checkpoint": "synth_tsm_r18w025.pth", # file in this folder
     "sha256": "...",                      # of the checkpoint file
     "val_top1": 0.93, "val_within_pair": 0.95,
     "dense_gmacs_clip": 0.31,
     "gmacs_clip_given_decisions": null,    # AdaFuse: MACs per clip given the argmax decisions
     "saving_pct": null,                    # AdaFuse: % of the dense MACs saved on the val clips
     "trained_with": "edgefuse train tsm_resnet18 --data synth --width 0.25 ...",
     "train_seconds": 812.4}

No ``zoo.json`` means an empty zoo. ``EDGEFUSE_ZOO_DIR`` (or the ``directory`` argument) points
the functions at another folder.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.lab.train import TrainResult
    from edgefuse.models import VideoClassifier

__all__ = ["MANIFEST", "REQUIRED_KEYS", "ZOO_DIR", "add_to_zoo", "get_zoo_entry", "list_zoo", "load_zoo_model",
           "add_checkpoint", "trained_rows", "zoo_dir", "zoo_entry"]

ZOO_DIR = Path(__file__).resolve().parent
MANIFEST = "zoo.json"
REQUIRED_KEYS = ("name", "model", "options", "num_classes", "segments", "size", "checkpoint", "sha256")


def zoo_dir(directory: str | Path | None = None) -> Path:
    """``directory``, else ``$EDGEFUSE_ZOO_DIR``, else the package folder."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("EDGEFUSE_ZOO_DIR")
    return Path(env) if env else ZOO_DIR


def _check_entry(entry: Any, where: Path, i: int) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise EdgefuseError(f"{where}: entry {i} is a {type(entry).__name__}, not an object; fix or regenerate "
                            "the manifest")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise EdgefuseError(f"{where}: entry {entry.get('name', i)!r} lacks {', '.join(missing)}; fix or "
                            "regenerate the manifest")
    return entry


def list_zoo(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """The zoo's entries (empty when the folder has no ``zoo.json``)."""
    path = zoo_dir(directory) / MANIFEST
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgefuseError(f"{path}: not valid JSON ({e}); fix or regenerate the manifest") from None
    if not isinstance(entries, list):
        raise EdgefuseError(f"{path}: expected a JSON list of model entries, got a {type(entries).__name__}")
    return [_check_entry(e, path, i) for i, e in enumerate(entries)]


def get_zoo_entry(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    entries = list_zoo(directory)
    for entry in entries:
        if entry["name"] == name:
            return entry
    names = [e["name"] for e in entries]
    if not names:
        raise EdgefuseError(f"zoo model {name!r}: the zoo in {zoo_dir(directory)} is empty (no {MANIFEST})")
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"the zoo has {', '.join(names)}"
    raise EdgefuseError(f"unknown zoo model {name!r}: {hint}")


def load_zoo_model(name: str, directory: str | Path | None = None) -> VideoClassifier:
    """The zoo model ``name`` as a :class:`edgefuse.models.VideoClassifier` in eval mode, after
    checking its checkpoint's sha256 against the manifest."""
    from edgefuse.models import create_model
    from edgefuse.utils import sha256_file

    entry = get_zoo_entry(name, directory)
    path = zoo_dir(directory) / entry["checkpoint"]
    if not path.is_file():
        raise EdgefuseError(f"zoo model {name!r}: checkpoint {path} is missing; reinstall edgefuse")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise EdgefuseError(f"zoo model {name!r}: {path} has sha256 {digest[:12]}..., the manifest says "
                            f"{entry['sha256'][:12]}...; the file is corrupt or was replaced: reinstall edgefuse")
    model = create_model(entry["model"], checkpoint=path, num_classes=entry["num_classes"],
                         num_segments=entry["segments"], input_size=entry["size"], **entry["options"])
    return model.eval()


def trained_rows(pattern: str = "*", directory: str | Path | None = None) -> list[dict[str, Any]]:
    """``edgefuse models``' rows for the trained zoo: entries whose name or registry model match ``pattern``."""
    import fnmatch

    rows = []
    for e in list_zoo(directory):
        if not (fnmatch.fnmatchcase(e["name"], pattern) or fnmatch.fnmatchcase(e["model"], pattern)):
            continue
        path = zoo_dir(directory) / e["checkpoint"]
        saving = e.get("saving_pct")
        gmacs = e.get("gmacs_clip_given_decisions") or e["dense_gmacs_clip"]
        rows.append({
            "name": e["name"], "model": e["model"], "top1": f"{100 * e['val_top1']:.1f}%",
            "within_pair": f"{100 * e['val_within_pair']:.1f}%" if e.get("val_within_pair") is not None else "-",
            "gmacs_clip": round(gmacs, 4), "saving": f"{saving:.1f}%" if saving is not None else "-",
            "mb": round(path.stat().st_size / 1e6, 2) if path.is_file() else None,
            "segments": e["segments"], "size": e["size"], "val_top1": e["val_top1"],
            "val_within_pair": e.get("val_within_pair"), "saving_pct": saving,
        })
    return rows


def zoo_entry(name: str, result: TrainResult, trained_with: str) -> dict[str, Any]:
    """A manifest entry for a :class:`edgefuse.lab.train.TrainResult` saved to a checkpoint (its
    ``checkpoint`` and ``sha256`` must be set; the checkpoint's file name is stored)."""
    if result.checkpoint is None or result.sha256 is None:
        raise EdgefuseError(f"zoo entry {name!r}: the training result has no checkpoint; train with out= set")
    cfg, m = result.config, result.metrics
    return {
        "name": name, "model": cfg.model, "options": dict(cfg.options), "num_classes": cfg.num_classes,
        "segments": cfg.segments, "size": cfg.size,
        "class_names": list(result.model.config.class_names or ()),
        "checkpoint": Path(result.checkpoint).name, "sha256": result.sha256,
        "val_top1": m["top1"], "val_within_pair": m["within_pair"], "dense_gmacs_clip": m["dense_gmacs_clip"],
        "gmacs_clip_given_decisions": m.get("gmacs_clip_given_decisions"), "saving_pct": m.get("saving_pct"),
        "trained_with": trained_with, "train_seconds": round(result.train_seconds, 1),
    }


def add_checkpoint(name: str, checkpoint: str | Path, directory: str | Path | None = None) -> dict[str, Any]:
    """Copy a checkpoint written by ``edgefuse train`` into the zoo as ``<name>.pth`` and add its
    entry, built from the figures the checkpoint carries (what ``edgefuse train --zoo-name`` does)."""
    import shutil

    import torch

    from edgefuse.utils import atomic_path, sha256_file

    src = Path(checkpoint)
    try:
        meta = torch.load(src, map_location="cpu", weights_only=True).get("edgefuse") or {}
    except Exception as e:  # unreadable or not a dict: one clear line
        raise EdgefuseError(f"{src}: not a readable edgefuse checkpoint ({type(e).__name__}); train it with "
                            "'edgefuse train'") from None
    missing = [k for k in ("model", "val_top1", "train_config", "options") if k not in meta]
    if missing:
        raise EdgefuseError(f"{src}: lacks the training figures ({', '.join(missing)}); only checkpoints written by "
                            "'edgefuse train' go into the zoo")
    folder = zoo_dir(directory)
    dest = folder / f"{name}.pth"
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    from edgefuse.lab.train import TrainConfig

    cfg = TrainConfig.from_dict(meta["train_config"])
    cfg = dataclasses.replace(cfg, out=None, init=Path(cfg.init.name) if cfg.init is not None else None)
    entry = {
        "name": name, "model": meta["model"], "options": dict(meta["options"]), "num_classes": meta["num_classes"],
        "segments": meta["segments"], "size": meta["size"], "class_names": list(meta.get("class_names") or ()),
        "checkpoint": dest.name, "sha256": sha256_file(dest),
        "val_top1": meta["val_top1"], "val_within_pair": meta.get("val_within_pair"),
        "dense_gmacs_clip": meta.get("dense_gmacs_clip"),
        "gmacs_clip_given_decisions": meta.get("gmacs_clip_given_decisions"), "saving_pct": meta.get("saving_pct"),
        "trained_with": cfg.command("DATA"), "train_seconds": round(float(meta.get("train_seconds") or 0.0), 1),
    }
    add_to_zoo(entry, folder)
    return entry


def add_to_zoo(entry: Mapping[str, Any], directory: str | Path | None = None) -> Path:
    """Add ``entry`` to the manifest (replacing one of the same name), atomically; the checkpoint
    must already be in the folder with the entry's sha256."""
    from edgefuse.utils import atomic_path, sha256_file

    folder = zoo_dir(directory)
    entry = _check_entry(dict(entry), folder / MANIFEST, 0)
    ckpt = folder / entry["checkpoint"]
    if not ckpt.is_file() or sha256_file(ckpt) != entry["sha256"]:
        raise EdgefuseError(f"zoo entry {entry['name']!r}: {ckpt} is missing or its sha256 differs from the entry's; "
                            "copy the checkpoint into the zoo folder first")
    entries = [e for e in list_zoo(folder) if e["name"] != entry["name"]] + [entry]
    path = folder / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path
