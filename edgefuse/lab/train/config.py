"""What to train and how (:class:`TrainConfig`), and what training returns."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgefuse.errors import EdgefuseError
from edgefuse.models import VideoClassifier

if TYPE_CHECKING:
    from edgefuse.lab.train.evaluate import Evaluation

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")
Data = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    ``model``: a registry name (``tsm_resnet18``); ``options``: its keyword options
    (``{"width": 0.25}``, ``{"ratio": 25}``, ``{"dropout": 0.5}``, ...). ``size``: input
    height and width; frames are resized to ``size * 256 // 224`` first (see the module
    docstring). ``schedule``: ``cosine`` (per iteration, to 0) or ``constant``.
    ``optimizer``: ``sgd`` (with ``momentum``, TSN's and AdaFuse's) or ``adamw`` (decoupled weight
    decay: give it a larger ``weight_decay``, e.g. 0.05, and a smaller ``lr``, e.g. 0.001). On the
    synthetic benchmark, SGD at lr 0.01 keeps a network trained from scratch at chance for several
    epochs before it finds the motion (width 0.25 at 64 px: 9 epochs, AdamW: 4).

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
    with ``half``. ``class_names`` go into the model config and the checkpoint. ``resume``: a file
    the training state (weights, optimizer, random generators, epochs done, history) is written to
    atomically after every epoch; when it exists, training continues from it (the same settings
    required), so a run longer than one sitting goes on where it stopped.
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
    optimizer: str = "sgd"
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
    resume: Path | None = None  # the training state after each epoch; an existing one is continued from

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
        if self.optimizer not in OPTIMIZERS:
            raise EdgefuseError(f"train: optimizer {self.optimizer!r} is unknown: use {' or '.join(OPTIMIZERS)}")
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
        d["resume"] = str(self.resume) if self.resume is not None else None
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (a checkpoint's ``train_config``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for key in ("init", "out", "resume"):
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
        if self.options.get("hidden") and not self.options.get("hidden_quota"):
            parts.append(f"--policy-hidden {self.options['hidden']}")
        parts += [f"--segments {self.segments}", f"--size {self.size}", f"--epochs {self.epochs}",
                  f"--batch-size {self.batch_size}", f"--lr {self.lr}", f"--weight-decay {self.weight_decay}",
                  f"--seed {self.seed}"]
        if self.optimizer != TrainConfig.optimizer:
            parts.append(f"--optimizer {self.optimizer}")
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

    def recorded_command(self) -> str:
        """:meth:`command` as the zoo records it: ``--data DATA``, the ``--init`` and ``-o`` files by name only."""
        return dataclasses.replace(self, init=Path(self.init.name) if self.init is not None else None,
                                   out=Path(self.out.name) if self.out is not None else None).command("DATA")


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
    metrics: Evaluation  # evaluate() on the validation clips after the last epoch
    train_seconds: float
    checkpoint: Path | None = None
    sha256: str | None = None

