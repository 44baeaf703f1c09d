"""MobileNetV2 with torchvision parameter names and temporal hook points.

Inverted residual blocks have two optional hook slots:

- ``shift``: a temporal shift of the block input, in front of the expansion
  convolution (where TSM puts it: residual blocks with an expansion layer).
- ``gsf``: Gate-Shift-Fuse on the expanded channels, applied to the output of the
  depthwise 3x3 (after its BN and ReLU6) and before the linear projection. The
  official GSF code has no MobileNetV2; this placement is edgefuse's choice.
"""
from __future__ import annotations

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """conv -> BN -> ReLU6, named 0/1/2 like torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        self.expands = expand_ratio != 1
        self.hidden = hidden
        layers: list[nn.Module] = []
        if self.expands:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.shift: nn.Module | None = None
        self.gsf: nn.Module | None = None

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        out = x if self.shift is None else self.shift(x, t)
        layers = list(self.conv)
        if self.expands:
            out = layers.pop(0)(out)  # (N*T, hidden, H, W)
        out = layers[0](out)  # depthwise, (N*T, hidden, H/s, W/s)
        if self.gsf is not None:
            out = self.gsf(out, t)
        out = layers[2](layers[1](out))  # projection, (N*T, cout, H/s, W/s)
        return x + out if self.use_res_connect else out


# t (expansion), c (channels), n (repeats), s (stride)
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """A MobileNetV2 feature extractor: (N*T, 3, H, W) -> (N*T, feature_dim)."""

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.feature_dim = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU6(cin, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*features)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def blocks(self) -> list[tuple[str, InvertedResidual]]:
        return [(f"features.{i}", m) for i, m in enumerate(self.features) if isinstance(m, InvertedResidual)]

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        for m in self.features:
            x = m(x, t) if isinstance(m, InvertedResidual) else m(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1)  # (N*T, C, 1, 1)
        return torch.flatten(x, 1)  # (N*T, C)
