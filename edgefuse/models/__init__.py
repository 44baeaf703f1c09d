"""The model zoo: AdaFuse, GSF, TSM and TSN on shared backbones.

>>> from edgefuse.models import create_model, list_models
>>> model = create_model("adafuse_tsn_resnet50", num_classes=174, checkpoint="sthv1_adatsn50.pth.tar")
"""
from edgefuse.models import adafuse, gsf, tsm, tsn  # noqa: F401  (registers the models)
from edgefuse.models.checkpoint import Checkpoint, load_imagenet_backbone, load_into, read_checkpoint, save_checkpoint
from edgefuse.models.config import AdaFuseOptions, GSFOptions, ModelConfig, TSMOptions
from edgefuse.models.registry import create_model, get_entry, list_models, register_model, resolve_config
from edgefuse.models.video import VideoClassifier

__all__ = [
    "AdaFuseOptions",
    "Checkpoint",
    "GSFOptions",
    "ModelConfig",
    "TSMOptions",
    "VideoClassifier",
    "create_model",
    "get_entry",
    "list_models",
    "load_imagenet_backbone",
    "load_into",
    "read_checkpoint",
    "register_model",
    "resolve_config",
    "save_checkpoint",
]
