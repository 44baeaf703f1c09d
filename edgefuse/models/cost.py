"""Cost accounting: parameters and multiply-accumulates (MACs), dense and given AdaFuse's decisions.

Convention: MACs of convolutions (``C_in/groups * k`` per output element, plus one
per output element for a bias, as thop counts it) and of linear layers
(``in_features`` per output element). BatchNorm, activations, pooling and
element-wise ops are not counted (they fold into convolutions or are negligible).
Counting runs on the ``meta`` device: shapes only, no arithmetic, no memory.

AdaFuse, counted as the paper does: at segment t, an output channel of conv1
needs computing only if it is kept at t or reused at t+1 (the last segment: only
if kept); a channel skipped at t is zero, so conv2's input channel is saved too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgefuse.models.layers import ACTIONS
from edgefuse.models.layers.adafuse import KEEP, REUSE, SKIP

if TYPE_CHECKING:
    from edgefuse.models.video import VideoClassifier


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    macs: int  # per clip


@dataclass
class BlockDecisions:
    """AdaFuse decisions of one block on some input, and what they save."""

    block: str
    fractions: dict[str, float]  # skip / reuse / keep over (clip, frame, channel)
    saved_macs: float  # per clip, averaged over the clips


@dataclass
class Cost:
    params: int
    frames: int  # frames per clip (T)
    macs_per_clip: int  # dense
    layers: list[LayerCost]
    decisions: list[BlockDecisions] = field(default_factory=list)

    @property
    def macs_per_frame(self) -> float:
        return self.macs_per_clip / self.frames

    @property
    def saved_macs_per_clip(self) -> float:
        return sum(d.saved_macs for d in self.decisions)

    @property
    def macs_given_decisions_per_clip(self) -> float:
        return self.macs_per_clip - self.saved_macs_per_clip

    @property
    def saving(self) -> float:
        """Fraction of the dense MACs saved by the decisions (0 without AdaFuse)."""
        return self.saved_macs_per_clip / self.macs_per_clip if self.macs_per_clip else 0.0

    def macs_of(self, prefix: str) -> int:
        return sum(lc.macs for lc in self.layers if lc.name.startswith(prefix))


def count_params(model: nn.Module) -> int:
    """Unique parameters (shared policy nets counted once)."""
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        per_out = module.in_channels // module.groups * kernel + (1 if module.bias is not None else 0)
        return out.numel() * per_out
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def dense_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, list[LayerCost]]:
    """Dense MACs of one forward pass on ``input_shape`` (N, T, 3, H, W), counted on the meta device."""
    layers: list[LayerCost] = []
    meta = _to_meta(model)
    names = {m: n for n, m in meta.named_modules()}

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        macs = _layer_macs(mod, out)
        if macs:
            layers.append(LayerCost(names[mod], type(mod).__name__, macs))

    hooks = [m.register_forward_hook(hook) for m in meta.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    try:
        with torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return sum(lc.macs for lc in layers), layers


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model) if not _is_meta(model) else model
    clone = clone.to("meta").eval()
    for m in clone.modules():  # AdaFuse argmax works on meta tensors; recording does not matter here
        if hasattr(m, "record"):
            setattr(m, "record", False)  # noqa: B010 - any module with the attribute
        if hasattr(m, "frame_major"):  # GSF: count the published architecture, not its faster evaluation form
            setattr(m, "frame_major", False)  # noqa: B010
    return clone


def _is_meta(model: nn.Module) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "meta"


def model_cost(model: nn.Module, frames: int = 8, size: int = 224, batch: int = 1) -> Cost:
    """Parameters and dense MACs per clip of (``frames``, 3, ``size``, ``size``)."""
    total, layers = dense_macs(model, (batch, frames, 3, size, size))
    return Cost(params=count_params(model), frames=frames, macs_per_clip=total // batch,
                layers=[LayerCost(lc.name, lc.kind, lc.macs // batch) for lc in layers])


def _saved_macs_sum(mask: torch.Tensor, conv1_macs_per_frame: int, conv2_macs_per_frame: int) -> torch.Tensor:
    """MACs saved over all N clips of ``mask`` (N, T, C, 3); differentiable in ``mask``."""
    _, _, c, _ = mask.shape
    keep, reuse, skip = mask[..., KEEP], mask[..., REUSE], mask[..., SKIP]
    needed_later = torch.cat([reuse[:, 1:], torch.zeros_like(reuse[:, :1])], dim=1)  # reused at t+1
    up_saved = (1 - keep) * (1 - needed_later)  # (N, T, C): conv1 channel not computed
    per_channel_up = conv1_macs_per_frame / c
    per_channel_down = conv2_macs_per_frame / c
    return up_saved.sum() * per_channel_up + skip.sum() * per_channel_down


def savings_tensor(mask: torch.Tensor, conv1_macs_per_frame: int, conv2_macs_per_frame: int) -> torch.Tensor:
    """:func:`decision_savings` as a scalar tensor with gradients w.r.t. ``mask``.

    For training: with straight-through masks (one-hot values, soft gradients) it is the
    savings of the sampled decisions, and its gradient pushes the policy towards cheaper ones.
    """
    return _saved_macs_sum(mask, conv1_macs_per_frame, conv2_macs_per_frame) / mask.shape[0]


def decision_savings(mask: torch.Tensor, conv1_macs_per_frame: int, conv2_macs_per_frame: int) -> float:
    """MACs saved per clip by one block's decisions.

    ``mask``: (N, T, C, 3) one-hot over skip/reuse/keep. ``conv*_macs_per_frame``:
    the dense MACs of conv1 and conv2 for one frame.
    """
    return float(_saved_macs_sum(mask.detach(), conv1_macs_per_frame, conv2_macs_per_frame)) / mask.shape[0]


@dataclass(frozen=True)
class AdaFuseMacs:
    """What a trainer needs to price AdaFuse decisions: dense MACs per clip and, per block
    with a policy, the dense MACs of conv1 and conv2 for one frame."""

    frames: int
    dense_per_clip: int
    blocks: dict[str, tuple[int, int]]  # block name -> (conv1, conv2) MACs per frame

    def expected_macs(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """MACs per clip given the blocks' masks (N, T, C, 3), as a differentiable scalar."""
        saved = [savings_tensor(m, *self.blocks[name]) for name, m in masks.items()]
        return self.dense_per_clip - torch.stack(saved).sum() if saved else torch.tensor(float(self.dense_per_clip))


