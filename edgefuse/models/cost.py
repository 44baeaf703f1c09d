"""Cost accounting: parameters and multiply-accumulates (MACs), dense and given AdaFuse's decisions.

Convention: MACs of convolutions (``C_in/groups * k`` per output element, plus one
per output element for a bias, as thop counts it), of linear layers
(``in_features`` per output element) and of the matrix products of non-local blocks
(any module with ``matmul_macs(t, h, w)``; thop does not see them, the official TSM
figure adds them analytically). BatchNorm, activations, pooling and
element-wise ops are not counted (they fold into convolutions or are negligible).
Counting runs on the ``meta`` device: shapes only, no arithmetic, no memory.

AdaFuse, counted as the paper does: at segment t, a fused channel needs computing only if it is kept at t
or reused at t+1 (the last segment: only if kept), which saves the MACs of the convolution producing it; a
channel skipped at t is zero, so the MACs of the convolutions reading it are saved too. A block's
:class:`FusePricing` holds both per channel: on a ResNet block the fused channels are conv1's outputs
(producer conv1, reader conv2); on a BN-Inception block they are the block's concatenated outputs (each
produced by its branch's last convolution, none for the reduction blocks' pooled channels; read by the next
block's first convolutions, as AdaFuse's ``compute_gflops_by_mask`` prices ``AdaBNInc``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

    def matmul_hook(mod: nn.Module, args: tuple[torch.Tensor, int], _out: torch.Tensor) -> None:
        x, t = args  # (N*T, C, H, W), frames per clip
        h, w = int(x.shape[-2]), int(x.shape[-1])
        clips = int(x.shape[0]) // t
        layers.append(LayerCost(f"{names[mod]}.matmul", "MatMul", clips * mod.matmul_macs(t, h, w)))  # type: ignore[operator]

    hooks = [m.register_forward_hook(hook) for m in meta.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    hooks += [m.register_forward_hook(matmul_hook) for m in meta.modules() if hasattr(m, "matmul_macs")]
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


@dataclass(frozen=True)
class FusePricing:
    """What one block's AdaFuse decisions can save, in MACs per frame and fused channel.

    ``up``: runs ``(channels, MACs)`` in channel order: the MACs of the convolution output channel that
    produces each fused channel (saved when it needs no computing). ``down``: the MACs of the convolutions
    reading one fused channel (saved when it is skipped)."""

    up: tuple[tuple[int, float], ...]
    down: float

    @classmethod
    def uniform(cls, channels: int, producer_macs: int, reader_macs: int) -> FusePricing:
        """A producer and a reader spread evenly over ``channels`` (ResNet: conv1 and conv2 MACs per frame)."""
        return cls(((channels, producer_macs / channels),), reader_macs / channels)

    @property
    def channels(self) -> int:
        return sum(n for n, _ in self.up)

    def up_vector(self) -> torch.Tensor:
        """(C,) MACs per frame of producing each fused channel."""
        return torch.cat([torch.full((n,), float(macs), dtype=torch.float64) for n, macs in self.up])  # (C,)

    def to_meta(self) -> dict[str, Any]:
        return {"up": [[n, macs] for n, macs in self.up], "down": self.down}

    @classmethod
    def from_meta(cls, value: Any, channels: int) -> FusePricing:
        """:meth:`to_meta`'s form, or the ``[conv1, conv2]`` MACs per frame of graphs exported before it."""
        if isinstance(value, dict):
            return cls(tuple((int(n), float(m)) for n, m in value["up"]), float(value["down"]))
        return cls.uniform(channels, int(value[0]), int(value[1]))


def _saved_macs_sum(mask: torch.Tensor, pricing: FusePricing) -> torch.Tensor:
    """MACs saved over all N clips of ``mask`` (N, T, C, 3); differentiable in ``mask``."""
    _, _, c, _ = mask.shape
    if c != pricing.channels:
        raise ValueError(f"decisions for {c} channels priced for {pricing.channels}")
    keep, reuse, skip = mask[..., KEEP], mask[..., REUSE], mask[..., SKIP]
    needed_later = torch.cat([reuse[:, 1:], torch.zeros_like(reuse[:, :1])], dim=1)  # reused at t+1
    up_saved = (1 - keep) * (1 - needed_later)  # (N, T, C): fused channel not computed
    up = pricing.up_vector().to(mask.dtype)  # (C,)
    return (up_saved.sum(dim=(0, 1)) * up).sum() + skip.sum() * pricing.down


