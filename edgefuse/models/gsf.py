"""GSF: Gate-Shift-Fuse (Sudhakaran et al., TPAMI 2023) on the shared backbones.

ResNet Bottleneck: after conv3, before bn3 (official placement). ResNet BasicBlock:
after conv2, before bn2, and MobileNetV2: on the expanded channels after the
depthwise convolution; both are edgefuse variants the official code does not have.

BN-Inception and InceptionV3: where the official layer lists put them, one per Inception block between a
branch's first convolution and its BatchNorm (the backbone's ``gsf_sites()``).

Official layout (swathikirans/GSF): ``{'model_state_dict': ..., 'epoch': ...}`` from a
DataParallel ``VideoModel``; ``module.base_model.layerX.Y.gsf.conv3D.weight`` etc. on ResNets; on the
Inception networks the GSF modules sit at the backbone's top level, named after their convolution
(``gsf_inception_3a_1x1.conv3D.weight``, ``gsf_mixed_conv_Conv2D.conv3D.weight``). Plain TSN
checkpoints of that repository (``gsf=False``) load into ``tsn_*``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefuse.models.config import GSFOptions, ModelConfig, backbones_for, input_defaults
from edgefuse.models.convert import common_prefixes, has_prefix
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


# A GSF module's gate convolution: ``layer1.0.gsf.conv3D`` (ResNet), ``gsf_inception_3a_1x1.conv3D``
# (BN-Inception), ``gsf_mixed_conv_Conv2D.conv3D`` (InceptionV3).
_GSF_GATE = re.compile(r"((?:^|\.)gsf(?:_[^.]+)?)\.conv3D\.")
# GSF's InceptionV3 names its classifier ``top_cls_fc``: with dropout 0 the research code makes it the video
# model's classifier (``base_model.top_cls_fc``); BN-Inception's ``fc`` is mapped by common_prefixes.
_TOP_CLS_FC = "backbone.top_cls_fc."


def _convert_key(key: str) -> str:
    key = _GSF_GATE.sub(r"\1.conv3d.", common_prefixes(key))
    return "fc." + key[len(_TOP_CLS_FC):] if key.startswith(_TOP_CLS_FC) else key


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """GSF-repository state dict -> edgefuse names (pure)."""
    return {_convert_key(k): v for k, v in state_dict.items()}


def _is_gsf(keys: list[str], container: Mapping[str, Any]) -> bool:
    """GSF gate convolutions, InceptionV3 as only GSF's graph names it, or GSF's container around a research
    state dict (``container``: the file's top-level entries as read)."""
    if any(_GSF_GATE.search(k) for k in keys):
        return True
    if any(k.removeprefix("module.").startswith("base_model.conv_Conv2D.") for k in keys):
        return True
    return "model_state_dict" in container and has_prefix(keys, "base_model.", "new_fc.")


register_source("gsf", label="official GSF (swathikirans/GSF)", detect=_is_gsf, filter_fn=checkpoint_filter_fn,
                archs=frozenset({"gsf", "tsn"}), order=20)
