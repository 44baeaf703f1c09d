"""TSN: a 2D CNN per frame and average consensus, no temporal modelling (Wang et al., 2016).

Official checkpoints of plain TSN come from the TSM repository (``is_shift=False``)
or the GSF repository (``gsf=False``); those sources (tsm.py, gsf.py) load into ``tsn_*``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from edgefuse.models.config import ModelConfig, backbones_for, input_defaults
from edgefuse.models.registry import register_model

if TYPE_CHECKING:
    from edgefuse.models.video import VideoClassifier


def build_tsn(cfg: ModelConfig) -> VideoClassifier:
    from edgefuse.models.backbones import create_backbone
    from edgefuse.models.video import VideoClassifier

    return VideoClassifier(cfg, create_backbone(cfg.backbone, cfg.width))


for _bb in backbones_for("tsn"):
    register_model(
        ModelConfig(name=f"tsn_{_bb}", arch="tsn", backbone=_bb, **input_defaults(_bb)),
        build_tsn,
        f"TSN {_bb}: per-frame 2D CNN, mean consensus (no temporal modelling)",
    )
