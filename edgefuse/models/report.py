"""What ``edgefuse inspect MODEL`` reports, as plain data (``edgefuse models``: :mod:`.listing`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from edgefuse.models.config import ModelConfig
from edgefuse.models.cost import adafuse_cost, model_cost
from edgefuse.models.registry import create_model
from edgefuse.utils import load_npz_clips


@dataclass(frozen=True)
class InspectConfig:
    model: str
    checkpoint: Path | None = None
    num_classes: int | None = None
    segments: int | None = None
    size: int | None = None
    clips: Path | None = None  # .npz with a 'clips' array (N, T, 3, H, W); else a seeded random clip
    seed: int = 0


@dataclass(frozen=True)
class BlockShare:
    """One AdaFuse block over some clips: the share of each action and the GMACs per clip its decisions save."""

    block: str
    skip: float
    reuse: float
    keep: float
    saved_gmacs_clip: float


@dataclass(frozen=True)
class Decisions:
    """AdaFuse's argmax decisions on an input: fractions per block and the MACs they leave."""

    input: str  # the .npz read, or the random clip's seed
    clips: int
    blocks: list[BlockShare]
    gmacs_clip_given_decisions: float
    saving_pct: float


@dataclass(frozen=True)
class ModelInspection:
    config: ModelConfig
    checkpoint: str | None
    params: int
    gmacs_frame: float
    gmacs_clip: float
    frames: int
    decisions: Decisions | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "config": self.config.to_dict()}
        if self.decisions is None:
            del d["decisions"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInspection:
        dec = d.get("decisions")
        decisions = None if dec is None else Decisions(**{**dec, "blocks": [BlockShare(**b) for b in dec["blocks"]]})
        return cls(ModelConfig.from_dict(d["config"]), d["checkpoint"], d["params"], d["gmacs_frame"], d["gmacs_clip"], d["frames"],
                   decisions)


def inspect_model(cfg: InspectConfig) -> ModelInspection:
    """Config, params, MACs per frame and clip; for AdaFuse, decisions and realized MACs on an input."""
    model = create_model(cfg.model, num_classes=cfg.num_classes, num_segments=cfg.segments,
                         checkpoint=cfg.checkpoint, input_size=cfg.size)
    mc = model.config
    frames, size = mc.num_segments, mc.input_size
    decisions = None
    if any(True for _ in model.adafuse_modules()):
        if cfg.clips is not None:
            clips = load_npz_clips(cfg.clips, "clips for the AdaFuse decisions")
            source = str(cfg.clips)
        else:
            gen = torch.Generator().manual_seed(cfg.seed)
            clips = torch.randn((1, frames, 3, size, size), generator=gen)  # (1, T, 3, S, S)
            source = f"random normal clip (seed {cfg.seed})"
        cost = adafuse_cost(model, clips)
        decisions = Decisions(
            input=source, clips=int(clips.shape[0]),
            blocks=[BlockShare(d.block, d.fractions["skip"], d.fractions["reuse"], d.fractions["keep"],
                                   d.saved_macs / 1e9) for d in cost.decisions],
            gmacs_clip_given_decisions=cost.macs_given_decisions_per_clip / 1e9, saving_pct=100 * cost.saving)
        frames = int(clips.shape[1])
    else:
        cost = model_cost(model, frames=frames, size=size)
    return ModelInspection(mc, str(cfg.checkpoint) if cfg.checkpoint else None, cost.params,
                           cost.macs_per_frame / 1e9, cost.macs_per_clip / 1e9, frames, decisions)
