"""Backbones written for edgefuse, with torchvision-compatible parameter names."""
from __future__ import annotations

from torch import nn

from edgefuse.models.backbones.mobilenetv2 import InvertedResidual, MobileNetV2
from edgefuse.models.backbones.resnet import RESNET_SPECS, BasicBlock, Bottleneck, ResNet, resnet
from edgefuse.models.config import BACKBONES, INCEPTIONS, RESNETS

assert tuple(RESNET_SPECS) == RESNETS, "the registry's ResNet names (models/config.py) must match RESNET_SPECS"


def create_backbone(name: str, width: float = 1.0) -> nn.Module:
    """``width`` scales channels: ResNet base width 64*width, MobileNetV2 width multiplier."""
    if name in RESNET_SPECS:
        return resnet(name, base_width=round(64 * width))
    if name == "mobilenetv2":
        return MobileNetV2(width_mult=width)
    if name in INCEPTIONS:  # one file each: backbones/bninception.py (BNInception), backbones/inceptionv3.py
        from importlib import import_module

        if width != 1.0:
            raise ValueError(f"{name} has no width multiplier (the official networks only): use width 1.0")
        return import_module(f"edgefuse.models.backbones.{name}").build()  # type: ignore[no-any-return]
    raise KeyError(name)


__all__ = ["BACKBONES", "BasicBlock", "Bottleneck", "InvertedResidual", "MobileNetV2", "ResNet", "create_backbone"]
