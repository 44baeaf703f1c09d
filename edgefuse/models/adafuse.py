"""AdaFuse (Meng et al., ICLR 2021) on the shared ResNet backbones.

Variants as released (mengyuest/AdaFuse, zz_eval.sh):
- ``adafuse_tsn_*``: policy in every block, hidden size 196608 // width, policy nets
  shared between blocks with the same (2*C_in, 3*width).
- ``adafuse_tsm_*``: the same plus a TSM shift (1/8 each way) in front of every
  block. Unlike TSM, AdaFuse's policy net and the projection shortcut read the
  shifted tensor.
- ``adafuse_tsm_last_*`` ("TSM+Last"): policy only in the last stage, hidden 1024,
  not shared, shift everywhere.

On BN-Inception (``adafuse_tsn_bninception``, the official ``--arch AdaBNInc``: ``bn_archs/bn_inception_ada.py``):
one policy per Inception block (3a .. 5b), not shared (the official code cannot share them on this backbone),
hidden size 196608 // the block's output channels; the block's concatenated output is fused with the previous
segment's, the policy reading the block input (``backbone.adafuse_sites()``). No shift variant exists there. Its
policies are ``module.base_model.policy_net_3a.gate_fc0.weight`` ... in the official state dict.

Official layout: ``{'state_dict': ...}`` from a DataParallel ``TSN_Gate``:
``module.base_model.layer4.0.policy_net.gate_fc0.weight``, ``...gate_bn...``,
shared layers also under ``module.base_model.gate_fc0s.<in>_<out>``, shortcut
convolutions named ``downsample0``/``downsample1``, classifier ``module.new_fc``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgefuse.models.config import RESNETS, AdaFuseOptions, ModelConfig, backbone_available, input_defaults
from edgefuse.models.convert import common_prefixes
from edgefuse.models.registry import register_model
from edgefuse.models.sources import register_source
from edgefuse.models.tsm import apply_shift

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgefuse.models.backbones import ResNet
    from edgefuse.models.video import VideoClassifier


def _linear(cin: int, cout: int) -> nn.Linear:
    from torch import nn

    fc = nn.Linear(cin, cout)
    nn.init.normal_(fc.weight, 0.0, 0.001)
    nn.init.zeros_(fc.bias)
    return fc


def apply_adafuse(backbone: ResNet, opts: AdaFuseOptions) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """Fill the ``adafuse`` slot of the enabled blocks; returns the shared layers (empty if not shared)."""
    from torch import nn

    from edgefuse.models.layers import AdaFuse, hidden_size

    shared0, shared1 = nn.ModuleDict(), nn.ModuleDict()
    for stage in range(4):
        if opts.enabled_stages and stage not in opts.enabled_stages:
            continue
        for block in getattr(backbone, f"layer{stage + 1}"):
            cin, width = block.conv1.in_channels, block.width
            hidden = hidden_size(width, quota=opts.hidden_quota, fixed=opts.hidden)
            if opts.shared:
                key = f"{2 * cin}_{3 * width}"  # the official key of a shared policy net
                if key not in shared0:
                    shared0[key] = _linear(2 * cin, hidden)
                    shared1[key] = _linear(hidden, 3 * width)
                fc0, fc1 = shared0[key], shared1[key]
            else:
                fc0, fc1 = _linear(2 * cin, hidden), _linear(hidden, 3 * width)
            block.adafuse = AdaFuse(cin, width, fc0, fc1, decision=opts.decision, tau=opts.tau)  # type: ignore[arg-type]
    if opts.shift:
        apply_shift(backbone, opts.shift_div, online=False, every=1, feeds_downsample=True)
    return shared0, shared1


def apply_adafuse_inception(backbone: nn.Module, opts: AdaFuseOptions) -> None:
    """Fill the ``adafuse`` slot of every Inception block (``backbone.adafuse_sites()``): unshared policies."""
    from edgefuse.models.layers import AdaFuse, hidden_size

    if opts.shared or opts.shift or opts.enabled_stages:
        raise ValueError("AdaFuse on BN-Inception has unshared policies in every Inception block and no shift")
    for _, stage in backbone.adafuse_sites():  # type: ignore[operator]
        cin, cout = stage.in_channels, stage.out_channels
        hidden = hidden_size(cout, quota=opts.hidden_quota, fixed=opts.hidden)
        stage.adafuse = AdaFuse(cin, cout, _linear(2 * cin, hidden), _linear(hidden, 3 * cout),
                                decision=opts.decision, tau=opts.tau)


def build_adafuse(cfg: ModelConfig) -> VideoClassifier:
    from edgefuse.models.backbones import ResNet, create_backbone
    from edgefuse.models.video import VideoClassifier

    opts = cfg.options
    assert isinstance(opts, AdaFuseOptions)
    if cfg.backbone in INCEPTION_BACKBONES:
        backbone_ = create_backbone(cfg.backbone, cfg.width)
        apply_adafuse_inception(backbone_, opts)
        return VideoClassifier(cfg, backbone_)
    if cfg.backbone not in RESNETS:
        raise ValueError("AdaFuse is defined for ResNet and BN-Inception backbones only")
    backbone = create_backbone(cfg.backbone, cfg.width)
    assert isinstance(backbone, ResNet)
    shared0, shared1 = apply_adafuse(backbone, opts)
    model = VideoClassifier(cfg, backbone)
    if opts.shared:
        model.policy_fc0s = shared0
        model.policy_fc1s = shared1
    return model


INCEPTION_BACKBONES = ("bninception",)  # where the official code defines AdaFuse besides the ResNets

_VARIANTS = {
    "adafuse_tsn": (AdaFuseOptions(), "AdaFuse-TSN {}: per-channel skip/reuse/keep policy in every block"),
    "adafuse_tsm": (AdaFuseOptions(shift=True), "AdaFuse-TSM {}: AdaFuse with a TSM shift in front of every block"),
    "adafuse_tsm_last": (
        AdaFuseOptions(hidden_quota=None, hidden=1024, shared=False, enabled_stages=(3,), shift=True),
        "AdaFuse-TSM+Last {}: TSM everywhere, AdaFuse policy in the last stage only",
    ),
}
for _variant, (_opts, _desc) in _VARIANTS.items():
    for _bb in RESNETS:
        register_model(
            ModelConfig(name=f"{_variant}_{_bb}", arch="adafuse", backbone=_bb, options=_opts),
            build_adafuse,
            _desc.format(_bb),
        )
if backbone_available("bninception"):
    register_model(
        ModelConfig(name="adafuse_tsn_bninception", arch="adafuse", backbone="bninception",
                    options=AdaFuseOptions(shared=False), **input_defaults("bninception")),
        build_adafuse,
        "AdaFuse-TSN bninception: per-channel skip/reuse/keep policy on every Inception block's output",
    )


_RENAMES = (
    (".policy_net.gate_fc0.", ".adafuse.fc0."),
    (".policy_net.gate_bn.", ".adafuse.bn."),
    (".policy_net.gate_fc1.", ".adafuse.fc1."),
    (".downsample0.", ".downsample.0."),
    (".downsample1.", ".downsample.1."),
)


_INCEPTION_POLICY = re.compile(r"^backbone\.policy_net_(\w+?)\.gate_(fc0|bn|fc1)\.")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """AdaFuse-repository state dict -> edgefuse names (pure)."""
    out = {}
    for key, value in state_dict.items():
        k = common_prefixes(key)
        if k.startswith("backbone.gate_fc0s."):
            k = "policy_fc0s." + k[len("backbone.gate_fc0s.") :]
        elif k.startswith("backbone.gate_fc1s."):
            k = "policy_fc1s." + k[len("backbone.gate_fc1s.") :]
        for old, new in _RENAMES:
            k = k.replace(old, new)
        k = _INCEPTION_POLICY.sub(r"backbone.block_\1.adafuse.\2.", k)  # BN-Inception: policy_net_3a.gate_fc0.
        out[k] = value
    return out


def _is_adafuse(keys: list[str], container: Mapping[str, Any]) -> bool:
    return any("policy_net." in k or ".gate_fc0s." in k or ".downsample0." in k or _INCEPTION_POLICY_KEY.search(k)
               for k in keys)


_INCEPTION_POLICY_KEY = re.compile(r"(^|\.)policy_net_\w+\.gate_fc0\.")


register_source("adafuse", label="official AdaFuse (mengyuest/AdaFuse)", detect=_is_adafuse,
                filter_fn=checkpoint_filter_fn, archs=frozenset({"adafuse"}), order=10)
