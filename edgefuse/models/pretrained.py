"""Pretrained tags: trained weights of a registered model, resolved by ``create_model`` as timm does.

``create_model("tsm_resnet18.synth_w025", pretrained=True)`` builds ``tsm_resnet18`` with the tag's
config (classes, segments, input size, options) and loads its checkpoint after checking its
sha256. Each tag also has a short name (``synth_tsm_r18w025``) that works wherever a model name does.

The tags ship as package data: ``weights/pretrained.json`` lists them, one object each::

    {"name": "synth_tsm_r18w025",            # the short name
     "model": "tsm_resnet18", "tag": "synth_w025",   # -> tsm_resnet18.synth_w025
     "options": {"width": 0.25},             # create_model keyword options
     "num_classes": 10, "segments": 8, "size": 112,
     "class_names": ["moving left", ...],
     "checkpoint": "synth_tsm_r18w025.pth",  # file in the same folder
     "sha256": "...",                        # of the checkpoint file
     "val_top1": 0.976, "val_within_pair": 0.988,
     "dense_gmacs_clip": 0.287,
     "gmacs_clip_given_decisions": null,      # AdaFuse: MACs per clip given the argmax decisions
     "saving_pct": null,                      # AdaFuse: % of the dense MACs saved on the val clips
     "trained_with": "edgefuse train tsm_resnet18 --data DATA --width 0.25 ...",
     "train_seconds": 812.4}

No manifest means no tags. ``$EDGEFUSE_ZOO_DIR`` (or the ``directory`` argument) points at another
folder. Reading the manifest imports no torch (``edgefuse models`` lists it in well under a second);
:mod:`edgefuse.lab.zoo` adds trained checkpoints to it.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "pretrained.json"
REQUIRED_KEYS = ("name", "model", "options", "num_classes", "segments", "size", "checkpoint", "sha256")


def pretrained_dir(directory: str | Path | None = None) -> Path:
    """``directory``, else ``$EDGEFUSE_ZOO_DIR``, else the weights shipped in the package."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("EDGEFUSE_ZOO_DIR")
    return Path(env) if env else WEIGHTS_DIR


@dataclass(frozen=True)
class Pretrained:
    """One pretrained tag: what builds the model, its checkpoint and the figures recorded at training."""

    name: str  # the short name, e.g. synth_tsm_r18w025
    model: str  # registry name
    tag: str
    options: dict[str, Any]
    num_classes: int
    segments: int
    size: int
    checkpoint: str  # file name in ``folder``
    sha256: str
    folder: Path
    class_names: tuple[str, ...] = ()
    val_top1: float | None = None
    val_within_pair: float | None = None
    dense_gmacs_clip: float | None = None
    gmacs_clip_given_decisions: float | None = None
    saving_pct: float | None = None
    trained_with: str = ""
    train_seconds: float = 0.0

    @property
    def full_name(self) -> str:
        """``model.tag``, as timm names pretrained weights."""
        return f"{self.model}.{self.tag}"

    @property
    def path(self) -> Path:
        return self.folder / self.checkpoint

    def checked_path(self) -> Path:
        """The checkpoint file, after checking it is there with the manifest's sha256."""
        from edgefuse.utils import sha256_file

        if not self.path.is_file():
            raise EdgefuseError(f"zoo model {self.name!r}: checkpoint {self.path} is missing; reinstall edgefuse")
        digest = sha256_file(self.path)
        if digest != self.sha256:
            raise EdgefuseError(f"zoo model {self.name!r}: {self.path} has sha256 {digest[:12]}..., the manifest "
                                f"says {self.sha256[:12]}...; the file is corrupt or was replaced: reinstall edgefuse")
        return self.path

    def model_kwargs(self) -> dict[str, Any]:
        """``create_model`` keyword arguments that give the model this tag was trained as."""
        return {"num_classes": self.num_classes, "num_segments": self.segments, "input_size": self.size,
                **self.options}

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (JSON-ready; the folder is where the manifest is, not stored)."""
        d = dataclasses.asdict(self)
        del d["folder"]
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, entry: dict[str, Any], folder: Path) -> Pretrained:
        fields = {f.name for f in dataclasses.fields(cls)} - {"folder"}
        values = {k: v for k, v in entry.items() if k in fields}
        values.setdefault("tag", entry["name"])
        values["class_names"] = tuple(values.get("class_names") or ())
        values["options"] = dict(values["options"])
        return cls(folder=folder, **values)


def check_entry(entry: Any, where: Path, i: int) -> dict[str, Any]:
    """``entry`` if it is a manifest object with every required key, else one clear error."""
    if not isinstance(entry, dict):
        raise EdgefuseError(f"{where}: entry {i} is a {type(entry).__name__}, not an object; fix or regenerate "
                            "the manifest")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise EdgefuseError(f"{where}: entry {entry.get('name', i)!r} lacks {', '.join(missing)}; fix or "
                            "regenerate the manifest")
    return entry


def read_manifest(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """The manifest's entries as stored (empty when the folder has none)."""
    path = pretrained_dir(directory) / MANIFEST
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgefuseError(f"{path}: not valid JSON ({e}); fix or regenerate the manifest") from None
    if not isinstance(entries, list):
        raise EdgefuseError(f"{path}: expected a JSON list of model entries, got a {type(entries).__name__}")
    return [check_entry(e, path, i) for i, e in enumerate(entries)]


def list_pretrained(pattern: str = "*", directory: str | Path | None = None) -> list[Pretrained]:
    """The tags whose full name, short name or model match the glob ``pattern``, in manifest order."""
    folder = pretrained_dir(directory)
    tags = [Pretrained.from_dict(e, folder) for e in read_manifest(folder)]
    return [p for p in tags if any(fnmatch.fnmatchcase(n, pattern) for n in (p.full_name, p.name, p.model))]


def find_pretrained(name: str, directory: str | Path | None = None) -> Pretrained | None:
    """The tag called ``name`` (``model.tag`` or its short name), or None."""
    return next((p for p in list_pretrained(directory=directory) if name in (p.full_name, p.name)), None)


def get_pretrained(name: str, directory: str | Path | None = None) -> Pretrained:
    """The tag called ``name``, or one error naming the closest."""
    found = find_pretrained(name, directory)
    if found is not None:
        return found
    tags = list_pretrained(directory=directory)
    if not tags:
        raise EdgefuseError(f"zoo model {name!r}: the zoo in {pretrained_dir(directory)} is empty (no {MANIFEST})")
    names = [p.name for p in tags] + [p.full_name for p in tags]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"the zoo has {', '.join(p.full_name for p in tags)}"
    raise EdgefuseError(f"unknown zoo model {name!r}: {hint}")


def default_tag(model: str) -> Pretrained:
    """The first tag of registry model ``model`` (``create_model(model, pretrained=True)``)."""
    found = next((p for p in list_pretrained() if p.model == model), None)
    if found is None:
        raise EdgefuseError(f"{model} has no pretrained weights; pass a checkpoint instead, or pick a model "
                            "'edgefuse models' lists with a pretrained tag")
    return found
