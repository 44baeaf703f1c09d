"""Evaluation: top-1/top-5, within-pair and per-class accuracy, AdaFuse decisions and MACs."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from edgefuse.models import VideoClassifier
from edgefuse.models.cost import AdaFuseMacs, adafuse_macs, decision_savings
from edgefuse.models.layers import ACTIONS
from edgefuse.models.report import BlockShare


@dataclass(frozen=True)
class Evaluation:
    """:func:`evaluate`'s figures on a clip set. The AdaFuse fields are None for models without a policy."""

    n: int
    top1: float
    top5: float  # top-k with k = min(5, classes)
    per_class: list[float | None]  # None for a class without clips
    within_pair: float | None  # classes 2k and 2k+1 told apart; None without pairs
    dense_gmacs_clip: float
    gmacs_clip_given_decisions: float | None = None
    saving_pct: float | None = None
    fractions: dict[str, float] | None = None  # skip / reuse / keep, mean over blocks
    blocks: list[BlockShare] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None or k in ("within_pair",)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        blocks = d.get("blocks")
        return cls(**{**d, "blocks": None if blocks is None else [BlockShare(**b) for b in blocks]})


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
def recording(model: VideoClassifier) -> Iterator[dict[str, Any]]:
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


def fuse_masks(fuses: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {name: f.last_mask for name, f in fuses.items() if f.last_mask is not None}


def _decision_report(sums: dict[str, dict[str, float]], n: int, macs: AdaFuseMacs) -> dict[str, Any]:
    blocks = [BlockShare(name, s["skip"] / n, s["reuse"] / n, s["keep"] / n, s["saved"] / n / 1e9)
              for name, s in sums.items()]
    saved = sum(s["saved"] for s in sums.values()) / n
    return {"gmacs_clip_given_decisions": (macs.dense_per_clip - saved) / 1e9,
            "saving_pct": 100.0 * saved / macs.dense_per_clip,
            "fractions": {a: sum(s[a] / n for s in sums.values()) / len(sums) for a in ACTIONS} if sums else {},
            "blocks": blocks}


def evaluate(model: VideoClassifier, clips: torch.Tensor, labels: torch.Tensor, batch_size: int = 32
             ) -> Evaluation:
    """Accuracy of ``model`` (in eval mode) on preprocessed ``clips`` (N, T, 3, H, W): top-1, top-5,
    per-class and within-pair accuracy (the clip's own class against its pair partner only), dense MACs
    and, for AdaFuse (argmax or the model's decision rule), the MACs given the decisions counted as
    ``edgefuse inspect`` (:func:`edgefuse.models.cost.adafuse_cost`)."""
    was_training = model.training
    model.eval()
    n, t, _, h, w = clips.shape
    macs = adafuse_macs(model, t, h, w)
    outputs, sums = [], {name: dict.fromkeys((*ACTIONS, "saved"), 0.0) for name in macs.blocks}
    try:
        with torch.no_grad(), recording(model) as fuses:
            for batch in clips.split(batch_size):
                outputs.append(model(batch))
                for name, mask in fuse_masks(fuses).items():
                    s, b = sums[name], len(batch)
                    for i, a in enumerate(ACTIONS):
                        s[a] += float(mask[..., i].mean()) * b
                    s["saved"] += decision_savings(mask, macs.blocks[name]) * b
    finally:
        model.train(was_training)
    logits = torch.cat(outputs)  # (N, K)
    pred = logits.argmax(dim=1)
    return Evaluation(n=n, top1=float((pred == labels).float().mean()), top5=_topk(logits, labels, 5),
                      per_class=_per_class(pred, labels, logits.shape[1]), within_pair=_pair_accuracy(logits, labels),
                      dense_gmacs_clip=macs.dense_per_clip / 1e9,
                      **(_decision_report(sums, n, macs) if macs.blocks else {}))


