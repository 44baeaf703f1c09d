"""ImageNet initialisation of BN-Inception and InceptionV3 from the files the research code downloads, in the
layouts they are published in (what each file holds, and where that is established: the docstring of
``load_imagenet_backbone``).

The layouts are rebuilt from the official networks' own state-dict manifests (tests/official/fixtures: GSF's
BN-Inception and InceptionV3, TSM's BN-Inception), not from edgefuse's backbones: the ``base_model`` keys less the
GSF modules and BN counters, plus the 1000-way ImageNet classifier, with random values; yjxiong's Caffe-converted
files store the BatchNorm tensors as (1, C). Small inputs keep it fast (BN-Inception at 64 px, InceptionV3 at 69).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from conftest import OFFICIAL, load_fixture

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, load_imagenet_backbone
from edgefuse.models.checkpoint import imagenet_filter_fn

BASE = "module.base_model."
SIZE = {"bninception": 64, "inceptionv3": 69}  # the smallest sizes each network runs at (64: 32k-1 .. 32k+6)
# layout -> (official manifest it is rebuilt from, BN module suffix, classifier, feature dim, BN tensors (1, C))
LAYOUTS = {
    "bn_inception-9f5701afb96c8044.pth": ("gsf_bninception", "_bn", "fc", 1024, True),  # GSF, TSN
    "BNInception-9baff57459f5a1744.pth": ("tsn_bninception", "_bn", "fc", 1024, False),  # TSM, AdaFuse
    "inceptionv3-cuhk-0e09b300b493bc74c.pth": ("gsf_inceptionv3", "_batchnorm", "top_cls_fc", 2048, True),  # GSF
}
YJX, TSM, CUHK = LAYOUTS


def _value(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return torch.rand(shape, generator=gen) + 0.5
    if leaf in ("running_mean", "bias"):
        return torch.randn(shape, generator=gen) * 0.1
    if len(shape) == 1:  # BN gamma
        return torch.rand(shape, generator=gen) * 0.4 + 0.8
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    return torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5


def published(layout: str, *, counters: bool = False, fc_bias_2d: bool = False) -> dict[str, torch.Tensor]:
    """A state dict in ``layout``: every key and shape as the file has it, random values (the same for a key in
    every layout, so BN-Inception's two files hold the same network). A new dict of shared, unwritten tensors."""
    return dict(_published(layout, counters, fc_bias_2d))


@lru_cache(maxsize=8)
def _published(layout: str, counters: bool, fc_bias_2d: bool) -> dict[str, torch.Tensor]:
    fixture, bn, classifier, features, bn_2d = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for e in load_fixture(fixture)["entries"]:
        key = e["key"].removeprefix(BASE)
        if not e["key"].startswith(BASE) or key.startswith("gsf_") or key.endswith("num_batches_tracked"):
            continue
        t = _value(key, tuple(e["shape"]), gen)
        is_bn = key.rsplit(".", 1)[0].endswith(bn)
        out[key] = t.unsqueeze(0) if is_bn and bn_2d else t  # Caffe's converter: (1, C)
        if counters and is_bn and key.endswith(".running_var"):
            out[key.replace(".running_var", ".num_batches_tracked")] = torch.tensor(7)
    out[f"{classifier}.weight"] = _value("fc.weight", (1000, features), gen)
    out[f"{classifier}.bias"] = _value("fc.bias", (1, 1000) if fc_bias_2d else (1000,), gen)
    return out


def _torchvision(name: str) -> dict[str, torch.Tensor]:
    keys = json.loads((OFFICIAL / "torchvision_keys.json").read_text())["models"][name]
    gen = torch.Generator().manual_seed(1)
    return {k: (_value(k, tuple(s), gen) if s else torch.tensor(0)) for k, s in keys}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each layout saved once, as torch.save writes it; yjxiong's files predate PyTorch 1.6: legacy container."""
    d = tmp_path_factory.mktemp("imagenet")
    out = {}
    for layout in LAYOUTS:
        out[layout] = d / layout
        torch.save(published(layout), out[layout], _use_new_zipfile_serialization=layout == TSM)
    out["resnet50-0676ba61.pth"] = d / "resnet50-0676ba61.pth"
    torch.save(_torchvision("resnet50"), out["resnet50-0676ba61.pth"])
    return out


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = "inceptionv3" if name.endswith("inceptionv3") else "bninception"
    return create_model(name, num_classes=5, num_segments=2, input_size=SIZE[backbone]).eval()


def _clip(model: torch.nn.Module) -> torch.Tensor:
    s = model.config.input_size
    return torch.randn(1, 2, 3, s, s, generator=torch.Generator().manual_seed(2))


def _loads(name: str, path: Path, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loads ``path`` into a fresh ``name``; checks what landed and what was kept; returns the model's state."""
    model = _model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _clip(model)
    with torch.no_grad():
        y0 = model(x)
    load_imagenet_backbone(model, path)
    after = model.state_dict()
    for k, v in sd.items():  # every file tensor but the classifier, in the backbone, squeezed as GSF does
        if k.startswith(("fc.", "top_cls_fc.")) or k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(after[f"backbone.{k}"], torch.squeeze(v, dim=0)), k
    kept = [k for k in after if not k.startswith("backbone.") or "gsf" in k]  # classifier, GSF modules
    assert kept and all(torch.equal(after[k], before[k]) for k in kept)
    if "gsf" in name:
        assert any("gsf" in k for k in kept)
    with torch.no_grad():
        y1 = model(x)
    assert torch.isfinite(y1).all() and not torch.allclose(y0, y1)
    return after


@pytest.mark.parametrize("name,layout", [
    ("tsn_bninception", YJX), ("gsf_bninception", YJX), ("tsm_bninception", TSM), ("gsf_inceptionv3", CUHK),
])
def test_published_file_loads(name: str, layout: str, files) -> None:
    after = _loads(name, files[layout], published(layout))
    bn = "inception_5b_pool_proj_bn" if layout != CUHK else "mixed_10_tower_2_conv_batchnorm"
    counter = after[f"backbone.{bn}.num_batches_tracked"]
    assert counter.shape == () and counter.item() == 0  # absent from the file: the model's own value


@pytest.mark.slow  # suite time; runs with -m slow
def test_gsf_and_tsm_files_give_the_same_backbone(files) -> None:
    """yjxiong's (1, C) file and TSM's (C,) copy of the same weights load into the same network."""
    a = _model("tsn_bninception")
    b = _model("tsn_bninception")
    load_imagenet_backbone(a, files[YJX])
    load_imagenet_backbone(b, files[TSM])
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("counters,fc_bias_2d", [(True, False), (False, True)])
@pytest.mark.slow  # suite time; runs with -m slow
def test_tolerated_variants(counters: bool, fc_bias_2d: bool, tmp_path) -> None:
    """What the evidence leaves open: TSM's copy with BN counters (kept from the file), a (1, 1000) fc.bias."""
    layout = TSM if counters else YJX
    sd = published(layout, counters=counters, fc_bias_2d=fc_bias_2d)
    path = tmp_path / layout
    torch.save(sd, path)
    after = _loads("tsn_bninception", path, sd)
    assert after["backbone.conv1_7x7_s2_bn.num_batches_tracked"].item() == (7 if counters else 0)


def test_filter_is_pure_and_squeezes_only_what_the_backbone_expects_squeezed() -> None:
    meta = {k: torch.empty(v.shape, device="meta") for k, v in published(YJX).items()}  # shapes only
    with torch.device("meta"):
        expected = {k: v.shape for k, v in create_model("tsn_bninception").backbone.state_dict().items()}
        resnet = {k: v.shape for k, v in create_model("tsn_resnet18").backbone.state_dict().items()}
    shapes = {k: v.shape for k, v in meta.items()}
    out = imagenet_filter_fn(meta, "bninception", expected)
    assert {k: v.shape for k, v in meta.items()} == shapes  # the input is untouched
    assert "fc.weight" not in out and "fc.bias" not in out
    assert out["conv1_7x7_s2_bn.running_mean"].shape == (64,)  # (1, 64) -> (64,)
    assert out["conv1_7x7_s2.weight"].shape == (64, 3, 7, 7) and out["conv1_7x7_s2.bias"].shape == (64,)
    assert {k: v.shape for k, v in out.items()} == {k: v for k, v in expected.items()
                                                    if "num_batches_tracked" not in k}
    odd = {"unknown": torch.empty(1, 64), "conv1_7x7_s2.bias": torch.empty(1, 1, 64)}
    assert {k: v.shape for k, v in imagenet_filter_fn(odd, "bninception", expected).items()} == {
        "unknown": (1, 64), "conv1_7x7_s2.bias": (1, 1, 64)}  # unknown keys, two leading 1s: as they are
    tv = imagenet_filter_fn({"bn1.weight": torch.empty(1, 64), "fc.weight": torch.empty(1000, 512)}, "resnet18", resnet)
    assert {k: v.shape for k, v in tv.items()} == {"bn1.weight": (1, 64)}  # torchvision files are never reshaped
    cuhk = {"top_cls_fc.weight": torch.empty(1000, 2048), "fc.weight": torch.empty(1, 8)}
    assert list(imagenet_filter_fn(cuhk, "inceptionv3", {})) == ["fc.weight"]  # its classifier is top_cls_fc


def _model_resnet() -> torch.nn.Module:
    return create_model("tsn_resnet18", num_classes=5)


def _error(name: str, path: Path) -> str:
    with pytest.raises(EdgefuseError) as e:
        load_imagenet_backbone(_model(name), path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    return msg


@pytest.mark.parametrize("name,layout,says", [
    ("tsn_bninception", "resnet50-0676ba61.pth",
     ("not the published BN-Inception ImageNet weights: it holds ResNet-50 weights (use tsn_resnet50 for them); "
      "tsn_bninception takes bn_inception-9f5701afb96c8044.pth (GSF, TSN) or BNInception-9baff57459f5a1744.pth")),
    ("gsf_bninception", CUHK, "it holds InceptionV3 weights (use gsf_inceptionv3 for them)"),
    ("tsm_bninception", CUHK, "it holds InceptionV3 weights (edgefuse has no tsm_inceptionv3 model for them)"),
    ("gsf_inceptionv3", YJX,
     ("not the published InceptionV3 ImageNet weights: it holds BN-Inception weights (use gsf_bninception for "
      "them); gsf_inceptionv3 takes inceptionv3-cuhk-0e09b300b493bc74c.pth (GSF)")),
    ("tsn_resnet18", TSM,
     ("not torchvision ImageNet weights of resnet18 (width 1.0): it holds BN-Inception weights (use "
      "tsn_bninception for them); tsn_resnet18 takes torchvision's resnet18 weights")),
])
def test_another_backbone_is_named(name: str, layout: str, says: str, files) -> None:
    model = create_model(name) if "resnet" in name else _model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(EdgefuseError) as e:
        load_imagenet_backbone(model, files[layout])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{files[layout]}: ") and says in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_an_edited_file_names_its_keys(tmp_path) -> None:
    sd = published(YJX)
    del sd["inception_4a_1x1_bn.running_var"]
    sd["inception_4a_1x1.bias"] = torch.zeros(2, 224)
    path = tmp_path / "edited.pth"
    torch.save(sd, path)
    msg = _error("tsn_bninception", path)
    assert ("not the published BN-Inception ImageNet weights: 1 with other shapes (inception_4a_1x1.bias: file "
            "(2, 224) vs model (224,)); 1 missing (inception_4a_1x1_bn.running_var); use bn_inception-") in msg


def test_a_video_checkpoint_is_told(tmp_path) -> None:
    path = tmp_path / "TSM_something_RGB_BNInception.pth.tar"
    torch.save({"state_dict": {f"module.base_model.{k}": v for k, v in published(TSM).items()}}, path)
    assert "it is a video model checkpoint: load it with create_model(name, checkpoint=path)" in _error(
        "tsm_bninception", path)


def test_torchvision_file_without_counters_loads(tmp_path) -> None:
    """torchvision's first ResNet files (resnet18-5c106cde.pth) predate num_batches_tracked too."""
    sd = {k: v for k, v in _torchvision("resnet18").items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(sd, path)
    model = _model_resnet()
    load_imagenet_backbone(model, path)
    assert torch.equal(model.backbone.conv1.weight, sd["conv1.weight"])
