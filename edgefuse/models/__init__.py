"""The model zoo: AdaFuse, GSF, TSM and TSN on shared backbones, and their pretrained tags.

>>> from edgefuse.models import create_model, list_models
>>> model = create_model("adafuse_tsn_resnet50", num_classes=174, checkpoint="sthv1_adatsn50.pth.tar")
>>> model = create_model("tsm_resnet18.synth_w025", pretrained=True)

Importing this package and listing models import no torch: the torch-backed names below
(:class:`VideoClassifier`, the checkpoint functions) are loaded on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgefuse.models import adafuse, gsf, tsm, tsn  # noqa: F401  (register the models and checkpoint sources)
from edgefuse.models.config import AdaFuseOptions, GSFOptions, ModelConfig, TSMOptions
from edgefuse.models.pretrained import Pretrained, get_pretrained, list_pretrained
from edgefuse.models.registry import create_model, get_entry, list_models, register_model, resolve_config

if TYPE_CHECKING:
    from edgefuse.models.checkpoint import (
        Checkpoint,
        load_imagenet_backbone,
        load_into,
        read_checkpoint,
        save_checkpoint,
    )
    from edgefuse.models.video import VideoClassifier

_LAZY = {
    "Checkpoint": "edgefuse.models.checkpoint",
    "load_imagenet_backbone": "edgefuse.models.checkpoint",
    "load_into": "edgefuse.models.checkpoint",
    "read_checkpoint": "edgefuse.models.checkpoint",
    "save_checkpoint": "edgefuse.models.checkpoint",
    "VideoClassifier": "edgefuse.models.video",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgefuse.models' has no attribute {name!r}")


__all__ = [
    "AdaFuseOptions",
    "Checkpoint",
    "GSFOptions",
    "ModelConfig",
    "Pretrained",
    "TSMOptions",
    "VideoClassifier",
    "create_model",
    "get_entry",
    "get_pretrained",
    "list_models",
    "list_pretrained",
    "load_imagenet_backbone",
    "load_into",
    "read_checkpoint",
    "register_model",
    "resolve_config",
    "save_checkpoint",
]
