"""Backbones carry torchvision's parameter names, so ImageNet weights load as they are."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import OFFICIAL

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, load_imagenet_backbone
from edgefuse.models.backbones import create_backbone

TORCHVISION = json.loads((OFFICIAL / "torchvision_keys.json").read_text())["models"]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_state_dict_names_and_shapes_equal_torchvision(name: str) -> None:
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in create_backbone(name).state_dict().items()}
    theirs = {k: s for k, s in TORCHVISION[name] if not k.startswith(("fc.", "classifier."))}
    assert ours == theirs


def _torchvision_state_dict(name: str, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(s, generator=gen) if s else torch.tensor(0)) for k, s in TORCHVISION[name]}


@pytest.mark.parametrize("model", ["gsf_resnet18", "tsm_mobilenetv2", "adafuse_tsm_resnet18"])
def test_imagenet_weights_load_into_temporal_models(model: str, tmp_path) -> None:
    m = create_model(model, num_classes=5)
    sd = _torchvision_state_dict(m.config.backbone)
    path = tmp_path / "imagenet.pth"
    torch.save(sd, path)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    load_imagenet_backbone(m, path)
    after = m.state_dict()
    assert torch.equal(after["backbone.conv1.weight" if "resnet" in model else "backbone.features.0.0.weight"],
                       sd["conv1.weight" if "resnet" in model else "features.0.0.weight"])
    temporal = [k for k in after if ".gsf." in k or ".adafuse." in k]
    assert all(torch.equal(after[k], before[k]) for k in temporal)
    assert torch.equal(after["fc.weight"], before["fc.weight"])


def test_imagenet_weights_of_another_backbone(tmp_path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(_torchvision_state_dict("resnet50"), path)
    with pytest.raises(EdgefuseError, match="not torchvision ImageNet weights of resnet18"):
        load_imagenet_backbone(create_model("tsn_resnet18"), path)
