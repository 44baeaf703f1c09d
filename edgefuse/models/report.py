"""What ``edgefuse inspect MODEL`` reports, as plain data (``edgefuse models``: :mod:`.listing`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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


def inspect_model(cfg: InspectConfig) -> dict[str, Any]:
    """Config, params, MACs per frame and clip; for AdaFuse, decisions and realized MACs on an input."""
    model = create_model(cfg.model, num_classes=cfg.num_classes, num_segments=cfg.segments,
                         checkpoint=cfg.checkpoint, input_size=cfg.size)
    mc = model.config
    frames, size = mc.num_segments, mc.input_size
    report: dict[str, Any] = {"config": mc.to_dict(), "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None}
    if any(True for _ in model.adafuse_modules()):
        if cfg.clips is not None:
            clips = load_npz_clips(cfg.clips, "clips for the AdaFuse decisions")
            source = str(cfg.clips)
        else:
            gen = torch.Generator().manual_seed(cfg.seed)
            clips = torch.randn((1, frames, 3, size, size), generator=gen)
            source = f"random normal clip (seed {cfg.seed})"
        cost = adafuse_cost(model, clips)
        report["decisions"] = {
            "input": source,
            "clips": int(clips.shape[0]),
            "blocks": [{"block": d.block, **d.fractions, "saved_gmacs_clip": d.saved_macs / 1e9} for d in cost.decisions],
            "gmacs_clip_given_decisions": cost.macs_given_decisions_per_clip / 1e9,
            "saving_pct": 100 * cost.saving,
        }
        frames = int(clips.shape[1])
    else:
        cost = model_cost(model, frames=frames, size=size)
    report.update({
        "params": cost.params,
        "gmacs_frame": cost.macs_per_frame / 1e9,
        "gmacs_clip": cost.macs_per_clip / 1e9,
        "frames": frames,
    })
    return report
