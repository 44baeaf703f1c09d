"""BN-Inception (Ioffe & Szegedy, 2015) as the official video repositories build it, under their parameter names.

GSF (``backbones/bn_inception*.yaml``), TSM (``archs/bn_inception.py``) and AdaFuse build the same network with
the same state-dict layout: every layer sits at the network's top level under its Caffe name (``conv1_7x7_s2``,
``conv1_7x7_s2_bn``, ``pool1_3x3_s2``, ``conv2_3x3_reduce``, ..., ``inception_3a_1x1``, ``inception_3a_1x1_bn``,
..., ``inception_5b_pool_proj_bn``). So are these, and an official checkpoint loads after the research code's
``base_model.`` -> ``backbone.`` rename alone.

The network: a stem (7x7/2 conv, 3x3/2 max pool, 1x1 and 3x3 convs, 3x3/2 max pool) and ten Inception blocks
(:data:`INCEPTION_BLOCKS`), each the concatenation of a 1x1 branch, a 1x1 -> 3x3 branch, a 1x1 -> 3x3 -> 3x3
branch and a 3x3 pooling branch with a 1x1 projection; the two reduction blocks (3c, 4e) drop the 1x1 branch and
the projection and stride 2 in their last 3x3 convs and their max pool. Then a global average pool: 1024 features.
Facts that the official checkpoints depend on:

- every convolution has a bias (the networks come from Caffe); every BN has eps 1e-5;
- every pool is ceil-mode (Caffe's rounding); the branch average pools count the zero padding;
- a ReLU follows every BN. The official code applies it in place on the BN output, so every later reader of that
  tensor sees it rectified: the next conv of the branch, the stem's max pools (which read ``*_bn``), the block's
  concatenation and so the next block's branches, its pooling branch included. Here every conv unit returns
  ``relu(bn(conv(x)))`` as a new tensor: the same values, nothing written in place;
- the global pool is adaptive as in GSF's YAML (``global: True``); TSM and AdaFuse end in ``AvgPool2d(7)``, the same
  at the official 224 (a 7x7 map), where only 223..230 px run.

Input sizes: the reduction blocks concatenate a padded stride-2 conv with an unpadded ceil-mode stride-2 pool; their
maps agree only for H, W = 32k-1 .. 32k+6 (k >= 1: 31..38, 63..70, ..., 223..230), e.g. 64, 128, 224.

Temporal hooks (the backbone is per frame: (N*T, 3, H, W) -> (N*T, 1024), ``t`` = segments per clip):

- GSF (:meth:`BNInception.gsf_sites`): one module per Inception block, where GSF's ``bn_inception_gsf.yaml`` puts it:
  after the block's first conv (``1x1``; ``3x3_reduce`` in 3c and 4e), before that conv's BN, in the top-level
  slot ``gsf_<conv name>`` (official key ``gsf_inception_3a_1x1.conv3D.weight``).
- TSM (:meth:`BNInception.shift_sites`): TSM's ``--shift_place block`` on BN-Inception shifts the input of every stage
  function but the first (``_block_2``, ``_block_3a`` .. ``_block_5b``: mask ``011111111111``), not residually. Those
  stages are :meth:`BNInception.blocks`; each holds the ``shift`` slot (no weights: the layers stay top-level).
- AdaFuse (:meth:`BNInception.adafuse_sites`): AdaFuse's ``BNInceptionAda`` fuses the output of every Inception
  block (3a .. 5b; not the stem) with the previous segment's, its policy reading the block's input. Each Inception
  stage holds the ``adafuse`` slot, applied to the concatenated branches with the stage input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.backbones.common import init_conv_bn

Branch = tuple[str, ...]  # top-level layer names applied in order: conv units (conv -> [GSF] -> BN -> ReLU) and pools


@dataclass(frozen=True)
class InceptionSpec:
    """One Inception block: the output channels of each branch's convolutions (official names in brackets)."""

    name: str  # "3a": its layers are inception_3a_*
    b1x1: int  # [1x1]; 0 in the reduction blocks (no such branch)
    b3x3: tuple[int, int]  # [3x3_reduce, 3x3]
    double: tuple[int, int, int]  # [double_3x3_reduce, double_3x3_1, double_3x3_2]
    pool: str  # [pool]: "avg" 3x3/1 pad 1, "max" 3x3/1 pad 1 (5b), "max/2" 3x3/2 no pad (reduction blocks)
    pool_proj: int  # [pool_proj] 1x1 after the pool; 0: the pooled input itself is concatenated
    stride: int = 1  # of the 3x3 and double_3x3_2 convs (2 in the reduction blocks)

    @property
    def gsf_conv(self) -> str:
        """The conv GSF follows: the block's first one (``bn_inception_gsf.yaml``)."""
        return "1x1" if self.b1x1 else "3x3_reduce"


