"""Checkpoint formats, strict loading and the errors a user sees for bad checkpoints."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch
from conftest import load_fixture
from official.synth import synth_input, synth_state_dict
from test_official_equivalence import CONTAINERS

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name in ("adafuse_tsn_r18", "tsm_r18", "gsf_r50_ratio25", "tsm_mobilenetv2"):
        fx = load_fixture(name)
        path = d / f"{name}.pth.tar"
        torch.save(CONTAINERS[fx["container"]](synth_state_dict(fx["entries"])), path)
        out[name] = path
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefuse", *args], capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_sources_are_detected(ckpts) -> None:
    assert read_checkpoint(ckpts["adafuse_tsn_r18"]).source == "adafuse"
    assert read_checkpoint(ckpts["tsm_r18"]).source == "tsm"
    assert read_checkpoint(ckpts["gsf_r50_ratio25"]).source == "gsf"
    ck = read_checkpoint(ckpts["tsm_r18"])
    assert ck.num_classes == 174 and len(ck.sha256) == 64


def test_truncated_checkpoint(ckpts, tmp_path) -> None:
    bad = tmp_path / "truncated.pth"
    data = ckpts["tsm_r18"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgefuseError, match="truncated or corrupt"):
        create_model("tsm_resnet18", checkpoint=bad)
    assert_one_error_line(run_cli("inspect", "tsm_resnet18", "--checkpoint", str(bad)), str(bad), "truncated")


def test_checkpoint_of_another_architecture(ckpts) -> None:
    with pytest.raises(EdgefuseError, match="official GSF .* cannot load into tsm_resnet50"):
        create_model("tsm_resnet50", checkpoint=ckpts["gsf_r50_ratio25"])
    proc = run_cli("inspect", "gsf_resnet18", "--checkpoint", str(ckpts["adafuse_tsn_r18"]))
    assert_one_error_line(proc, "official AdaFuse", "adafuse")


def test_checkpoint_of_another_depth(ckpts) -> None:
    with pytest.raises(EdgefuseError, match="backbone differs from resnet50"):
        create_model("tsm_resnet50", checkpoint=ckpts["tsm_r18"])


def test_adafuse_variant_mismatch(ckpts) -> None:
    with pytest.raises(EdgefuseError, match="AdaFuse variant differs"):
        create_model("adafuse_tsm_last_resnet18", checkpoint=ckpts["adafuse_tsn_r18"])


def test_wrong_num_classes(ckpts) -> None:
    with pytest.raises(EdgefuseError, match="checkpoint has 174 classes, the model 10: pass --num-classes 174"):
        create_model("tsm_resnet18", num_classes=10, checkpoint=ckpts["tsm_r18"])
    proc = run_cli("inspect", "tsm_resnet18", "--num-classes", "10", "--checkpoint", str(ckpts["tsm_r18"]))
    assert_one_error_line(proc, "--num-classes 174")


def test_wrong_gsf_ratio(ckpts) -> None:
    with pytest.raises(EdgefuseError, match="GSF channel ratio differs"):
        create_model("gsf_resnet50", checkpoint=ckpts["gsf_r50_ratio25"])
    assert create_model("gsf_resnet50", ratio=25, checkpoint=ckpts["gsf_r50_ratio25"]).config.options.ratio == 25


class Args(argparse.Namespace):
    pass


@pytest.mark.parametrize("payload", ["namespace", "module"])
def test_pickle_that_is_not_plain_weights(tmp_path, payload: str) -> None:
    path = tmp_path / f"{payload}.pth"
    if payload == "namespace":  # research code often saves its argparse args beside the weights
        torch.save({"state_dict": {"w": torch.zeros(1)}, "args": Args(lr=0.1)}, path)
    else:  # a whole pickled model object
        torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(EdgefuseError, match="not a plain-weights checkpoint"):
        read_checkpoint(path)
    assert_one_error_line(run_cli("inspect", "tsn_resnet18", "--checkpoint", str(path)), "weights_only=True", "re-save")


def test_missing_and_unrecognised_files(tmp_path) -> None:
    with pytest.raises(EdgefuseError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.pth")
    odd = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, odd)
    with pytest.raises(EdgefuseError, match="unrecognised checkpoint layout"):
        read_checkpoint(odd)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(EdgefuseError, match="corrupt"):
        read_checkpoint(text)


def test_old_checkpoint_without_bn_counters_loads(ckpts, tmp_path) -> None:
    fx = load_fixture("tsm_r18")
    sd = {k: v for k, v in synth_state_dict(fx["entries"]).items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save({"state_dict": sd}, path)
    a = create_model("tsm_resnet18", checkpoint=path)
    b = create_model("tsm_resnet18", checkpoint=ckpts["tsm_r18"])
    x = synth_input([1, 8, 3, 32, 32])
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_edgefuse_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("gsf_mobilenetv2", num_classes=7, num_segments=4)
    path = save_checkpoint(model, tmp_path / "m.pth", class_names=[f"c{i}" for i in range(7)])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    again = create_model("gsf_mobilenetv2", num_segments=4, checkpoint=path)
    assert again.config.num_classes == 7
    x = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(EdgefuseError, match="saved from gsf_mobilenetv2, not tsm_mobilenetv2"):
        create_model("tsm_mobilenetv2", checkpoint=path)


def test_official_mobilenetv2_names_are_mapped(ckpts) -> None:
    """The TSM repo's MobileNetV2 numbers layers flat (conv.0 ... conv.7); edgefuse uses torchvision's names."""
    model = create_model("tsm_mobilenetv2", checkpoint=ckpts["tsm_mobilenetv2"])
    raw = read_checkpoint(ckpts["tsm_mobilenetv2"]).state_dict
    assert torch.equal(model.backbone.features[3].conv[1][0].weight, raw["module.base_model.features.3.conv.3.weight"])
    assert torch.equal(model.backbone.features[3].conv[0][0].weight, raw["module.base_model.features.3.conv.0.net.weight"])
