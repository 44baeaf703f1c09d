"""InceptionV3 as the GSF repository builds it, with its own parameter names, so its checkpoints load unedited.

The GSF repository (swathikirans/GSF) does not use torchvision's InceptionV3: it builds a graph from a
layer list (Caffe-converted ImageNet weights, ``inceptionv3-cuhk``). Written here from that graph's
structure as a table (:data:`STEM`, :data:`BLOCKS`), not translated from it. What it fixes:

- Names: every convolution is a unit ``<id>_Conv2D`` (with a bias) -> ``<id>_batchnorm`` (eps 1e-5)
  -> ReLU, all modules at the top level of the backbone (``conv_Conv2D``, ``mixed_4_tower_1_conv_3_Conv2D``,
  ...). Blocks ``mixed`` .. ``mixed_10``: three blocks on the stem's output (27x27 at 229 px), a reduction,
  four blocks with 7x1 / 1x7 factorised towers (13x13), a reduction and two blocks whose towers fork into a
  3x1 and a 1x3 convolution (6x6).
  Branches are concatenated in table order; the last two blocks give 2048 channels.
- GSF: one module per block (11), on the first convolution of one branch, between that convolution and
  its BatchNorm, named ``gsf_<id>_Conv2D`` (``gsf_mixed_conv_Conv2D``, ..., ``gsf_mixed_8_tower_conv_Conv2D``,
  ..., ``gsf_mixed_10_conv_Conv2D``) and gating all of that convolution's channels at ratio 100:
  :meth:`InceptionV3.gsf_sites`, filled by ``edgefuse.models.gsf.apply_gsf``.
- Pooling: max pools of the stem round up (Caffe's ceil mode), branch pools are 3x3 stride 1 (average,
  padding counted; the last block's is a max pool) and the global pool is adaptive (any input size).
- Classifier: the official ``top_cls_fc`` (1000-way ImageNet) is the video model's ``fc``; with dropout the
  research code swaps it for a Dropout and adds ``new_fc``. Either maps to edgefuse's ``fc`` (gsf.py).
- Input: BGR, 0-255, minus (104, 117, 128), std 1; 229 px from a 261 px resize (``config.input_defaults``).

Sizes. The two reduction blocks concatenate a stride-2 convolution (which rounds down) with a stride-2
max pool; the official ceil-mode pool gives one row more unless its input is odd, so the official graph
runs only at H, W = 32k+5 .. 32k+12 (k >= 2: 69 is the smallest, the official 229 is in k = 7) and fails
to concatenate elsewhere (224, say). Here those two pools round down: on an odd input that is the same
pool, so the output is the official one wherever the official graph runs, and the network also runs at
any other size from 69 px up.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.backbones.common import init_conv_bn

MIN_SIZE = 69  # the smallest frame the graph takes (the 3x3 stride-2 convolution of mixed_8 needs a 3x3 map)


@dataclass(frozen=True)
class Conv:
    """``<id>_Conv2D`` -> [``gsf_<id>_Conv2D``] -> ``<id>_batchnorm`` -> ReLU."""

    id: str
    out: int
    kernel: tuple[int, int]
    stride: int
    pad: tuple[int, int]
    gsf: bool = False  # an official GSF site

    @property
    def gsf_name(self) -> str:
        return f"gsf_{self.id}_Conv2D"


@dataclass(frozen=True)
class Pool:
    """A 3x3 pooling layer named ``id``: ``max`` or ``avg`` (padding counted in the average)."""

    id: str
    mode: str
    stride: int
    pad: int = 0
    ceil: bool = False


@dataclass(frozen=True)
class Fork:
    """The branch splits: every conv reads the branch's tensor so far; their outputs join the concatenation in order."""

    convs: tuple[Conv, ...]


Step = Conv | Pool | Fork
Branch = tuple[Step, ...]


@dataclass(frozen=True)
class Block:
    """An Inception block: its branches run on the block input, their outputs are concatenated in order."""

    name: str
    branches: tuple[Branch, ...]

    def convs(self) -> list[Conv]:
        out: list[Conv] = []
        for branch in self.branches:
            for step in branch:
                if isinstance(step, Fork):
                    out += step.convs
                elif isinstance(step, Conv):
                    out.append(step)
        return out


