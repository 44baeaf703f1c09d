"""The training loop: reproducible setup, SGD or AdamW with a cosine schedule, AdaFuse's efficiency loss, epochs."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.lab.train.config import Data, EpochStats, TrainConfig, TrainResult
from edgefuse.lab.train.data import check_data, is_raw, prepare_clips, scaled_short_side
from edgefuse.lab.train.evaluate import evaluate, fuse_masks, recording
from edgefuse.lab.train.model import build_model, model_config, save_trained
from edgefuse.models import ModelConfig, VideoClassifier
from edgefuse.models.cost import AdaFuseMacs, adafuse_macs
from edgefuse.progress import Progress

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _reproducible(seed: int, threads: int | None) -> Iterator[torch.Generator]:
    """Seeded global RNG (forked: restored afterwards), deterministic algorithms, thread count."""
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.use_deterministic_algorithms(det, warn_only=warn)
            torch.set_num_threads(old_threads)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() > 1]  # conv and linear weights
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # biases, BatchNorm
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / total))


def tau_at(cfg: TrainConfig, epoch: int) -> float:
    return cfg.tau * math.exp(cfg.tau_decay * epoch)


@dataclass
class _Loop:
    """What the epochs share."""

    cfg: TrainConfig
    model: VideoClassifier
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    macs: AdaFuseMacs | None  # AdaFuse only
    steps_per_epoch: int
    bar: Progress
    step: int = 0


def _train_step(loop: _Loop, clips: torch.Tensor, labels: torch.Tensor, fuses: Mapping[str, Any]
                ) -> tuple[float, float, int, float | None]:
    """One optimizer step; returns (loss, cross-entropy, correct, saving fraction of the sampled decisions)."""
    cfg, model = loop.cfg, loop.model
    for group in loop.optimizer.param_groups:
        group["lr"] = lr_at(cfg, loop.step, loop.steps_per_epoch * cfg.epochs)
    logits = model(clips)
    ce = F.cross_entropy(logits, labels)
    loss, saving = ce, None
    masks = fuse_masks(fuses)
    if loop.macs is not None and masks:
        frac = loop.macs.expected_macs(masks) / loop.macs.dense_per_clip  # differentiable
        saving = 1.0 - float(frac.detach())
        if cfg.efficiency_weight > 0:
            loss = ce + cfg.efficiency_weight * frac
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for f in fuses.values():
        f.last_mask = None  # frees the graph
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    loop.optimizer.step()
    loop.step += 1
    correct = int((logits.detach().argmax(1) == labels).sum())
    return float(loss.detach()), float(ce.detach()), correct, saving


def _train_epoch(loop: _Loop, data: Data, config: ModelConfig) -> dict[str, float | None]:
    cfg, (frames, labels) = loop.cfg, data
    loop.model.train()
    order = torch.randperm(len(labels), generator=loop.generator)
    totals = {"loss": 0.0, "ce": 0.0, "correct": 0.0, "saving": 0.0}
    with recording(loop.model) as fuses:
        for idx in order.split(cfg.batch_size):
            clips = prepare_clips(frames[idx], cfg.segments, cfg.size, config, loop.generator)
            loss, ce, correct, saving = _train_step(loop, clips, labels[idx], fuses)
            b = len(idx)
            totals["loss"] += loss * b
            totals["ce"] += ce * b
            totals["correct"] += correct
            totals["saving"] += (saving or 0.0) * b
            loop.bar.update()
    n = len(labels)
    return {"loss": totals["loss"] / n, "ce": totals["ce"] / n, "top1": totals["correct"] / n,
            "saving": totals["saving"] / n if loop.macs is not None and loop.macs.blocks else None}


def _epoch(loop: _Loop, epoch: int, train_data: Data, val: Data, config: ModelConfig) -> EpochStats:
    start = time.monotonic()
    tau = tau_at(loop.cfg, epoch)
    for _, f in loop.model.adafuse_modules():
        f.tau = tau
    lr = lr_at(loop.cfg, loop.step, loop.steps_per_epoch * loop.cfg.epochs)
    tr = _train_epoch(loop, train_data, config)
    ev = evaluate(loop.model, val[0], val[1], loop.cfg.eval_batch_size)
    stats = EpochStats(epoch + 1, lr, tau, tr["loss"], tr["ce"], tr["top1"], tr["saving"],  # type: ignore[arg-type]
                       ev.top1, ev.within_pair, ev.saving_pct, time.monotonic() - start)
    saving = "" if stats.val_saving_pct is None else (
        f", MACs saved: train {100 * (stats.train_saving or 0.0):.1f}% val {stats.val_saving_pct:.1f}%")
    log.info("epoch %d/%d: loss %.4f (ce %.4f), train top1 %.3f, val top1 %.3f%s, lr %.4g, tau %.3g, %.1f s",
             stats.epoch, loop.cfg.epochs, stats.loss, stats.cross_entropy, stats.train_top1, stats.val_top1,
             saving, lr, tau, stats.seconds)
    return stats


# what must match for a saved state to be continued (not where files go, nor the thread or worker count)
_RESUME_IGNORES = ("out", "resume", "threads", "workers", "eval_batch_size", "half")


def _resume_key(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_IGNORES}


def _save_state(cfg: TrainConfig, loop: _Loop, history: list[EpochStats], seconds: float) -> None:
    """The state after an epoch, written atomically to ``cfg.resume``."""
    import dataclasses

    from edgefuse.utils import atomic_path

    assert cfg.resume is not None
    state = {"edgefuse_train_state": 1, "config": _resume_key(cfg), "step": loop.step,
             "model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
             "generator": loop.generator.get_state(), "torch_rng": torch.get_rng_state(),
             "history": [dataclasses.asdict(h) for h in history], "seconds": seconds}
    with atomic_path(cfg.resume) as tmp:
        torch.save(state, tmp)


def _load_state(cfg: TrainConfig, loop: _Loop) -> tuple[list[EpochStats], float]:
    """Continue from ``cfg.resume``: (the history so far, the seconds it took)."""
    import pickle
    import zipfile

    from edgefuse.errors import EdgefuseError

    assert cfg.resume is not None
    try:
        state = torch.load(cfg.resume, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise EdgefuseError(f"{cfg.resume}: not a readable training state ({type(e).__name__}); delete it to start "
                            "afresh") from None
    if not isinstance(state, dict) or state.get("edgefuse_train_state") != 1:
        raise EdgefuseError(f"{cfg.resume}: not an edgefuse training state; give another --resume file")
    key = _resume_key(cfg)
    saved = {"optimizer": "sgd", **state["config"]}  # states from before the optimizer option were SGD's
    if saved != key:
        diff = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
        raise EdgefuseError(f"{cfg.resume}: saved by a run with other settings ({', '.join(diff)}); run with the "
                            "same settings, or give another --resume file")
    loop.model.load_state_dict(state["model"], strict=True)
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    loop.step = int(state["step"])
    history = [EpochStats(**h) for h in state["history"]]
    log.info("resuming %s from %s after epoch %d of %d", cfg.model, cfg.resume, len(history), cfg.epochs)
    return history, float(state["seconds"])


def _prepare_data(cfg: TrainConfig, train_data: Data, val_data: Data, config: ModelConfig) -> tuple[Data, Data]:
    check_data(train_data, "train", cfg)
    check_data(val_data, "val", cfg)
    frames = train_data[0]
    if is_raw(frames):
        frames = scaled_short_side(frames, cfg.scale_size)
    val = val_data[0]
    if is_raw(val):
        val = prepare_clips(scaled_short_side(val, cfg.scale_size), cfg.segments, cfg.size, config)
    return (frames, train_data[1].long()), (val, val_data[1].long())


def train(cfg: TrainConfig, train_data: Data, val_data: Data, *, progress: bool = True) -> TrainResult:
    """Train ``cfg.model`` on ``train_data``, evaluating on ``val_data`` after every epoch; write
    ``cfg.out`` when set. Data: (frames uint8 (N, F, H, W, 3) or clips float (N, T, 3, H, W), labels (N,))."""
    config = model_config(cfg)
    train_set, val_set = _prepare_data(cfg, train_data, val_data, config)
    start = time.monotonic()
    with _reproducible(cfg.seed, cfg.threads) as generator:
        model = build_model(cfg)
        is_adafuse = any(True for _ in model.adafuse_modules())
        macs = adafuse_macs(model, cfg.segments, cfg.size) if is_adafuse else None
        steps = math.ceil(len(train_set[1]) / cfg.batch_size)
        bar = Progress(steps * cfg.epochs, f"train {cfg.model}", enabled=progress)
        loop = _Loop(cfg, model, make_optimizer(model, cfg), generator, macs, steps, bar)
        log.info("training %s: %d train clips, %d val clips, %d epochs of %d steps", cfg.model, len(train_set[1]),
                 len(val_set[1]), cfg.epochs, steps)
        history: list[EpochStats] = []
        done_seconds = 0.0
        if cfg.resume is not None and cfg.resume.is_file():
            history, done_seconds = _load_state(cfg, loop)
            bar.update(loop.step)
        try:
            for e in range(len(history), cfg.epochs):
                history.append(_epoch(loop, e, train_set, val_set, config))
                if cfg.resume is not None:
                    _save_state(cfg, loop, history, done_seconds + time.monotonic() - start)
        finally:
            bar.close()
        model.eval()
        metrics = evaluate(model, val_set[0], val_set[1], cfg.eval_batch_size)
    result = TrainResult(model, cfg, history, metrics, done_seconds + time.monotonic() - start)
    if cfg.out is not None:
        result.checkpoint = save_trained(result, cfg.out, half=cfg.half)
        from edgefuse.utils import sha256_file

        result.sha256 = sha256_file(result.checkpoint)
    return result


