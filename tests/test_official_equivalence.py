"""edgefuse reproduces the official implementations' logits on their own checkpoint layouts.

Each fixture holds the key/shape manifest of an official model's state dict (as
saved by the official training code, DataParallel 'module.' prefix included) and
the logits the official code computed (AdaFuse with argmax instead of Gumbel
sampling) for deterministic weights; see tests/official/README.md. Here the weights
are rebuilt from the manifest, wrapped in the official checkpoint container, saved
to disk, loaded through edgefuse's converters, and run.
"""
from __future__ import annotations

import pytest
import torch
from conftest import load_fixture
from official.synth import synth_input, synth_state_dict

from edgefuse.models import create_model

CASES = {
    # fixture: (edgefuse model, options)
    "adafuse_tsn_r50": ("adafuse_tsn_resnet50", {}),
    "adafuse_tsm_r50": ("adafuse_tsm_resnet50", {}),
    "adafuse_tsm_last_r50": ("adafuse_tsm_last_resnet50", {}),
    "adafuse_tsn_r18": ("adafuse_tsn_resnet18", {}),
    "gsf_r50": ("gsf_resnet50", {}),
    "gsf_r50_ratio25": ("gsf_resnet50", {"ratio": 25}),
    "tsm_r50": ("tsm_resnet50", {}),
    "tsm_r18": ("tsm_resnet18", {}),
    "tsn_r50": ("tsn_resnet50", {}),
    "tsm_mobilenetv2": ("tsm_mobilenetv2", {}),
    "tsn_mobilenetv2": ("tsn_mobilenetv2", {}),
}

CONTAINERS = {
    "adafuse": lambda sd: {"state_dict": sd},
    "gsf": lambda sd: {"model_state_dict": sd, "epoch": 50, "arch": "resnet50", "best_prec1": 0.0},
    "tsm": lambda sd: {"epoch": 50, "arch": "resnet50", "state_dict": sd, "best_prec1": 0.0},
}


def official_checkpoint(fx: dict, tmp_path) -> str:
    sd = synth_state_dict(fx["entries"])
    path = tmp_path / f"{fx['name']}.pth.tar"
    torch.save(CONTAINERS[fx["container"]](sd), path)
    return str(path)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_reproduces_official_logits(fixture: str, tmp_path) -> None:
    fx = load_fixture(fixture)
    name, options = CASES[fixture]
    model = create_model(name, checkpoint=official_checkpoint(fx, tmp_path), **options)
    assert model.config.num_classes == fx["num_classes"]  # taken from the checkpoint
    clips = synth_input(fx["input"]["shape"], fx["input"]["seed"])
    with torch.no_grad():
        logits = model(clips)
    ref = torch.tensor(fx["logits"])
    err = (logits - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), f"max abs error {err:.3e}"
    assert torch.equal(logits.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("fixture", [f for f in sorted(CASES) if f.startswith("adafuse")])
def test_reproduces_official_decisions(fixture: str, tmp_path) -> None:
    """Per block, the fractions of skip/reuse/keep equal what the official policy chose."""
    from edgefuse.models.cost import adafuse_cost

    fx = load_fixture(fixture)
    name, options = CASES[fixture]
    model = create_model(name, checkpoint=official_checkpoint(fx, tmp_path), **options)
    cost = adafuse_cost(model, synth_input(fx["input"]["shape"], fx["input"]["seed"]))
    ours = {d.block: d.fractions for d in cost.decisions}
    for ref in fx["block_decisions"]:
        got = ours.get(ref["block"], {"skip": 0.0, "reuse": 0.0, "keep": 1.0})  # no policy: all keep
        for action in ("skip", "reuse", "keep"):
            assert got[action] == pytest.approx(ref[action], abs=1e-9), (ref["block"], action)


def test_fixture_input_is_stable() -> None:
    """The seeded input the fixtures were recorded on is still what torch generates."""
    x = synth_input([2, 8, 3, 64, 64], 0)
    assert x.shape == (2, 8, 3, 64, 64)
    assert x[0, 0, 0, 0, :3].tolist() == pytest.approx([-1.1258398, -1.1523602, -0.2505786], abs=1e-6)
