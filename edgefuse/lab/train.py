"""Training on CPU: small TSN, TSM, GSF and AdaFuse models on a benchmark, reproducibly.

```python
from edgefuse.lab.train import TrainConfig, train, train_from_dir

cfg = TrainConfig("tsm_resnet18", options={"width": 0.25}, num_classes=10, segments=8, size=112, out=Path("m.pth"))
result = train(cfg, (train_frames, train_labels), (val_frames, val_labels))   # tensors in memory
result = train_from_dir(cfg, "synth/")                                          # an `edgefuse synth` folder
result.metrics["top1"], result.history[-1]
```

Data are tensors: raw frames uint8 ``(N, F, H0, W0, 3)`` RGB, or preprocessed float clips
``(N, T, 3, H, W)`` (used as they are, no augmentation), with labels ``(N,)``. Raw frames are

1. resized once, short side to ``scale_size = size * 256 // 224`` (the research code's rule;
   skipped when they already have it, as frames decoded by :mod:`edgefuse.clips` at that size);
2. sampled: ``segments`` frames per clip, in training a random frame inside each of the
   ``segments`` equal segments (TSN training, ``TSNDataSet._sample_indices``), in evaluation the
   segment centres (``int(tick / 2 + tick * t)``, the rule :mod:`edgefuse.clips` evaluates with);
3. cropped: ``size`` squares, at a random position per clip in training (the same for all its
   frames), at the centre in evaluation (torchvision's offset rule). No horizontal flip: on the
   synthetic benchmark a mirror image turns "moving left" into "moving right" and "rotating
   clockwise" into "anticlockwise", so it would teach wrong labels;
4. normalised as the model's config says, with the float32 operations of
   :func:`edgefuse.clips.preprocess.normalise` (so evaluation here sees the bits deployment sees).

Optimisation: SGD with momentum, weight decay on convolution and linear weights only (not on
biases and BatchNorm, as TSN's optimisation policies), cosine learning rate per iteration,
gradient-norm clipping (TSM's ``--clip-gradient 20``), cross-entropy. AdaFuse models train
their policy with straight-through hard Gumbel-softmax (temperature ``tau``, official
``--init_tau 0.67``; ``tau_decay`` anneals it as ``tau * exp(tau_decay * epoch)``, the official
``--exp_decay_factor`` form) and add ``efficiency_weight * expected MACs / dense MACs`` per clip,
counted as :mod:`edgefuse.models.cost` counts (see :class:`TrainConfig` for how this relates to
the official ``--gate_gflops_loss_weight``). ``init`` warm-starts from a checkpoint (an AdaFuse-TSM
from a trained TSM) and ``keep_bias`` starts the policy close to "keep everything".

Deterministic: the same config and data give the same weights (same machine, same thread
count). Model initialisation, dropout and Gumbel noise come from ``torch.manual_seed(seed)``
inside a forked RNG (the caller's global RNG is left as it was), batch order, frame sampling
and crops from a ``torch.Generator`` seeded with ``seed``; ``torch.use_deterministic_algorithms``
is on (warn-only) while training. The model returned is the one after the last epoch.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.clips.preprocess import Preprocess
from edgefuse.clips.preprocess import normalise as clip_normalise
from edgefuse.clips.sampling import tsn_indices
from edgefuse.errors import EdgefuseError
from edgefuse.models import ModelConfig, VideoClassifier, create_model, resolve_config, save_checkpoint
from edgefuse.models.cost import AdaFuseMacs, adafuse_macs, decision_savings
from edgefuse.models.layers import ACTIONS
from edgefuse.models.layers.adafuse import KEEP
from edgefuse.progress import Progress

log = logging.getLogger(__name__)

__all__ = [
    "EpochStats", "TrainConfig", "TrainResult", "evaluate", "load_benchmark", "prepare_clips", "save_trained",
    "train", "train_from_dir", "warm_start",
]

SCHEDULES = ("cosine", "constant")
Data = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    ``model``: a registry name (``tsm_resnet18``); ``options``: its keyword options
    (``{"width": 0.25}``, ``{"ratio": 25}``, ``{"dropout": 0.5}``, ...). ``size``: input
    height and width; frames are resized to ``size * 256 // 224`` first (see the module
    docstring). ``schedule``: ``cosine`` (per iteration, to 0) or ``constant``.

    ``efficiency_weight`` (AdaFuse only): the loss adds ``efficiency_weight * expected MACs per
    clip / dense MACs per clip``. The official trainer (``main_gate.py compute_losses``,
    ``--gflops_loss_norm 1``, bias 0) adds ``--gate_gflops_loss_weight`` times the *absolute*
    expected GFLOPs per frame, so its pressure scales with the model's size; the normalised form
    here does not. The official 0.125 on ResNet-50 at 224 (4.09 GMACs per frame) is 0.51 here,
    hence the default 0.5. ``tau`` / ``tau_decay``: Gumbel-softmax temperature
    ``tau * exp(tau_decay * epoch)`` (official ``--init_tau 0.67``, constant).

    ``init``: a checkpoint to start from instead of random weights (e.g. a trained TSM for
    AdaFuse-TSM, which is the same network plus the policy): every tensor whose name and shape
    match is loaded, the rest (the policy) keeps its initialisation. ``keep_bias`` (AdaFuse):
    added to the policy's "keep" logits at the start (official: 0, a uniform policy), so
    training starts close to the dense network (2.0: keep with probability 0.79); a uniform
    policy zeroes or replaces two thirds of the channels at random, which a network trained
    from scratch copes with badly.

    ``threads``: torch threads while training (None: leave as is); ``workers``: decoding
    processes of :func:`train_from_dir`. ``out``: checkpoint to write (None: none), fp16 weights
    with ``half``. ``class_names`` go into the model config and the checkpoint.
    """

    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    segments: int = 8
    size: int = 112
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    grad_clip: float | None = 20.0
    seed: int = 0
    efficiency_weight: float = 0.5
    tau: float = 0.67
    tau_decay: float = 0.0
    keep_bias: float = 0.0
    init: Path | None = None
    threads: int | None = None
    workers: int = 2
    eval_batch_size: int = 32
    out: Path | None = None
    half: bool = False
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        positive = {"num_classes": self.num_classes, "segments": self.segments, "size": self.size,
                    "epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if value < 1:
                raise EdgefuseError(f"train: {name} must be at least 1, got {value}")
        if self.lr <= 0 or self.tau <= 0:
            raise EdgefuseError(f"train: lr and tau must be positive, got lr {self.lr}, tau {self.tau}")
        if self.weight_decay < 0 or self.efficiency_weight < 0 or not 0 <= self.momentum < 1:
            raise EdgefuseError("train: weight_decay and efficiency_weight must be >= 0 and momentum in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise EdgefuseError(f"train: schedule {self.schedule!r} is unknown: use {' or '.join(SCHEDULES)}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise EdgefuseError(f"train: {len(self.class_names)} class names for {self.num_classes} classes; "
                                "give one name per class")
        object.__setattr__(self, "options", dict(self.options))

    @property
    def scale_size(self) -> int:
        return self.size * 256 // 224

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (goes into checkpoints, which load with ``weights_only=True``)."""
        d = dataclasses.asdict(self)
        d["out"] = str(self.out) if self.out is not None else None
        d["init"] = str(self.init) if self.init is not None else None
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (a checkpoint's ``train_config``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for key in ("init", "out"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if values.get("class_names") is not None:
            values["class_names"] = tuple(values["class_names"])
        return cls(**values)

    def command(self, data_dir: str | Path) -> str:
        """The ``edgefuse train`` command line that runs this config (for the zoo's ``trained_with``)."""
        parts = ["edgefuse train", self.model, f"--data {data_dir}"]
        if "width" in self.options:
            parts.append(f"--width {self.options['width']}")
        parts += [f"--segments {self.segments}", f"--size {self.size}", f"--epochs {self.epochs}",
                  f"--batch-size {self.batch_size}", f"--lr {self.lr}", f"--weight-decay {self.weight_decay}",
                  f"--seed {self.seed}"]
        if self.efficiency_weight != TrainConfig.efficiency_weight:
            parts.append(f"--efficiency-weight {self.efficiency_weight}")
        if self.keep_bias:
            parts.append(f"--keep-bias {self.keep_bias}")
        if self.init is not None:
            parts.append(f"--init {self.init}")
        if self.threads is not None:
            parts.append(f"--threads {self.threads}")
        if self.half:
            parts.append("--half")
        if self.out is not None:
            parts.append(f"-o {self.out}")
        return " ".join(parts)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    lr: float  # at the epoch's start
    tau: float
    loss: float  # mean over the epoch's clips: cross-entropy + efficiency term
    cross_entropy: float
    train_top1: float
    train_saving: float | None  # AdaFuse: mean fraction of the dense MACs the sampled decisions save
    val_top1: float
    val_within_pair: float | None
    val_saving_pct: float | None  # AdaFuse, argmax decisions in evaluation
    seconds: float


@dataclass
class TrainResult:
    model: VideoClassifier  # after the last epoch, in eval mode
    config: TrainConfig
    history: list[EpochStats]
    metrics: dict[str, Any]  # evaluate() on the validation clips after the last epoch
    train_seconds: float
    checkpoint: Path | None = None
    sha256: str | None = None


# ---------------------------------------------------------------------------------------------
# Data: sampling, cropping, normalisation

def is_raw(frames: torch.Tensor) -> bool:
    """uint8 frames (N, F, H, W, 3) as decoded, rather than preprocessed clips (N, T, 3, H, W)."""
    return frames.dtype == torch.uint8 and frames.dim() == 5 and frames.shape[-1] == 3


def _check_data(data: Data, what: str, cfg: TrainConfig) -> None:
    frames, labels = data
    if frames.dim() != 5 or labels.dim() != 1 or len(frames) != len(labels) or len(frames) == 0:
        raise EdgefuseError(f"train: {what} data must be frames (N, F, H, W, 3) uint8 or clips (N, T, 3, H, W) "
                            f"float with labels (N,), got {tuple(frames.shape)} and {tuple(labels.shape)}")
    if not is_raw(frames) and (frames.shape[1:] != (cfg.segments, 3, cfg.size, cfg.size) or
                               not frames.is_floating_point()):
        raise EdgefuseError(f"train: {what} clips {tuple(frames.shape)} {frames.dtype} are not float (N, "
                            f"{cfg.segments}, 3, {cfg.size}, {cfg.size}); pass uint8 frames (N, F, H, W, 3) to have "
                            "them sampled and cropped")
    if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_classes:
        raise EdgefuseError(f"train: {what} labels range {int(labels.min())}..{int(labels.max())}, outside 0.."
                            f"{cfg.num_classes - 1}; set num_classes to the number of classes")


def scaled_short_side(frames: torch.Tensor, scale: int, chunk: int = 64) -> torch.Tensor:
    """uint8 frames (N, F, H, W, 3) with the short side resized to ``scale`` (bilinear, antialiased)."""
    n, f, h, w, _ = frames.shape
    if min(h, w) == scale:
        return frames
    size = (scale, int(scale * w / h)) if h <= w else (int(scale * h / w), scale)  # long side truncated, as GroupScale
    out = []
    for part in frames.split(chunk):
        x = part.flatten(0, 1).permute(0, 3, 1, 2).float()  # (n*F, 3, H, W)
        y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(len(part), f, *size, 3))
    return torch.cat(out)  # (N, F, H', W', 3)


def segment_indices(num_frames: int, segments: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frame indices (segments,): a random frame in each segment with ``generator`` (TSN training),
    else the segment centres ``int(tick / 2 + tick * t)`` (evaluation; also training when there
    are fewer frames than segments)."""
    average = num_frames // segments
    if generator is not None and average > 0:
        return torch.arange(segments) * average + torch.randint(average, (segments,), generator=generator)
    return torch.from_numpy(tsn_indices(num_frames, segments))  # the evaluation formula of edgefuse.clips


def crop_offsets(height: int, width: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    """(top, left) of a ``size`` square: random with ``generator``, else torchvision's centre."""
    if size > height or size > width:
        raise EdgefuseError(f"train: a {size}x{size} crop does not fit {height}x{width} frames; use a smaller size")
    if generator is None:
        return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    top = int(torch.randint(height - size + 1, (1,), generator=generator))
    left = int(torch.randint(width - size + 1, (1,), generator=generator))
    return top, left


def normalise(frames: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W), exactly as edgefuse.clips preprocesses."""
    return clip_normalise(frames.numpy(), Preprocess.from_model_config(config))


def sample_clip(frames: torch.Tensor, segments: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """One video's uint8 frames (F, H, W, 3) -> its clip's uint8 frames (T, size, size, 3)."""
    f, h, w, _ = frames.shape
    idx = segment_indices(f, segments, generator)
    top, left = crop_offsets(h, w, size, generator)
    return frames[idx, top:top + size, left:left + size]  # (T, size, size, 3)


def prepare_clips(frames: torch.Tensor, segments: int, size: int, config: ModelConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Model input (N, T, 3, size, size): uint8 frames (N, F, S, S', 3) already at the scale size
    are sampled, cropped (random with ``generator``, else centre) and normalised; float clips pass."""
    if not is_raw(frames):
        return frames
    clips = torch.stack([sample_clip(v, segments, size, generator) for v in frames])  # (N, T, size, size, 3)
    return normalise(clips, config)  # (N, T, 3, size, size)


# ---------------------------------------------------------------------------------------------
# Evaluation

def _pair_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Accuracy of telling each clip's class from its pair partner (classes 2k, 2k+1)."""
    k = logits.shape[1]
    first = labels - labels % 2
    paired = first + 1 < k
    if not bool(paired.any()):
        return None
    rows = torch.arange(len(labels))[paired]
    a, b = logits[rows, first[paired]], logits[rows, first[paired] + 1]
    chosen = torch.where(a >= b, first[paired], first[paired] + 1)  # ties to the first, as argmax
    return float((chosen == labels[paired]).float().mean())


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices  # (N, k)
    return float((top == labels[:, None]).any(dim=1).float().mean())


def _per_class(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float((pred[mask] == c).float().mean()) if bool(mask.any()) else None)
    return out


@contextlib.contextmanager
def _recording(model: VideoClassifier) -> Iterator[dict[str, Any]]:
    """Make every AdaFuse block record its mask; yields name -> module, restores afterwards."""
    fuses = dict(model.adafuse_modules())
    for f in fuses.values():
        f.record = True
    try:
        yield fuses
    finally:
        for f in fuses.values():
            f.record = False
            f.last_mask = None


def _masks(fuses: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {name: f.last_mask for name, f in fuses.items() if f.last_mask is not None}


def _decision_report(sums: dict[str, dict[str, float]], n: int, macs: AdaFuseMacs) -> dict[str, Any]:
    blocks = [{"block": name, **{a: s[a] / n for a in ACTIONS}, "saved_gmacs_clip": s["saved"] / n / 1e9}
              for name, s in sums.items()]
    saved = sum(s["saved"] for s in sums.values()) / n
    return {"gmacs_clip_given_decisions": (macs.dense_per_clip - saved) / 1e9,
            "saving_pct": 100.0 * saved / macs.dense_per_clip,
            "fractions": {a: sum(b[a] for b in blocks) / len(blocks) for a in ACTIONS} if blocks else {},
            "blocks": blocks}


def evaluate(model: VideoClassifier, clips: torch.Tensor, labels: torch.Tensor, batch_size: int = 32
             ) -> dict[str, Any]:
    """Accuracy of ``model`` (in eval mode) on preprocessed ``clips`` (N, T, 3, H, W).

    Returns top1, top5 (top-k with k = min(5, classes)), per_class accuracy (None for a class
    without clips), within_pair (classes 2k and 2k+1 told apart: the clip's own class against
    its partner only; None without pairs), n, dense_gmacs_clip and, for AdaFuse (argmax or
    the model's decision rule), the MACs given the decisions counted as ``edgefuse inspect``
    (:func:`edgefuse.models.cost.adafuse_cost`): gmacs_clip_given_decisions, saving_pct,
    fractions (skip/reuse/keep, mean over blocks) and blocks.
    """
    was_training = model.training
    model.eval()
    n, t, _, h, w = clips.shape
    macs = adafuse_macs(model, t, h, w)
    outputs, sums = [], {name: dict.fromkeys((*ACTIONS, "saved"), 0.0) for name in macs.blocks}
    try:
        with torch.no_grad(), _recording(model) as fuses:
            for batch in clips.split(batch_size):
                outputs.append(model(batch))
                for name, mask in _masks(fuses).items():
                    s, b = sums[name], len(batch)
                    for i, a in enumerate(ACTIONS):
                        s[a] += float(mask[..., i].mean()) * b
                    s["saved"] += decision_savings(mask, *macs.blocks[name]) * b
    finally:
        model.train(was_training)
    logits = torch.cat(outputs)  # (N, K)
    pred = logits.argmax(dim=1)
    report: dict[str, Any] = {
        "n": n, "top1": float((pred == labels).float().mean()), "top5": _topk(logits, labels, 5),
        "per_class": _per_class(pred, labels, logits.shape[1]), "within_pair": _pair_accuracy(logits, labels),
        "dense_gmacs_clip": macs.dense_per_clip / 1e9,
    }
    if macs.blocks:
        report.update(_decision_report(sums, n, macs))
    return report


# ---------------------------------------------------------------------------------------------
# Training

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
    from edgefuse.models.checkpoint import SOURCES, read_checkpoint

    ckpt = read_checkpoint(path)
    weights = SOURCES[ckpt.source][0](ckpt.state_dict, model)
    own = model.state_dict()
    loaded = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    required = [k for k in own if k.startswith("backbone.") and not any(t in k for t in (".adafuse.", ".gsf."))
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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.dim() > 1]  # conv and linear weights
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # biases, BatchNorm
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
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
    optimizer: torch.optim.SGD
    generator: torch.Generator
    macs: AdaFuseMacs | None  # AdaFuse only
    steps_per_epoch: int
    bar: Progress
    step: int = 0


def _train_step(loop: _Loop, clips: torch.Tensor, labels: torch.Tensor, fuses: Mapping[str, Any]
                ) -> tuple[float, float, int, float | None]:
    """One SGD step; returns (loss, cross-entropy, correct, saving fraction of the sampled decisions)."""
    cfg, model = loop.cfg, loop.model
    for group in loop.optimizer.param_groups:
        group["lr"] = lr_at(cfg, loop.step, loop.steps_per_epoch * cfg.epochs)
    logits = model(clips)
    ce = F.cross_entropy(logits, labels)
    loss, saving = ce, None
    masks = _masks(fuses)
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
    with _recording(loop.model) as fuses:
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
                       ev["top1"], ev["within_pair"], ev.get("saving_pct"), time.monotonic() - start)
    saving = "" if stats.val_saving_pct is None else (
        f", MACs saved: train {100 * (stats.train_saving or 0.0):.1f}% val {stats.val_saving_pct:.1f}%")
    log.info("epoch %d/%d: loss %.4f (ce %.4f), train top1 %.3f, val top1 %.3f%s, lr %.4g, tau %.3g, %.1f s",
             stats.epoch, loop.cfg.epochs, stats.loss, stats.cross_entropy, stats.train_top1, stats.val_top1,
             saving, lr, tau, stats.seconds)
    return stats


def _prepare_data(cfg: TrainConfig, train_data: Data, val_data: Data, config: ModelConfig) -> tuple[Data, Data]:
    _check_data(train_data, "train", cfg)
    _check_data(val_data, "val", cfg)
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
        try:
            history = [_epoch(loop, e, train_set, val_set, config) for e in range(cfg.epochs)]
        finally:
            bar.close()
        model.eval()
        metrics = evaluate(model, val_set[0], val_set[1], cfg.eval_batch_size)
    result = TrainResult(model, cfg, history, metrics, time.monotonic() - start)
    if cfg.out is not None:
        result.checkpoint = save_trained(result, cfg.out, half=cfg.half)
        from edgefuse.utils import sha256_file

        result.sha256 = sha256_file(result.checkpoint)
    return result


# ---------------------------------------------------------------------------------------------
# Saving

def _half_copy(model: nn.Module) -> nn.Module:
    """A copy with float16 floating-point tensors (weights and BN statistics); integers stay."""
    return copy.deepcopy(model).half()


def save_trained(result: TrainResult, path: str | Path, *, half: bool = False, **meta: Any) -> Path:
    """Write ``result.model`` as an edgefuse checkpoint (atomically) with what a zoo entry needs
    in its ``edgefuse`` metadata; ``half`` stores float16 weights (loading casts them back)."""
    cfg, m = result.config, result.metrics
    info = {
        "class_names": list(result.model.config.class_names or ()),
        "options": dict(cfg.options), "segments": cfg.segments, "size": cfg.size,
        "val_top1": m["top1"], "val_within_pair": m["within_pair"], "dense_gmacs_clip": m["dense_gmacs_clip"],
        "gmacs_clip_given_decisions": m.get("gmacs_clip_given_decisions"), "saving_pct": m.get("saving_pct"),
        "train_seconds": result.train_seconds, "train_config": cfg.to_dict(),
        "weights_dtype": "float16" if half else "float32", **meta,
    }
    model = _half_copy(result.model) if half else result.model
    return save_checkpoint(model, path, **info)


# ---------------------------------------------------------------------------------------------
# Benchmark folders (edgefuse synth / TSN layout)

def _list_frames(path: Path) -> int:
    """The fewest frames any entry of a TSN list file (``path num_frames label``) has."""
    counts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if fields:
            try:
                counts.append(int(fields[-2]))
            except (ValueError, IndexError):
                raise EdgefuseError(f"{path}:{number}: expected 'relative_path num_frames label', got "
                                    f"{line.strip()!r}") from None
    if not counts:
        raise EdgefuseError(f"{path}: the list file has no entries")
    return min(counts)


def _benchmark_files(data_dir: Path) -> tuple[Path, Path, Path]:
    files = tuple(data_dir / n for n in ("train.txt", "val.txt", "classes.txt"))
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise EdgefuseError(f"{data_dir}: not a benchmark folder (no {', '.join(missing)}); make one with "
                            f"'edgefuse synth -o {data_dir}' or give a folder with TSN list files train.txt, "
                            "val.txt and classes.txt")
    return files  # type: ignore[return-value]


def load_benchmark(cfg: TrainConfig, data_dir: str | Path, *, progress: bool = True
                   ) -> tuple[Data, Data, tuple[str, ...]]:
    """A benchmark folder as training data: (train frames uint8 (N, F, S, S, 3) at the scale size
    with labels, val clips (N, T, 3, size, size) preprocessed exactly as :mod:`edgefuse.clips`
    evaluates, with labels, class names). ``F`` is the fewest frames of any train entry; frames
    are decoded by :func:`edgefuse.clips.open` (short side resized to the scale size, centre
    square), every one of them (F segments of one frame each)."""
    from edgefuse import clips  # decoders (PyAV, Pillow) only when a folder is read

    root = Path(data_dir)
    train_list, val_list, classes_file = _benchmark_files(root)
    frames = _list_frames(train_list)
    raw = clips.Preprocess(input_size=cfg.scale_size, scale_size=cfg.scale_size, mean=(0.0, 0.0, 0.0),
                           std=(1.0, 1.0, 1.0), pixel_range=255.0)  # pixel values as they are
    train_set = clips.open(train_list, raw, clips.Sampling(num_segments=frames), classes=classes_file,
                           workers=cfg.workers, progress=progress)
    if any(label is None for label in train_set.labels):
        raise EdgefuseError(f"{train_list}: some clips have no label; training needs 'path num_frames label' lines")
    pixels = torch.stack([c.data.round().to(torch.uint8).permute(0, 2, 3, 1) for c in train_set])  # (N, F, S, S, 3)
    train_labels = torch.tensor(train_set.labels, dtype=torch.int64)
    del train_set
    pre = clips.Preprocess.from_model_config(model_config(cfg))
    val_set = clips.open(val_list, pre, clips.Sampling(num_segments=cfg.segments), classes=classes_file,
                         workers=cfg.workers, progress=progress)
    val_clips, val_labels, _ = val_set.stack()
    names = tuple(val_set.class_names or ())
    if val_labels is None:
        raise EdgefuseError(f"{val_list}: some clips have no label; training needs 'path num_frames label' lines")
    return (pixels, train_labels), (val_clips, val_labels), names


def train_from_dir(cfg: TrainConfig, data_dir: str | Path, *, progress: bool = True) -> TrainResult:
    """:func:`train` on a benchmark folder (``edgefuse synth`` output: ``train.txt``, ``val.txt``,
    ``classes.txt``, frame folders ``frames/<id>/00001.jpg``). The classes (their number and
    names) are those of ``classes.txt``; ``cfg.class_names``, when set, must have as many."""
    train_data, val_data, names = load_benchmark(cfg, data_dir, progress=progress)
    if cfg.class_names is not None and names and len(cfg.class_names) != len(names):
        raise EdgefuseError(f"{data_dir}: classes.txt lists {len(names)} classes, the config names "
                            f"{len(cfg.class_names)}; drop the class names or make them match")
    if names and cfg.class_names is None:
        cfg = dataclasses.replace(cfg, num_classes=len(names), class_names=names)
    return train(cfg, train_data, val_data, progress=progress)
