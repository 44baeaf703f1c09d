"""TSM: temporal shift in front of conv1 of residual blocks (Lin et al., ICCV 2019).

Official layout (mit-han-lab/temporal-shift-module): ``TemporalShift`` wraps the
shifted convolution, so its weights are named ``...conv1.net.weight``; the
MobileNetV2 is the repository's own (``features.N.conv.K`` flat numbering).
``checkpoint_filter_fn`` maps both onto edgefuse's torchvision-named backbones; plain TSN
checkpoints of that repository (``is_shift=False``) load into ``tsn_*`` the same way.

Registering (models and the checkpoint source) imports no torch: ``edgefuse models`` lists the
registry without it; the builders import the backbones when they run.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefuse.models.config import BACKBONES, ModelConfig, TSMOptions, backbones_for, input_defaults
from edgefuse.models.convert import common_prefixes, has_prefix
from edgefuse.models.registry import register_model
from edgefuse.models.sources import register_source

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgefuse.models.backbones import MobileNetV2
    from edgefuse.models.video import VideoClassifier


def apply_shift(backbone: nn.Module, shift_div: int, online: bool, every: int, feeds_downsample: bool) -> int:
    """Put a temporal shift in the ``shift`` slot of the blocks TSM shifts; returns how many."""
    from edgefuse.models.backbones import MobileNetV2, ResNet
    from edgefuse.models.layers import TemporalShift

    sites = getattr(backbone, "shift_sites", None)
    if sites is not None:  # BN-Inception: the official code shifts the input of Inception blocks
        count = 0
        for owner, attr in sites():
            setattr(owner, attr, TemporalShift(shift_div, online=online, feeds_downsample=feeds_downsample))
            count += 1
        return count
    if not isinstance(backbone, (ResNet, MobileNetV2)):  # pragma: no cover - every registered backbone is one
        raise TypeError(f"temporal shift is not defined for {type(backbone).__name__}")
    count = 0
    if isinstance(backbone, ResNet):
        for li in range(1, 5):
            for bi, block in enumerate(getattr(backbone, f"layer{li}")):
                if bi % every == 0:
                    block.shift = TemporalShift(shift_div, online=online, feeds_downsample=feeds_downsample)
                    count += 1
    else:
        # TSM shifts the residual blocks that have an expansion layer.
        for _, block in backbone.blocks():
            if block.expands and block.use_res_connect:
                block.shift = TemporalShift(shift_div, online=online)
                count += 1
    return count


def build_tsm(cfg: ModelConfig) -> VideoClassifier:
    from edgefuse.models.backbones import create_backbone
    from edgefuse.models.video import VideoClassifier

    opts = cfg.options
    assert isinstance(opts, TSMOptions)
    backbone = create_backbone(cfg.backbone, cfg.width)
    apply_shift(backbone, opts.shift_div, opts.online, opts.every, feeds_downsample=False)
    return VideoClassifier(cfg, backbone)


for _bb in backbones_for("tsm"):
    _every = 2 if _bb == "resnet101" else 1  # the official code shifts every other block of ResNet-101
    register_model(
        ModelConfig(name=f"tsm_{_bb}", arch="tsm", backbone=_bb, options=TSMOptions(every=_every), **input_defaults(_bb)),
        build_tsm,
        f"TSM {_bb}: bidirectional temporal shift (1/8 each way) before conv1 of residual blocks",
    )
    if _bb not in BACKBONES:
        continue  # the online (streaming) models are the 2D CNNs'
    register_model(
        ModelConfig(name=f"tsm_online_{_bb}", arch="tsm", backbone=_bb, options=TSMOptions(online=True, every=_every)),
        build_tsm,
        f"TSM online {_bb}: past-only shift (1/8 of channels), causal, streams frame by frame",
    )


# --- official checkpoint format (mit-han-lab/temporal-shift-module) -------------------

# The repository's MobileNetV2 numbers the layers of an inverted residual flat;
# torchvision (and edgefuse) groups conv+BN(+ReLU6).
_MBV2_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_MBV2_NO_EXPAND = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_MBV2_KEY = re.compile(r"^backbone\.features\.(\d+)\.conv\.(\d+)\.(.+)$")


def _mbv2_key(key: str, backbone: MobileNetV2) -> str:
    m = _MBV2_KEY.match(key)
    if not m:
        return key
    idx, layer, rest = m.groups()
    block = backbone.features[int(idx)]
    table = _MBV2_EXPAND if getattr(block, "expands", True) else _MBV2_NO_EXPAND
    if layer not in table:
        return key
    return f"backbone.features.{idx}.conv.{table[layer]}.{rest}"


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """TSM-repository state dict -> edgefuse names (pure: returns a new dict)."""
    from edgefuse.models.backbones import MobileNetV2

    backbone = getattr(model, "backbone", None)
    out = {}
    for key, value in state_dict.items():
        k = common_prefixes(key).replace(".net.", ".")
        if isinstance(backbone, MobileNetV2):
            k = _mbv2_key(k, backbone)
        out[k] = value
    return out


def _is_tsm(keys: list[str], container: Mapping[str, Any]) -> bool:
    return has_prefix(keys, "base_model.", "new_fc.")


# Every research checkpoint has base_model./new_fc. keys: TSM is the format without the others' markers.
register_source("tsm", label="official TSM (mit-han-lab/temporal-shift-module)", detect=_is_tsm,
                filter_fn=checkpoint_filter_fn, archs=frozenset({"tsm", "tsn"}), order=40)