INCEPTION_BLOCKS: tuple[InceptionSpec, ...] = (
    #             name  1x1  3x3_reduce, 3x3  double_3x3_reduce, _1, _2  pool   pool_proj       in -> out channels
    InceptionSpec("3a", 64,  (64, 64),   (64, 96, 96),     "avg",   32),           # 192 -> 256
    InceptionSpec("3b", 64,  (64, 96),   (64, 96, 96),     "avg",   64),           # 256 -> 320
    InceptionSpec("3c", 0,   (128, 160), (64, 96, 96),     "max/2", 0, stride=2),  # 320 -> 576, H/2
    InceptionSpec("4a", 224, (64, 96),   (96, 128, 128),   "avg",   128),          # 576 -> 576
    InceptionSpec("4b", 192, (96, 128),  (96, 128, 128),   "avg",   128),          # 576 -> 576
    InceptionSpec("4c", 160, (128, 160), (128, 160, 160),  "avg",   128),          # 576 -> 608
    InceptionSpec("4d", 96,  (128, 192), (160, 192, 192),  "avg",   128),          # 608 -> 608
    InceptionSpec("4e", 0,   (128, 192), (192, 256, 256),  "max/2", 0, stride=2),  # 608 -> 1056, H/2
    InceptionSpec("5a", 352, (192, 320), (160, 224, 224),  "avg",   128),          # 1056 -> 1024
    InceptionSpec("5b", 352, (192, 320), (192, 224, 224),  "max",   128),          # 1024 -> 1024
)


def valid_size(size: int) -> bool:
    """Whether BN-Inception runs on ``size`` px (H or W): 32k-1 .. 32k+6, k >= 1."""
    return size >= 31 and (size + 1) % 32 <= 7


def _pool(kind: str) -> nn.Module:
    """A branch pool of :class:`InceptionSpec` (all ceil-mode, as Caffe rounds)."""
    if kind == "avg":
        return nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
    if kind == "max":
        return nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
    if kind == "max/2":
        return nn.MaxPool2d(3, stride=2, ceil_mode=True)
    raise ValueError(f"unknown pool {kind!r}")


