"""The pretrained tags that ship with edgefuse: their checkpoints reach the accuracy recorded in
the manifest (models/weights/pretrained.json) on the regenerated val split of ``edgefuse synth``,
and the figures the tags promise hold."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgefuse import clips
from edgefuse.export.fold import ENGINE_CHANNEL_MULTIPLE, fold
from edgefuse.models import create_model, list_pretrained
from edgefuse.models.cost import adafuse_cost
from edgefuse.utils import sha256_file

ENTRIES = list_pretrained()
BY_ARCH = {e.model.split("_resnet")[0]: e for e in ENTRIES}


def test_zoo_ships_tsn_tsm_gsf_and_adafuse_within_20_mb() -> None:
    assert {"tsn", "tsm", "gsf", "adafuse_tsm"} <= set(BY_ARCH), sorted(BY_ARCH)
    total = sum(e.path.stat().st_size for e in ENTRIES)
    assert total <= 20e6
    for e in ENTRIES:
        assert sha256_file(e.path) == e.sha256
        assert e.segments == 8 and e.size == 112 and e.num_classes == 10 and len(e.class_names) == 10
        assert e.trained_with.startswith("edgefuse train ")


def test_zoo_figures_hold() -> None:
    """TSN cannot tell time-reversed classes apart; the temporal models can; AdaFuse saves >= 30 %
    of the MACs within 1 point of its dense counterpart (TSM)."""
    assert BY_ARCH["tsn"].val_within_pair < 0.6
    for arch in ("tsm", "gsf", "adafuse_tsm"):
        assert BY_ARCH[arch].val_top1 > 0.9, arch
    ada, tsm = BY_ARCH["adafuse_tsm"], BY_ARCH["tsm"]
    assert ada.saving_pct >= 30.0
    assert ada.val_top1 >= tsm.val_top1 - 0.01


@pytest.fixture(scope="module")
def val_clips(synth_default: Path) -> tuple[torch.Tensor, torch.Tensor]:
    first = create_model(ENTRIES[0].name, pretrained=True)
    clip_set = clips.open(synth_default / "val.txt", clips.Preprocess.from_model_config(first.config),
                          clips.Sampling(num_segments=8), workers=2, progress=False)
    data, labels, _ = clip_set.stack()
    assert labels is not None and len(labels) == 250
    return data, labels


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_shipped_checkpoint_reaches_its_recorded_accuracy(name: str, val_clips) -> None:  # type: ignore[no-untyped-def]
    entry = next(e for e in ENTRIES if e.name == name)
    model = create_model(name, pretrained=True)
    data, labels = val_clips
    with torch.no_grad():
        logits = torch.cat([model(data[i:i + 50]) for i in range(0, len(data), 50)])  # (250, 10)
    top1 = float((logits.argmax(1) == labels).float().mean())
    # recorded with the FP32 weights at the end of training; the shipped weights are float16
    assert abs(top1 - entry.val_top1) <= 0.012, (top1, entry.val_top1)
    if entry.saving_pct is not None:
        cost = adafuse_cost(model, data)
        assert abs(100 * cost.saving - entry.saving_pct) <= 1.0


def test_refit_brings_the_folded_model_closer_to_its_policy(synth_default: Path, val_clips) -> None:  # type: ignore[no-untyped-def]
    """The zoo's AdaFuse-TSM folded at tau 0.45 on 32 calib clips: with the refit, its top-1 agrees with the policy's
    on clearly more of the 250 val clips (which neither fold saw) than the plan's slice does, at the same MACs."""
    model = create_model(BY_ARCH["adafuse_tsm"].name, pretrained=True)
    calib = clips.open(synth_default / "calib.txt", clips.Preprocess.from_model_config(model.config),
                       clips.Sampling(num_segments=8), num_clips=32, progress=False).stack()[0]
    batches = list(torch.split(calib, 4))
    data, _ = val_clips

    def top1(m: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(data[i:i + 50]).argmax(1) for i in range(0, len(data), 50)])  # (250,)

    policy = top1(model)
    plain = fold(model, batches, tau=0.45, channel_multiple=ENGINE_CHANNEL_MULTIPLE, progress=False, with_refit=False)
    refit = fold(model, batches, tau=0.45, channel_multiple=ENGINE_CHANNEL_MULTIPLE, progress=False)
    assert refit.report.macs.folded == plain.report.macs.folded
    agree_plain = float((top1(plain.model) == policy).float().mean())
    agree_refit = float((top1(refit.model) == policy).float().mean())
    assert agree_refit >= agree_plain + 0.05, (agree_plain, agree_refit)


def test_models_command_shows_the_zoo_figures() -> None:
    out = subprocess.run([sys.executable, "-m", "edgefuse", "models", "synth_*"], capture_output=True, text=True,
                         check=True).stdout
    for e in ENTRIES:
        assert e.name in out and f"{100 * e.val_top1:.1f}%" in out
    data = json.loads(subprocess.run([sys.executable, "-m", "edgefuse", "models", "--json"], capture_output=True,
                                     text=True, check=True).stdout)
    assert {r["name"] for r in data["trained"]} == {e.name for e in ENTRIES}