def savings_tensor(mask: torch.Tensor, pricing: FusePricing) -> torch.Tensor:
    """:func:`decision_savings` as a scalar tensor with gradients w.r.t. ``mask``.

    For training: with straight-through masks (one-hot values, soft gradients) it is the
    savings of the sampled decisions, and its gradient pushes the policy towards cheaper ones.
    """
    return _saved_macs_sum(mask, pricing) / mask.shape[0]


def decision_savings(mask: torch.Tensor, pricing: FusePricing) -> float:
    """MACs saved per clip by one block's decisions ``mask`` (N, T, C, 3), one-hot over skip/reuse/keep."""
    return float(_saved_macs_sum(mask.detach(), pricing)) / mask.shape[0]


@dataclass(frozen=True)
class AdaFuseMacs:
    """What a trainer needs to price AdaFuse decisions: dense MACs per clip and, per block
    with a policy, its :class:`FusePricing`."""

    frames: int
    dense_per_clip: int
    blocks: dict[str, FusePricing]  # block name -> pricing

    def expected_macs(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """MACs per clip given the blocks' masks (N, T, C, 3), as a differentiable scalar."""
        saved = [savings_tensor(m, self.blocks[name]) for name, m in masks.items()]
        return self.dense_per_clip - torch.stack(saved).sum() if saved else torch.tensor(float(self.dense_per_clip))


def _layer_macs_by_name(cost: Cost) -> dict[str, int]:
    out: dict[str, int] = {}
    for lc in cost.layers:
        out[lc.name] = out.get(lc.name, 0) + lc.macs
    return out


def fuse_pricing(model: VideoClassifier, cost: Cost) -> dict[str, FusePricing]:
    """The pricing of every AdaFuse block of ``model`` from its dense ``cost`` (per clip of ``cost.frames``).

    A backbone with ``fusion_layers(block)`` (BN-Inception) names each block's producers and readers; a ResNet
    block's are its conv1 and conv2."""
    t = cost.frames
    macs = _layer_macs_by_name(cost)
    layers = getattr(model.backbone, "fusion_layers", None)
    out: dict[str, FusePricing] = {}
    for name, fuse in model.adafuse_modules():
        if layers is None:
            out[name] = FusePricing.uniform(fuse.width, macs[f"backbone.{name}.conv1"] // t,
                                            macs[f"backbone.{name}.conv2"] // t)
            continue
        producers, readers = layers(name)
        up = tuple((channels, macs[f"backbone.{conv}"] / t / channels if conv else 0.0)
                   for channels, conv in producers)
        down = sum(macs[f"backbone.{conv}"] for conv in readers) / t / fuse.width
        out[name] = FusePricing(up, down)
    return out


def adafuse_macs(model: VideoClassifier, frames: int, height: int, width: int | None = None) -> AdaFuseMacs:
    """Dense MACs per clip of (``frames``, 3, ``height``, ``width``) and the pricing of every AdaFuse block."""
    total, layers = dense_macs(model, (1, frames, 3, height, width or height))
    cost = Cost(count_params(model), frames, total, layers)
    return AdaFuseMacs(frames, total, fuse_pricing(model, cost))


def adafuse_cost(model: VideoClassifier, clips: torch.Tensor) -> Cost:
    """Dense cost plus the decisions and savings of every AdaFuse block on ``clips`` (N, T, 3, H, W)."""
    _, t, _, h, w = clips.shape  # (N, T, 3, H, W)
    total, layers = dense_macs(model, (1, t, 3, h, w))
    cost = Cost(count_params(model), t, total, layers)
    fuses = list(model.adafuse_modules())
    pricing = fuse_pricing(model, cost)
    for _, f in fuses:
        f.record = True
    try:
        with torch.no_grad():
            model(clips)
        for name, fuse in fuses:
            if fuse.last_mask is None:
                continue
            mask = fuse.last_mask
            fr = {a: float(mask[..., i].mean()) for i, a in enumerate(ACTIONS)}
            cost.decisions.append(BlockDecisions(name, fr, decision_savings(mask, pricing[name])))
    finally:
        for _, f in fuses:
            f.record = False
            f.last_mask = None
    return cost
