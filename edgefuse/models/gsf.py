"""GSF: Gate-Shift-Fuse (Sudhakaran et al., TPAMI 2023) on the shared backbones.

ResNet Bottleneck: after conv3, before bn3 (official placement). ResNet BasicBlock:
after conv2, before bn2, and MobileNetV2: on the expanded channels after the
depthwise convolution; both are edgefuse variants the official code does not have.

Official layout (swathikirans/GSF): ``{'model_state_dict': ..., 'epoch': ...}`` from a
DataParallel ``VideoModel``; ``module.base_model.layerX.Y.gsf.conv3D.weight`` etc.
"""
from __future__ import annotations

import torch
from torch import nn

from edgefuse.models.backbones import BACKBONES, Bottleneck, MobileNetV2, ResNet, create_backbone
from edgefuse.models.config import GSFOptions, ModelConfig
from edgefuse.models.layers import GSF
from edgefuse.models.registry import register_model
from edgefuse.models.tsm import common_prefixes
from edgefuse.models.video import VideoClassifier


def apply_gsf(backbone: nn.Module, ratio: float) -> int:
    count = 0
    if isinstance(backbone, ResNet):
        for _, block in backbone.blocks():
            last = block.conv3 if isinstance(block, Bottleneck) else block.conv2
            block.gsf = GSF(last.out_channels, ratio)
            count += 1
    elif isinstance(backbone, MobileNetV2):
        for _, block in backbone.blocks():
            if block.expands:
                block.gsf = GSF(block.hidden, ratio)
                count += 1
    else:  # pragma: no cover
        raise ValueError(f"GSF is not defined for {type(backbone).__name__}")
    return count


def build_gsf(cfg: ModelConfig) -> VideoClassifier:
    opts = cfg.options
    assert isinstance(opts, GSFOptions)
    backbone = create_backbone(cfg.backbone, cfg.width)
    apply_gsf(backbone, opts.ratio)
    return VideoClassifier(cfg, backbone)


for _bb in BACKBONES:
    register_model(
        ModelConfig(name=f"gsf_{_bb}", arch="gsf", backbone=_bb, options=GSFOptions()),
        build_gsf,
        f"GSF {_bb}: gated spatial-temporal shift with learned fusion in every block",
    )


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """GSF-repository state dict -> edgefuse names (pure)."""
    return {common_prefixes(k).replace(".gsf.conv3D.", ".gsf.conv3d."): v for k, v in state_dict.items()}
