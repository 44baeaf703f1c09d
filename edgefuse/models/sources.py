"""Checkpoint sources: every format edgefuse reads registers itself beside its architecture.

A source is a ``detect`` function (does a state dict carry this format's marker keys? never the
file name) and one pure ``checkpoint_filter_fn`` (its state dict -> edgefuse names), as timm
pairs a model with its filter. ``tsm.py``, ``gsf.py`` and ``adafuse.py`` register the official
releases; edgefuse's own format is registered here. :mod:`edgefuse.models.checkpoint` reads files
and loads them through this table, so it imports no architecture. Torch-free: listing models
must not import torch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgefuse.models.convert import has_prefix, strip_module

if TYPE_CHECKING:
    import torch
    from torch import nn

# (state-dict keys, the file's top-level entries as read: the key that held the state dict included; {} for a
# bare state dict)
Detect = Callable[[list[str], Mapping[str, Any]], bool]
Filter = Callable[["dict[str, torch.Tensor]", "nn.Module"], "dict[str, torch.Tensor]"]


@dataclass(frozen=True)
class CheckpointSource:
    """``archs``: the architectures (``ModelConfig.arch``) its checkpoints load into, None for any.
    ``order``: detection order, lowest first (formats whose markers others also carry go last)."""

    name: str
    label: str
    detect: Detect
    filter_fn: Filter
    archs: frozenset[str] | None
    order: int


_SOURCES: dict[str, CheckpointSource] = {}


def register_source(name: str, *, label: str, detect: Detect, filter_fn: Filter, archs: frozenset[str] | None,
                    order: int) -> CheckpointSource:
    if name in _SOURCES:
        raise ValueError(f"checkpoint source {name!r} registered twice")
    source = CheckpointSource(name, label, detect, filter_fn, archs, order)
    _SOURCES[name] = source
    return source


def list_sources() -> list[CheckpointSource]:
    """The registered sources in detection order."""
    return sorted(_SOURCES.values(), key=lambda s: s.order)


def get_source(name: str) -> CheckpointSource:
    return _SOURCES[name]


def detect_source(keys: list[str], container: Mapping[str, Any]) -> str | None:
    """The first source (in detection order) whose markers the checkpoint carries, else None."""
    return next((s.name for s in list_sources() if s.detect(keys, container)), None)


def _is_edgefuse(keys: list[str], container: Mapping[str, Any]) -> bool:
    return "edgefuse" in container or has_prefix(keys, "backbone.")


def _edgefuse_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """edgefuse's own names (pure: only a DataParallel ``module.`` is dropped)."""
    return {strip_module(k): v for k, v in state_dict.items()}


register_source("edgefuse", label="edgefuse", detect=_is_edgefuse, filter_fn=_edgefuse_filter, archs=None, order=30)
