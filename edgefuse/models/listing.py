"""What ``edgefuse models`` lists: registered models with their parameters and dense MACs, and the
pretrained tags with the figures recorded when they were trained.

Listing imports no torch. Parameters and MACs at each model's own input size (its config's ``input_size``:
224, InceptionV3 229; ``costs.json``, written by :func:`write_costs` from the registry and checked against it
by the test suite) are read, not counted; at another input size the models are built on the meta device and
counted (seconds).
MACs grow exactly linearly with the frames per clip, so any frame count uses the record.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError
from edgefuse.models.pretrained import list_pretrained
from edgefuse.models.registry import get_entry, list_models

COSTS_FILE = Path(__file__).resolve().parent / "costs.json"


def own_size(name: str) -> int:
    """The input height and width model ``name`` takes by default (its recorded MACs are at this size)."""
    return get_entry(name).default.input_size


@dataclass(frozen=True)
class ModelRow:
    name: str
    arch: str
    backbone: str
    size: int  # input height and width of the MACs
    params_m: float
    gmacs_frame: float
    gmacs_clip: float
    description: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PretrainedRow:
    """A pretrained tag as ``edgefuse models`` shows it (``name`` is the short name)."""

    name: str
    pretrained: str  # model.tag
    model: str
    top1: str
    within_pair: str
    gmacs_clip: float | None
    saving: str
    mb: float | None
    segments: int
    size: int
    val_top1: float | None
    val_within_pair: float | None
    saving_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@lru_cache(maxsize=1)
def recorded_costs() -> dict[str, tuple[int, int, int]]:
    """Registry name -> (parameters, dense MACs per frame, at input size), at the model's own input size."""
    if not COSTS_FILE.is_file():
        return {}
    data = json.loads(COSTS_FILE.read_text(encoding="utf-8"))
    return {name: (int(v["params"]), int(v["macs_per_frame"]), int(v["size"])) for name, v in data["models"].items()}


def measure_cost(name: str, size: int) -> tuple[int, int]:
    """(parameters, dense MACs per frame at ``size``) of registry model ``name``, counted on the meta device."""
    import torch

    from edgefuse.models.cost import model_cost
    from edgefuse.models.registry import resolve_config

    with torch.device("meta"):
        model = get_entry(name).builder(resolve_config(name))
    cost = model_cost(model, frames=8, size=size)
    return cost.params, cost.macs_per_clip // 8


def write_costs(path: Path = COSTS_FILE) -> Path:
    """Record every registered model's parameters and MACs per frame at its own input size (after adding or
    changing a model: ``python -c "from edgefuse.models.listing import write_costs; write_costs()"``)."""
    from edgefuse.utils import atomic_path

    models = {}
    for name in list_models():
        size = own_size(name)
        params, macs = measure_cost(name, size)
        models[name] = {"params": params, "macs_per_frame": macs, "size": size}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"models": models}, indent=1) + "\n", encoding="utf-8")
    recorded_costs.cache_clear()
    return path


def model_rows(pattern: str = "*", frames: int = 8, size: int | None = None) -> list[ModelRow]:
    """One row per registered model matching ``pattern``: parameters and dense MACs per frame and clip, at
    ``size`` px (None: each model's own input size, as recorded)."""
    names = list_models(pattern)
    if not names:
        raise EdgefuseError(f"no model matches {pattern!r}; run 'edgefuse models' for the list")
    recorded = recorded_costs()
    rows = []
    for name in names:
        entry = get_entry(name)
        at = size or own_size(name)
        rec = recorded.get(name)
        params, macs_frame = rec[:2] if rec is not None and rec[2] == at else measure_cost(name, at)
        rows.append(ModelRow(name=name, arch=entry.default.arch, backbone=entry.default.backbone, size=at,
                             params_m=params / 1e6, gmacs_frame=macs_frame / 1e9,
                             gmacs_clip=macs_frame * frames / 1e9, description=entry.description))
    return rows


def pretrained_rows(pattern: str = "*") -> list[PretrainedRow]:
    """One row per pretrained tag whose full name, short name or model matches ``pattern``."""
    rows = []
    for p in list_pretrained(pattern):
        gmacs = p.gmacs_clip_given_decisions or p.dense_gmacs_clip
        rows.append(PretrainedRow(
            name=p.name, pretrained=p.full_name, model=p.model,
            top1=f"{100 * p.val_top1:.1f}%" if p.val_top1 is not None else "-",
            within_pair=f"{100 * p.val_within_pair:.1f}%" if p.val_within_pair is not None else "-",
            gmacs_clip=round(gmacs, 4) if gmacs is not None else None,
            saving=f"{p.saving_pct:.1f}%" if p.saving_pct is not None else "-",
            mb=round(p.path.stat().st_size / 1e6, 2) if p.path.is_file() else None,
            segments=p.segments, size=p.size, val_top1=p.val_top1, val_within_pair=p.val_within_pair,
            saving_pct=p.saving_pct,
        ))
    return rows
