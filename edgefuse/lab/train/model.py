"""The model to train (random, warm-started, policy biased) and the checkpoint it is saved as."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.lab.train.config import TrainConfig, TrainResult
from edgefuse.models import ModelConfig, VideoClassifier, create_model, resolve_config, save_checkpoint
from edgefuse.models.layers.adafuse import KEEP

log = logging.getLogger(__name__)

def model_config(cfg: TrainConfig) -> ModelConfig:
    """The config of the model ``cfg`` trains (input size, normalisation, classes)."""
    return resolve_config(cfg.model, num_classes=cfg.num_classes, num_segments=cfg.segments, input_size=cfg.size,
                          class_names=cfg.class_names, **cfg.options)


def build_model(cfg: TrainConfig) -> VideoClassifier:
    """The model to train: initialised randomly (seeded), then ``cfg.init`` and ``cfg.keep_bias``."""
    model = create_model(cfg.model, num_classes=cfg.num_classes, num_segments=cfg.segments, input_size=cfg.size,
                         class_names=cfg.class_names, **cfg.options)
    if cfg.init is not None:
        warm_start(model, cfg.init)
    if cfg.keep_bias:
        with torch.no_grad():
            for fc1 in {id(f.fc1): f.fc1 for _, f in model.adafuse_modules()}.values():  # shared layers once
                fc1.bias[KEEP::3] += cfg.keep_bias  # logits are laid out (width, 3): skip, reuse, keep
    return model


def warm_start(model: nn.Module, path: str | Path) -> list[str]:
    """Load every tensor of checkpoint ``path`` whose name and shape match ``model``'s; returns the
    names left as initialised. Every backbone tensor outside the temporal modules must match."""
    from edgefuse.models.checkpoint import read_checkpoint
    from edgefuse.models.sources import get_source

    ckpt = read_checkpoint(path)
    weights = get_source(ckpt.source).filter_fn(ckpt.state_dict, model)
    own = model.state_dict()
    loaded = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    required = [k for k in own if k.startswith("backbone.")
                and not any(t in k for t in (".adafuse.", ".gsf.", ".gsf_"))  # gsf_*: the Inception networks' GSF
                and not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in loaded]
    if missing:
        name = model.config.name  # type: ignore[union-attr]
        raise EdgefuseError(f"{path}: cannot initialise {name} from it: {len(missing)} backbone tensors missing or "
                            f"of another shape (e.g. {missing[0]}); use a checkpoint of the same backbone and width")
    model.load_state_dict({**own, **loaded}, strict=True)
    rest = sorted(set(own) - set(loaded))
    log.info("initialised from %s: %d tensors loaded, %d kept (%s)", path, len(loaded), len(rest),
             ", ".join(rest[:3]) + (" ..." if len(rest) > 3 else ""))
    return rest


def _half_copy(model: VideoClassifier) -> VideoClassifier:
    """A copy with float16 floating-point tensors (weights and BN statistics); integers stay."""
    return copy.deepcopy(model).half()


def init_lineage(init: Path | None) -> tuple[list[str], float]:
    """The commands that made ``init`` (a checkpoint written by ``edgefuse train``, itself perhaps
    warm-started) in order, and the seconds they took; nothing for other checkpoints."""
    if init is None:
        return [], 0.0
    meta = torch.load(init, map_location="cpu", weights_only=True).get("edgefuse") or {}
    if "train_config" not in meta:
        return [], 0.0
    import dataclasses

    # -o: the name the next stage reads it by (a checkpoint may have been renamed since it was written)
    cmd = dataclasses.replace(TrainConfig.from_dict(meta["train_config"]), out=Path(init)).recorded_command()
    seconds = float(meta.get("train_seconds_total", meta.get("train_seconds")) or 0.0)
    return [*meta.get("trained_from", []), cmd], seconds


def save_trained(result: TrainResult, path: str | Path, *, half: bool = False, **meta: Any) -> Path:
    """Write ``result.model`` as an edgefuse checkpoint (atomically) with what a zoo entry needs
    in its ``edgefuse`` metadata; ``half`` stores float16 weights (loading casts them back)."""
    cfg, m = result.config, result.metrics
    info = {
        "class_names": list(result.model.config.class_names or ()),
        "options": dict(cfg.options), "segments": cfg.segments, "size": cfg.size,
        "val_top1": m.top1, "val_within_pair": m.within_pair, "dense_gmacs_clip": m.dense_gmacs_clip,
        "gmacs_clip_given_decisions": m.gmacs_clip_given_decisions, "saving_pct": m.saving_pct,
        "train_seconds": result.train_seconds, "train_config": cfg.to_dict(),
        "weights_dtype": "float16" if half else "float32", **meta,
    }
    lineage, seconds = init_lineage(cfg.init)
    if lineage:  # a warm start from a model edgefuse trained: how that one was made, for the zoo's trained_with
        info["trained_from"] = lineage
        info["train_seconds_total"] = seconds + result.train_seconds
    model = _half_copy(result.model) if half else result.model
    return save_checkpoint(model, path, **info)