def _block_conv_macs(cost: Cost, name: str) -> tuple[int, int]:
    t = cost.frames
    return cost.macs_of(f"backbone.{name}.conv1") // t, cost.macs_of(f"backbone.{name}.conv2") // t


def adafuse_macs(model: VideoClassifier, frames: int, height: int, width: int | None = None) -> AdaFuseMacs:
    """Dense MACs per clip of (``frames``, 3, ``height``, ``width``) and the conv MACs of every AdaFuse block."""
    total, layers = dense_macs(model, (1, frames, 3, height, width or height))
    cost = Cost(count_params(model), frames, total, layers)
    names = [name for name, _ in model.adafuse_modules()]
    return AdaFuseMacs(frames, total, {name: _block_conv_macs(cost, name) for name in names})


def adafuse_cost(model: VideoClassifier, clips: torch.Tensor) -> Cost:
    """Dense cost plus the decisions and savings of every AdaFuse block on ``clips`` (N, T, 3, H, W)."""
    _, t, _, h, w = clips.shape  # (N, T, 3, H, W)
    total, layers = dense_macs(model, (1, t, 3, h, w))
    cost = Cost(count_params(model), t, total, layers)
    fuses = list(model.adafuse_modules())
    for _, f in fuses:
        f.record = True
    try:
        with torch.no_grad():
            model(clips)
        for name, block in model.blocks():
            fuse = getattr(block, "adafuse", None)
            conv1, conv2 = _block_conv_macs(cost, name)
            if fuse is None or fuse.last_mask is None:
                continue
            mask = fuse.last_mask
            fr = {a: float(mask[..., i].mean()) for i, a in enumerate(ACTIONS)}
            cost.decisions.append(BlockDecisions(name, fr, decision_savings(mask, conv1, conv2)))
    finally:
        for _, f in fuses:
            f.record = False
            f.last_mask = None
    return cost
