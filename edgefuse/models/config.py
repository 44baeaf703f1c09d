"""Model configuration: everything a later stage needs to feed the model correctly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")  # backbones/resnet.py's RESNET_SPECS, by name
BACKBONES = (*RESNETS, "mobilenetv2")  # what every architecture registers on (torch-free: for the registry)
# the Inception networks of the official releases, each in its own file under backbones/
INCEPTIONS = ("bninception", "inceptionv3")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BN-Inception and GSF's InceptionV3 read BGR pixels in 0-255 minus (104, 117, 128), std 1 (GSF, TSM and AdaFuse
# data pipelines alike)
INCEPTION_MEAN = (104.0, 117.0, 128.0)


def backbone_available(name: str) -> bool:
    """Whether the backbone's module is installed (torch-free, by its file: the registry asks before registering)."""
    from pathlib import Path

    return name not in INCEPTIONS or (Path(__file__).parent / "backbones" / f"{name}.py").is_file()


def backbones_for(arch: str) -> tuple[str, ...]:
    """The backbones ``arch`` registers on: every 2D CNN, and the Inception networks its official code builds it
    on (TSN and GSF on both, TSM and AdaFuse-TSN on BN-Inception)."""
    extra = {"tsn": INCEPTIONS, "gsf": INCEPTIONS, "tsm": ("bninception",), "adafuse": ("bninception",)}.get(arch, ())
    return (*BACKBONES, *(b for b in extra if backbone_available(b)))


def input_defaults(backbone: str) -> dict[str, Any]:
    """The input a backbone was trained on, where it differs from the ImageNet RGB default: the ModelConfig fields
    (size, scale, mean, std, channel order, pixel range)."""
    inception = {"mean": INCEPTION_MEAN, "std": (1.0, 1.0, 1.0), "channel_order": "BGR", "pixel_range": 255.0}
    if backbone == "bninception":
        return {**inception, "input_size": 224, "scale_size": 256}
    if backbone == "inceptionv3":  # GSF: input_size 229, scale_size 229 * 256 // 224
        return {**inception, "input_size": 229, "scale_size": 261}
    return {}


@dataclass(frozen=True)
class TSMOptions:
    """Temporal shift: ``shift_div`` (1/8 of channels each way by default), ``online``
    (past-only, for streaming), ``every`` (shift every n-th block; the official code
    uses 2 for ResNet-101), ``non_local`` (non-local blocks after layer2.0/2 and
    layer3.0/2/4 of ResNet-50, the official Kinetics release)."""

    shift_div: int = 8
    online: bool = False
    every: int = 1
    non_local: bool = False


@dataclass(frozen=True)
class GSFOptions:
    """Gate-Shift-Fuse on ``ratio`` percent of the channels (official default 100)."""

    ratio: float = 100.0


@dataclass(frozen=True)
class AdaFuseOptions:
    """AdaFuse policy settings, named after the official command-line flags.

    ``hidden_quota``: hidden size = quota // width (``--hidden_quota``), else ``hidden``
    (``--gate_hidden_dim``). ``shared``: one policy net per (in, width) pair
    (``--shared_policy_net``). ``enabled_stages``: stages (0-3) with a policy
    (``--enabled_stages``; empty = all). ``shift``: TSM shift in front of every block
    (``--shift``). ``decision``: ``argmax`` or ``gumbel``.
    """

    hidden_quota: int | None = 196608
    hidden: int | None = None
    shared: bool = True
    enabled_stages: tuple[int, ...] = ()
    shift: bool = False
    shift_div: int = 8
    decision: str = "argmax"
    tau: float = 0.67


Options = TSMOptions | GSFOptions | AdaFuseOptions | None


@dataclass(frozen=True)
class ModelConfig:
    """What a model is and how its input must be prepared (timm's pretrained_cfg)."""

    name: str
    arch: str  # tsn | tsm | gsf | adafuse
    backbone: str  # resnet18 | resnet34 | resnet50 | resnet101 | mobilenetv2
    num_classes: int = 174
    num_segments: int = 8
    input_size: int = 224
    scale_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    pixel_range: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: [0, 255] (BN-Inception style)
    width: float = 1.0  # channel width multiplier of the backbone
    dropout: float = 0.5
    class_names: tuple[str, ...] | None = None
    options: Options = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options_type"] = type(self.options).__name__ if self.options is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """From :meth:`to_dict`'s form (JSON lists back to tuples, options by their recorded type)."""
        kinds = {k.__name__: k for k in (TSMOptions, GSFOptions, AdaFuseOptions)}
        fields = {k: v for k, v in d.items() if k != "options_type"}
        opts = fields.get("options")
        if opts is not None:
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
            fields["options"] = kinds[d["options_type"]](**values)
        for key in ("mean", "std", "class_names"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
