"""The video classifier every architecture shares: backbone per frame, classifier, mean consensus."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from edgefuse.models.config import ModelConfig
from edgefuse.models.layers import AdaFuse


class VideoClassifier(nn.Module):
    """clips (N, T, 3, H, W) -> logits (N, num_classes).

    Per frame: backbone -> dropout -> fc; the clip's logits are the mean of the
    per-frame logits over T (TSN's average consensus).
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.dropout = nn.Dropout(p=config.dropout)
        self.fc = nn.Linear(backbone.feature_dim, config.num_classes)  # type: ignore[arg-type]
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def frame_logits(self, clips: torch.Tensor) -> torch.Tensor:
        t = clips.shape[1]
        x = clips.flatten(0, 1)  # (N*T, 3, H, W)
        feats = self.backbone(x, t)  # (N*T, D)
        logits = self.fc(self.dropout(feats))  # (N*T, K)
        return logits.reshape(-1, t, logits.shape[-1])  # (N, T, K)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips of shape (N, T, 3, H, W), got {tuple(clips.shape)}")
        return self.frame_logits(clips).mean(dim=1)  # (N, K)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Backbone blocks (where temporal modules live), with their names."""
        return list(self.backbone.blocks())  # type: ignore[operator]

    def adafuse_modules(self) -> Iterator[tuple[str, AdaFuse]]:
        for name, block in self.blocks():
            fuse = getattr(block, "adafuse", None)
            if isinstance(fuse, AdaFuse):  # a folded block holds a policy-free FoldedFuse instead
                yield name, fuse