class Stage(nn.Module):
    """A stage function of the official network (TSM's ``_block_2``, ``_block_3a`` ...): its branches, by the
    top-level names of their layers, and the ``shift`` hook slot TSM fills. It owns no weights (the backbone does,
    under the official names) and the backbone runs it (:meth:`BNInception.run_stage`)."""

    def __init__(self, branches: tuple[Branch, ...], in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branches = branches  # concatenated along channels when more than one
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.shift: nn.Module | None = None
        self.adafuse: nn.Module | None = None  # AdaFuse: fuses the stage output with the previous segment's

    def extra_repr(self) -> str:
        return " | ".join(" -> ".join(b) for b in self.branches)

    def forward(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """The stage's output hook: AdaFuse on the concatenated branches ``out`` given the stage input ``x``.
        Called as a module so the exported graph names its nodes after the stage (``/backbone/block_3a/adafuse/..``)."""
        return out if self.adafuse is None else self.adafuse(out, x, t)  # type: ignore[no-any-return]


class BNInception(nn.Module):
    """A BN-Inception feature extractor: (N*T, 3, H, W) -> (N*T, 1024). There is no ``fc``: the video model owns
    its classifier (the research code replaces the ImageNet ``fc`` by dropout and a new one)."""

    feature_dim = 1024

    def __init__(self) -> None:
        super().__init__()
        self._gsf_sites: list[tuple[str, int]] = []  # (slot name, channels)
        # stage 1: the image input (TSM never shifts it)
        self._unit("conv1_7x7_s2", 3, 64, 7, stride=2)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.stem: Branch = ("conv1_7x7_s2", "pool1_3x3_s2")
        # stage 2
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.block_2 = Stage((("conv2_3x3_reduce", "conv2_3x3", "pool2_3x3_s2"),), 64, 192)
        self._stages = ["block_2"]
        cin = 192
        for spec in INCEPTION_BLOCKS:
            stage, cin = self._inception(spec, cin)
            setattr(self, f"block_{spec.name}", stage)
            self._stages.append(f"block_{spec.name}")
        assert cin == self.feature_dim
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        init_conv_bn(self)

    # ------------------------------------------------------------------ construction

    def _unit(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1, gsf: bool = False) -> str:
        """Conv ``name`` (biased, 'same' padding) and BN ``name_bn``; with ``gsf``, the empty slot ``gsf_name``
        between them (registered here so a filled slot keeps the official state-dict order)."""
        self.add_module(name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=True))
        if gsf:
            self.register_module(f"gsf_{name}", None)
            self._gsf_sites.append((f"gsf_{name}", cout))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5))
        return name

    def _inception(self, spec: InceptionSpec, cin: int) -> tuple[Stage, int]:
        """Builds block ``spec`` on ``cin`` input channels (layers in the official order); returns its stage and
        its output channels."""
        p = f"inception_{spec.name}_"
        gsf = p + spec.gsf_conv
        s = spec.stride
        branches: list[Branch] = []
        cout = 0
        if spec.b1x1:
            branches.append((self._unit(p + "1x1", cin, spec.b1x1, 1, gsf=gsf == p + "1x1"),))
            cout += spec.b1x1
        r, c = spec.b3x3
        branches.append((self._unit(p + "3x3_reduce", cin, r, 1, gsf=gsf == p + "3x3_reduce"),
                         self._unit(p + "3x3", r, c, 3, stride=s)))
        cout += c
        dr, d1, d2 = spec.double
        branches.append((self._unit(p + "double_3x3_reduce", cin, dr, 1),
                         self._unit(p + "double_3x3_1", dr, d1, 3),
                         self._unit(p + "double_3x3_2", d1, d2, 3, stride=s)))
        cout += d2
        self.add_module(p + "pool", _pool(spec.pool))
        if spec.pool_proj:
            branches.append((p + "pool", self._unit(p + "pool_proj", cin, spec.pool_proj, 1)))
            cout += spec.pool_proj
        else:
            branches.append((p + "pool",))
            cout += cin
        return Stage(tuple(branches), cin, cout), cout

    # ------------------------------------------------------------------ hook sites

    def blocks(self) -> list[tuple[str, Stage]]:
        """The stages after the stem in order (block_2, block_3a .. block_5b), by their module names."""
        return [(name, getattr(self, name)) for name in self._stages]

    def gsf_sites(self) -> list[tuple[nn.Module, str, int]]:
        """(owner, slot, channels) of the 10 official GSF positions: ``gsf_inception_3a_1x1`` .. ``gsf_inception_5b_1x1``."""
        return [(self, slot, channels) for slot, channels in self._gsf_sites]

    def adafuse_sites(self) -> list[tuple[str, Stage]]:
        """(official name, stage) of the ten Inception blocks AdaFuse fuses: ``3a`` (policy ``policy_net_3a``) ..
        ``5b``; each stage's ``in_channels`` feed the policy, its ``out_channels`` are fused."""
        return [(spec.name, getattr(self, f"block_{spec.name}")) for spec in INCEPTION_BLOCKS]

    def fusion_layers(self, block: str) -> tuple[list[tuple[int, str | None]], list[str]]:
        """What AdaFuse's decisions on stage ``block``'s output channels can save (``cost.FusePricing``):
        the producers, in channel order ``(channels, last conv of the branch)`` (``None``: a reduction block's
        pooled input, no conv), and the readers: the convs of the next stage that read its output (the first
        conv of every branch; the pool branch's projection reads the pooled output, zero where the input is);
        none after 5b."""
        names = [name for name, _ in self.blocks()]
        stage = getattr(self, block)
        producers: list[tuple[int, str | None]] = []
        for branch in stage.branches:
            last = branch[-1]
            layer = getattr(self, last)
            if isinstance(layer, nn.Conv2d):
                producers.append((layer.out_channels, last))
            else:  # the pooled block input, concatenated as it is
                producers.append((stage.in_channels, None))
        readers: list[str] = []
        following = names.index(block) + 1
        if following < len(names):
            for branch in getattr(self, names[following]).branches:
                convs = [n for n in branch if isinstance(getattr(self, n), nn.Conv2d)]
                readers += convs[:1]  # a reduction block's bare pool branch has none
        return producers, readers

    def shift_sites(self) -> list[tuple[nn.Module, str]]:
        """(owner, slot) where TSM's 'block' placement shifts: the input of every stage but the image's."""
        return [(stage, "shift") for _, stage in self.blocks()]

    # ------------------------------------------------------------------ forward

    def _layer(self, name: str, x: torch.Tensor, t: int) -> torch.Tensor:
        layer = getattr(self, name)
        if not isinstance(layer, nn.Conv2d):  # a pool
            return layer(x)  # type: ignore[no-any-return]
        x = layer(x)
        gsf = self._modules.get(f"gsf_{name}")
        if gsf is not None:
            x = gsf(x, t)
        # the official in-place ReLU rectifies the BN output every later reader gets: the same values, out of place
        return torch.relu(getattr(self, f"{name}_bn")(x))

    def _branch(self, branch: Branch, x: torch.Tensor, t: int) -> torch.Tensor:
        for name in branch:
            x = self._layer(name, x, t)
        return x

    def run_stage(self, stage: Stage, x: torch.Tensor, t: int) -> torch.Tensor:
        """One stage on (N*T, C, H, W): shift (if any), then every branch on the same input, concatenated, then
        AdaFuse (if any) on the result given the stage input."""
        if stage.shift is not None:
            x = stage.shift(x, t)  # (N*T, C, H, W)
        outs = [self._branch(b, x, t) for b in stage.branches]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)  # (N*T, sum of branch channels, H', W')
        if stage.adafuse is not None:
            out = stage(out, x, t)  # (N*T, C', H', W')
        return out

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            h, w = int(x.shape[-2]), int(x.shape[-1])
            if not (valid_size(h) and valid_size(w)):
                raise EdgefuseError(
                    f"BN-Inception takes frames of 32k-1 .. 32k+6 px (e.g. 64, 128, 224), got {h}x{w}: its reduction "
                    "blocks' conv and pool branches disagree in size otherwise; resize or crop to such a size")
        x = self._branch(self.stem, x, t)  # (N*T, 64, H/4, W/4)
        for _, stage in self.blocks():
            x = self.run_stage(stage, x, t)  # (N*T, C', H', W'): 192 x H/8 after block_2 .. 1024 x H/32 after 5b
        x = self.global_pool(x)  # (N*T, 1024, 1, 1)
        return torch.flatten(x, 1)  # (N*T, 1024)


def build() -> BNInception:
    return BNInception()
