"""ResNet-18/34/50/101 with torchvision parameter names and temporal hook points.

Every residual block has three optional hook slots that temporal modules fill
(see ``edgefuse.models.layers``); empty slots cost nothing and hold no weights,
so a plain ResNet has exactly torchvision's state-dict keys:

- ``shift``: a parameter-free temporal shift of the block input in front of conv1
  (TSM). Its ``feeds_downsample`` flag says whether the projection shortcut reads
  the shifted tensor too (AdaFuse-TSM) or the original one (TSM).
- ``adafuse``: AdaFuse fusion of conv1's activated output, given the block input.
- ``gsf``: a Gate-Shift-Fuse module on the output of the block's last convolution,
  before its BatchNorm.

Blocks take ``(x, t)``: ``x`` is (N*T, C, H, W) and ``t`` the number of segments T.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class _Block(nn.Module):
    """What both residual block types share: hook slots and the shortcut."""

    expansion = 1
    conv1: nn.Conv2d
    conv2: nn.Conv2d

    def __init__(self) -> None:
        super().__init__()
        self.shift: nn.Module | None = None
        self.adafuse: nn.Module | None = None
        self.gsf: nn.Module | None = None
        self.downsample: nn.Sequential | None = None

    @property
    def width(self) -> int:
        """Output channels of conv1 (what AdaFuse decides over)."""
        return self.conv1.out_channels

    def _enter(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (input of conv1, input of the shortcut)."""
        if self.shift is None:
            return x, x
        shifted = self.shift(x, t)
        if self.downsample is not None and getattr(self.shift, "feeds_downsample", False):
            return shifted, shifted
        return shifted, x

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Sequential | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        inp, skip = self._enter(x, t)
        out = self.relu(self.bn1(self.conv1(inp)))
        if self.adafuse is not None:
            out = self.adafuse(out, inp, t)
        out = self.conv2(out)
        if self.gsf is not None:
            out = self.gsf(out, t)
        out = self.bn2(out)
        return self.relu(out + self._shortcut(skip))


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Sequential | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)  # stride on the 3x3 (ResNet v1.5, as torchvision)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        inp, skip = self._enter(x, t)
        out = self.relu(self.bn1(self.conv1(inp)))
        if self.adafuse is not None:
            out = self.adafuse(out, inp, t)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.conv3(out)
        if self.gsf is not None:
            out = self.gsf(out, t)
        out = self.bn3(out)
        return self.relu(out + self._shortcut(skip))


@dataclass(frozen=True)
class ResNetSpec:
    block: type[_Block]
    layers: tuple[int, int, int, int]


RESNET_SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """A ResNet feature extractor: (N*T, 3, H, W) -> (N*T, feature_dim).

    ``base_width`` scales every stage (64 gives the standard networks; the small
    shipped zoo uses less). There is no ``fc``: the video model owns its classifier.
    """

    def __init__(self, spec: ResNetSpec, base_width: int = 64) -> None:
        super().__init__()
        self.spec = spec
        self.inplanes = base_width
        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [base_width, base_width * 2, base_width * 4, base_width * 8]
        self.layer1 = self._make_layer(spec.block, widths[0], spec.layers[0], stride=1)
        self.layer2 = self._make_layer(spec.block, widths[1], spec.layers[1], stride=2)
        self.layer3 = self._make_layer(spec.block, widths[2], spec.layers[2], stride=2)
        self.layer4 = self._make_layer(spec.block, widths[3], spec.layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = widths[3] * spec.block.expansion
        self._init_weights()

    def _make_layer(self, block: type[_Block], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]  # type: ignore[call-arg]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]  # type: ignore[call-arg]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def blocks(self) -> list[tuple[str, _Block]]:
        """Residual blocks in order, with their state-dict prefix (e.g. 'layer1.0')."""
        out = []
        for li in range(1, 5):
            stage = getattr(self, f"layer{li}")
            out += [(f"layer{li}.{bi}", b) for bi, b in enumerate(stage)]
        return out

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N*T, 64, H/4, W/4)
        for _, block in self.blocks():
            x = block(x, t)
        x = self.avgpool(x)  # (N*T, C, 1, 1)
        return torch.flatten(x, 1)  # (N*T, C)


def resnet(name: str, base_width: int = 64) -> ResNet:
    return ResNet(RESNET_SPECS[name], base_width=base_width)

