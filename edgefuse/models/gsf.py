"""GSF: Gate-Shift-Fuse (Sudhakaran et al., TPAMI 2023) on the shared backbones.

ResNet Bottleneck: after conv3, before bn3 (official placement). ResNet BasicBlock:
after conv2, before bn2, and MobileNetV2: on the expanded channels after the
depthwise convolution; both are edgefuse variants the official code does not have.

Official layout (swathikirans/GSF): ``{'model_state_dict': ..., 'epoch': ...}`` from a
DataParallel ``VideoModel``; ``module.base_model.layerX.Y.gsf.conv3D.weight`` etc. Plain TSN
checkpoints of that repository (``gsf=False``) load into ``tsn_*``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefuse.models.config import GSFOptions, ModelConfig, backbones_for, input_defaults
from edgefuse.models.convert import common_prefixes
from edgefuse.models.registry import register_model
from edgefuse.models.sources import register_source

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgefuse.models.video import VideoClassifier


def apply_gsf(backbone: nn.Module, ratio: float) -> int:
    from edgefuse.models.backbones import Bottleneck, MobileNetV2, ResNet
    from edgefuse.models.layers import GSF

    sites = getattr(backbone, "gsf_sites", None)
    if sites is not None:  # the Inception networks: where the official YAML puts each module
        count = 0
        for owner, attr, channels in sites():
            setattr(owner, attr, GSF(channels, ratio))
            count += 1
        return count
    if not isinstance(backbone, (ResNet, MobileNetV2)):  # pragma: no cover - every registered backbone is one
        raise TypeError(f"GSF is not defined for {type(backbone).__name__}")
    count = 0
    if isinstance(backbone, ResNet):
        for _, res_block in backbone.blocks():
            last = res_block.conv3 if isinstance(res_block, Bottleneck) else res_block.conv2
            res_block.gsf = GSF(last.out_channels, ratio)
            count += 1
    else:
        for _, block in backbone.blocks():
            if block.expands:
                block.gsf = GSF(block.hidden, ratio)
                count += 1
    return count


def build_gsf(cfg: ModelConfig) -> VideoClassifier:
    from edgefuse.models.backbones import create_backbone
    from edgefuse.models.video import VideoClassifier

    opts = cfg.options
    assert isinstance(opts, GSFOptions)
    backbone = create_backbone(cfg.backbone, cfg.width)
    apply_gsf(backbone, opts.ratio)
    return VideoClassifier(cfg, backbone)


for _bb in backbones_for("gsf"):
    register_model(
        ModelConfig(name=f"gsf_{_bb}", arch="gsf", backbone=_bb, options=GSFOptions(), **input_defaults(_bb)),
        build_gsf,
        f"GSF {_bb}: gated spatial-temporal shift with learned fusion in every block",
    )


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """GSF-repository state dict -> edgefuse names (pure)."""
    return {common_prefixes(k).replace(".gsf.conv3D.", ".gsf.conv3d."): v for k, v in state_dict.items()}


def _is_gsf(keys: list[str], container: Mapping[str, Any]) -> bool:
    return any(".gsf.conv3D." in k for k in keys) or "model_state_dict" in container


register_source("gsf", label="official GSF (swathikirans/GSF)", detect=_is_gsf, filter_fn=checkpoint_filter_fn,
                archs=frozenset({"gsf", "tsn"}), order=20)
