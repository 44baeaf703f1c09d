"""TSM: temporal shift in front of conv1 of residual blocks (Lin et al., ICCV 2019).

Official layout (mit-han-lab/temporal-shift-module): ``TemporalShift`` wraps the
shifted convolution, so its weights are named ``...conv1.net.weight``; the
MobileNetV2 is the repository's own (``features.N.conv.K`` flat numbering).
``checkpoint_filter_fn`` maps both onto edgefuse's torchvision-named backbones; plain TSN
checkpoints of that repository (``is_shift=False``) load into ``tsn_*`` the same way.

Non-local TSM (``tsm_nl_resnet50``, the Kinetics-400 release ``..._dense_nl``): the official code
wraps five ResNet-50 blocks (``NON_LOCAL_BLOCKS``) as ``layerK.i.block`` + ``layerK.i.nl``; here the
blocks keep their own names and carry the non-local block as ``nl`` (:mod:`edgefuse.models.layers.non_local`).

The online demo (``online_demo/``, Jester, 27 classes) ships a bare state dict of its own
MobileNetV2 (``features.*`` flat numbering, ``classifier.*``): the ``tsm_online_demo`` source loads
it into ``tsm_online_mobilenetv2``.

Registering (models and the checkpoint source) imports no torch: ``edgefuse models`` lists the
registry without it; the builders import the backbones when they run.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefuse.errors import EdgefuseError
from edgefuse.models.config import BACKBONES, ModelConfig, TSMOptions, backbones_for, input_defaults
from edgefuse.models.convert import common_prefixes, has_prefix, strip_module
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


# The blocks the official code wraps with a non-local block (ops/non_local.make_non_local, ResNet-50 only).
NON_LOCAL_BLOCKS = ("layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4")


def apply_non_local(backbone: nn.Module) -> int:
    """Put a non-local block on the output of each of ``NON_LOCAL_BLOCKS``; returns how many."""
    from edgefuse.models.backbones import RESNET_SPECS, Bottleneck, ResNet
    from edgefuse.models.layers import NonLocal

    if not isinstance(backbone, ResNet) or backbone.spec != RESNET_SPECS["resnet50"]:
        raise ValueError("non-local blocks are defined on ResNet-50 (the official release wraps five of its blocks); "
                         "use tsm_nl_resnet50")
    blocks = dict(backbone.blocks())
    for name in NON_LOCAL_BLOCKS:
        block = blocks[name]
        assert isinstance(block, Bottleneck)
        NonLocal(block.conv3.out_channels).attach(block)
    return len(NON_LOCAL_BLOCKS)


def build_tsm(cfg: ModelConfig) -> VideoClassifier:
    from edgefuse.models.backbones import create_backbone
    from edgefuse.models.video import VideoClassifier

    opts = cfg.options
    assert isinstance(opts, TSMOptions)
    if opts.non_local and opts.online:
        raise ValueError("non-local blocks attend to every frame of the clip, later ones included: "
                         "an online (streaming) TSM cannot have them")
    backbone = create_backbone(cfg.backbone, cfg.width)
    apply_shift(backbone, opts.shift_div, opts.online, opts.every, feeds_downsample=False)
    if opts.non_local:
        apply_non_local(backbone)
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

register_model(
    ModelConfig(name="tsm_nl_resnet50", arch="tsm", backbone="resnet50", num_classes=400,
                options=TSMOptions(non_local=True)),
    build_tsm,
    "TSM ResNet-50 + 5 non-local blocks (layer2.0/2, layer3.0/2/4): the official Kinetics-400 release",
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


# The official non-local wrapper holds the block as ``.block`` beside its ``.nl``; here the block keeps its names.
_NL_WRAPPED = re.compile(r"^(backbone\.layer\d+\.\d+)\.block\.")
_NL_KEY = re.compile(r"^backbone\.layer\d+\.\d+\.nl\.")


def _non_local_entry(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """``layerK.i.block.*`` -> ``layerK.i.*``; the non-local 1x1x1 Conv3d kernels (C', C, 1, 1, 1) -> 1x1 Conv2d."""
    key = _NL_WRAPPED.sub(r"\1.", key)
    if _NL_KEY.match(key) and value.dim() == 5 and tuple(value.shape[2:]) == (1, 1, 1):
        value = value.reshape(value.shape[0], value.shape[1], 1, 1)
    return key, value


def _check_non_local(converted: dict[str, torch.Tensor], model: nn.Module) -> None:
    """One clear error when the checkpoint and the model disagree on non-local blocks."""
    from edgefuse.models.layers import NonLocal

    in_ckpt = sorted({".".join(k.split(".")[1:3]) for k in converted if _NL_KEY.match(k)})
    in_model = any(isinstance(m, NonLocal) for m in model.modules())
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if in_ckpt and not in_model:
        raise EdgefuseError(f"the checkpoint has non-local blocks (after {', '.join(in_ckpt)}) and {name} has none: "
                            "load it into tsm_nl_resnet50")
    if in_model and not in_ckpt:
        raise EdgefuseError(f"{name} has non-local blocks and the checkpoint none: load it into a model without "
                            "(tsm_resnet50, tsn_resnet50)")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """TSM-repository state dict -> edgefuse names (pure: returns a new dict)."""
    from edgefuse.models.backbones import MobileNetV2

    backbone = getattr(model, "backbone", None)
    out = {}
    for key, value in state_dict.items():
        k = common_prefixes(key).replace(".net.", ".")
        if isinstance(backbone, MobileNetV2):
            k = _mbv2_key(k, backbone)
        k, value = _non_local_entry(k, value)
        out[k] = value
    _check_non_local(out, model)
    return out


def _is_tsm(keys: list[str], container: Mapping[str, Any]) -> bool:
    return has_prefix(keys, "base_model.", "new_fc.")


# Every research checkpoint has base_model./new_fc. keys: TSM is the format without the others' markers.
register_source("tsm", label="official TSM (mit-han-lab/temporal-shift-module)", detect=_is_tsm,
                filter_fn=checkpoint_filter_fn, archs=frozenset({"tsm", "tsn"}), order=40)


# --- the online demo's checkpoint (online_demo/mobilenet_v2_tsm.py, Jester) ----------------

_DEMO_FLAT = re.compile(r"^features\.\d+\.conv\.\d+\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_DEMO_GROUPED = re.compile(r"^features\.\d+\.conv\.\d+\.\d+\.")  # torchvision's grouped numbering


def _is_tsm_online_demo(keys: list[str], container: Mapping[str, Any]) -> bool:
    """The demo's MobileNetV2 as ``torch.save(model.state_dict())``: only ``features.*`` / ``classifier.*`` keys, the
    flat numbering inside blocks and a one-layer classifier (torchvision's ImageNet MobileNetV2 has grouped
    numbering and ``classifier.1.*``; every other format has a prefix)."""
    bare = [strip_module(k) for k in keys]
    return (bool(bare) and all(k.startswith(("features.", "classifier.")) for k in bare)
            and "classifier.weight" in bare and any(_DEMO_FLAT.match(k) for k in bare)
            and not any(_DEMO_GROUPED.match(k) for k in bare))


def online_demo_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Online-demo state dict -> edgefuse names (pure): ``features.*`` -> ``backbone.features.*`` with the flat
    numbering regrouped, ``classifier.*`` -> ``fc.*``. The demo shifts from the past only: the model must too."""
    from edgefuse.models.backbones import MobileNetV2
    from edgefuse.models.layers import TemporalShift

    backbone = getattr(model, "backbone", None)
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    if not isinstance(backbone, MobileNetV2) or not shifts or not all(m.online for m in shifts):
        raise EdgefuseError(f"the TSM online demo checkpoint is a MobileNetV2 with past-only shifts, {name} is not: "
                            "load it into tsm_online_mobilenetv2")
    out = {}
    for key, value in state_dict.items():
        k = strip_module(key)
        if k.startswith("classifier."):
            k = "fc." + k.removeprefix("classifier.")
        else:
            k = _mbv2_key("backbone." + k, backbone)
        out[k] = value
    return out


# Its keys carry no prefix at all (the others: base_model./backbone./module.): it cannot catch another format.
register_source("tsm_online_demo", label="official TSM online demo (mit-han-lab/temporal-shift-module online_demo)",
                detect=_is_tsm_online_demo, filter_fn=online_demo_filter_fn, archs=frozenset({"tsm"}), order=90)