def _conv(cid: str, out: int, kh: int, kw: int, stride: int = 1, pad: tuple[int, int] | None = None,
          gsf: bool = False) -> Conv:
    """Stride 1 pads to keep the size unless ``pad`` says otherwise; stride 2 does not pad."""
    if pad is None:
        pad = (kh // 2, kw // 2) if stride == 1 else (0, 0)
    return Conv(cid, out, (kh, kw), stride, pad, gsf)


def _tower(prefix: str, *specs: tuple[int, ...], gsf: bool = False) -> tuple[Conv, ...]:
    """Convs ``<prefix>_conv``, ``<prefix>_conv_1``, ... from (out, kh, kw[, stride]); GSF on the first if ``gsf``."""
    convs = []
    for i, (out, kh, kw, *rest) in enumerate(specs):
        stride = rest[0] if rest else 1
        convs.append(_conv(f"{prefix}_conv" + (f"_{i}" if i else ""), out, kh, kw, stride, gsf=gsf and i == 0))
    return tuple(convs)


def _branch_pool(block: str, mode: str = "avg") -> Pool:
    return Pool(f"{block}_tower_2_pool", mode, stride=1, pad=1)


def _mixed_a(b: str, pool_proj: int) -> Block:
    return Block(b, (
        _tower(b, (64, 1, 1), gsf=True),
        _tower(f"{b}_tower", (48, 1, 1), (64, 5, 5)),
        _tower(f"{b}_tower_1", (64, 1, 1), (96, 3, 3), (96, 3, 3)),
        (_branch_pool(b), *_tower(f"{b}_tower_2", (pool_proj, 1, 1))),
    ))


def _reduce_a(b: str) -> Block:
    return Block(b, (
        _tower(b, (384, 3, 3, 2), gsf=True),
        _tower(f"{b}_tower", (64, 1, 1), (96, 3, 3), (96, 3, 3, 2)),
        (Pool(f"{b}_pool", "max", stride=2),),  # rounds down: see the module docstring
    ))


def _mixed_b(b: str, mid: int) -> Block:
    return Block(b, (
        _tower(b, (192, 1, 1), gsf=True),
        _tower(f"{b}_tower", (mid, 1, 1), (mid, 7, 1), (192, 1, 7)),
        _tower(f"{b}_tower_1", (mid, 1, 1), (mid, 1, 7), (mid, 7, 1), (mid, 1, 7), (192, 7, 1)),
        (_branch_pool(b), *_tower(f"{b}_tower_2", (192, 1, 1))),
    ))


def _reduce_b(b: str) -> Block:
    return Block(b, (
        _tower(f"{b}_tower", (192, 1, 1), (320, 3, 3, 2), gsf=True),
        _tower(f"{b}_tower_1", (192, 1, 1), (192, 7, 1), (192, 1, 7), (192, 3, 3, 2)),
        (Pool(f"{b}_pool", "max", stride=2),),  # rounds down: see the module docstring
    ))


def _mixed_c(b: str, pool_mode: str) -> Block:
    def fork(prefix: str) -> Fork:
        return Fork(_tower(f"{prefix}_mixed", (384, 3, 1), (384, 1, 3)))

    return Block(b, (
        _tower(b, (320, 1, 1), gsf=True),
        (*_tower(f"{b}_tower", (384, 1, 1)), fork(f"{b}_tower")),
        (*_tower(f"{b}_tower_1", (448, 1, 1), (384, 3, 3)), fork(f"{b}_tower_1")),
        (_branch_pool(b, pool_mode), *_tower(f"{b}_tower_2", (192, 1, 1))),
    ))


STEM: Branch = (
    _conv("conv", 32, 3, 3, stride=2),
    _conv("conv_1", 32, 3, 3, pad=(0, 0)),
    _conv("conv_2", 64, 3, 3),
    Pool("pool", "max", stride=2, ceil=True),
    _conv("conv_3", 80, 1, 1),
    _conv("conv_4", 192, 3, 3, pad=(0, 0)),
    Pool("pool_1", "max", stride=2, ceil=True),
)

BLOCKS: tuple[Block, ...] = (
    _mixed_a("mixed", 32), _mixed_a("mixed_1", 64), _mixed_a("mixed_2", 64),  # 27x27 at 229 px; 288 channels out
    _reduce_a("mixed_3"),  # -> 13x13, 768
    _mixed_b("mixed_4", 128), _mixed_b("mixed_5", 160), _mixed_b("mixed_6", 160), _mixed_b("mixed_7", 192),
    _reduce_b("mixed_8"),  # -> 6x6, 1280
    _mixed_c("mixed_9", "avg"), _mixed_c("mixed_10", "max"),  # 2048
)


class InceptionV3(nn.Module):
    """GSF's InceptionV3 feature extractor: (N*T, 3, H, W) -> (N*T, 2048), official names at the top level.

    There is no ``top_cls_fc``: the video model owns its classifier (``fc``).
    """

    def __init__(self) -> None:
        super().__init__()
        channels = self._build(STEM, 3)
        for block in BLOCKS:
            outs = [self._build(branch, channels) for branch in block.branches]
            channels = sum(outs)
        self.top_cls_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = channels
        assert self.feature_dim == 2048, self.feature_dim
        init_conv_bn(self)

    def _build(self, steps: Branch, cin: int) -> int:
        """Creates the branch's layers (in table order: the official state-dict order); returns its output channels."""
        c = cin
        for step in steps:
            if isinstance(step, Pool):
                if step.mode == "max":
                    pool: nn.Module = nn.MaxPool2d(3, step.stride, step.pad, ceil_mode=step.ceil)
                else:
                    pool = nn.AvgPool2d(3, step.stride, step.pad, ceil_mode=step.ceil, count_include_pad=True)
                setattr(self, step.id, pool)
                continue
            convs = step.convs if isinstance(step, Fork) else (step,)
            for conv in convs:
                setattr(self, f"{conv.id}_Conv2D", nn.Conv2d(c, conv.out, conv.kernel, conv.stride, conv.pad))
                if conv.gsf:
                    self.register_module(conv.gsf_name, None)  # an empty slot, in the official key order
                setattr(self, f"{conv.id}_batchnorm", nn.BatchNorm2d(conv.out))
            c = sum(conv.out for conv in convs)
        return c

    def blocks(self) -> list[tuple[str, Block]]:
        """The Inception blocks in order (``mixed`` .. ``mixed_10``); their layers are the backbone's own."""
        return [(b.name, b) for b in BLOCKS]

    def gsf_sites(self) -> list[tuple[nn.Module, str, int]]:
        """(owner, attribute, channels) of the 11 official GSF places, one per block."""
        return [(self, conv.gsf_name, conv.out) for block in BLOCKS for conv in block.convs() if conv.gsf]

    def _unit(self, conv: Conv, x: torch.Tensor, t: int) -> torch.Tensor:
        x = getattr(self, f"{conv.id}_Conv2D")(x)  # (N*T, out, H', W')
        gsf = getattr(self, conv.gsf_name) if conv.gsf else None
        if gsf is not None:
            x = gsf(x, t)
        return F.relu(getattr(self, f"{conv.id}_batchnorm")(x), inplace=True)

    def _run(self, steps: Branch, x: torch.Tensor, t: int) -> list[torch.Tensor]:
        for step in steps:
            if isinstance(step, Fork):
                return [self._unit(conv, x, t) for conv in step.convs]
            x = getattr(self, step.id)(x) if isinstance(step, Pool) else self._unit(step, x, t)
        return [x]

    @staticmethod
    def _check_size(x: torch.Tensor) -> None:
        """A clear error below the smallest size, also when traced for export (the check leaves nothing in the
        graph); skipped under torch.export, whose sizes are symbolic."""
        if torch.compiler.is_compiling():
            return
        with warnings.catch_warnings():  # traced sizes are tensors: read once, as the constants they are here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            h, w = (int(s) for s in x.shape[-2:])
        if min(h, w) < MIN_SIZE:
            raise EdgefuseError(f"GSF's InceptionV3 needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                                f"{h}x{w}; use a larger input size (the official one is 229)")

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self._check_size(x)
        x = self._run(STEM, x, t)[0]  # (N*T, 192, H', W')
        for block in BLOCKS:
            x = torch.cat([y for branch in block.branches for y in self._run(branch, x, t)], dim=1)  # (N*T, C, h, w)
        x = self.top_cls_pool(x)  # (N*T, 2048, 1, 1)
        return torch.flatten(x, 1)  # (N*T, 2048)


def build() -> InceptionV3:
    return InceptionV3()
