"""AdaFuse-TSN on BN-Inception (``adafuse_tsn_bninception``) reproduces the official ``--arch AdaBNInc`` network.

The fixture (tests/official/README.md, "Inception" sections) holds the official state-dict manifest of
``bn_archs/bn_inception_ada.BNInceptionAda`` inside ``TSN_Gate``, the logits it computed on the synth contract
weights and on the ``gain_variant`` weights (BN gammas x1.8: with the contract weights BN-Inception's logits
barely depend on the input), and the exact skip / reuse / keep counts of every block's deterministic decisions.
Here the weights are rebuilt, saved in the official container, detected, converted, loaded strictly and run.
No released checkpoint exists for this configuration: the layout is the one the official code saves.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import load_fixture
from official.synth import synth_input, synth_state_dict

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, get_entry, read_checkpoint, resolve_config
from edgefuse.models.cost import FusePricing, adafuse_cost, adafuse_macs, decision_savings, model_cost
from edgefuse.models.layers import ACTIONS, AdaFuse

NAME = "adafuse_tsn_bninception"
BLOCKS = ("3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


@pytest.fixture(scope="module")
def fx() -> dict:
    return load_fixture(NAME)


def official_weights(fx: dict, variant: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[dict]]:
    """The official state dict of ``variant`` ('logits': contract weights, 'gain_variant'), its logits and the
    official decision counts per block."""
    sd = synth_state_dict(fx["entries"])
    if variant == "logits":
        return sd, torch.tensor(fx["logits"]), fx["block_decisions"]
    gain = fx["gain_variant"]
    sd = {k: v * gain["factor"] if k.endswith(".weight") and v.dim() == 1 and v.is_floating_point() else v
          for k, v in sd.items()}
    return sd, torch.tensor(gain["logits"]), gain["block_decisions"]


@pytest.fixture(scope="module")
def checkpoints(fx, tmp_path_factory) -> dict:
    """Both variants in the container main_gate.py saves (``{'epoch', 'arch', 'state_dict', 'best_prec1'}``)."""
    d = tmp_path_factory.mktemp("adabninc")
    out = {}
    for variant in ("logits", "gain_variant"):
        sd, ref, decisions = official_weights(fx, variant)
        path = d / f"{variant}.pth.tar"
        torch.save({"epoch": 50, "arch": "AdaBNInc", "state_dict": sd, "best_prec1": 0.0}, path)
        out[variant] = (path, ref, decisions)
    return out


@pytest.mark.parametrize("variant", ["logits", "gain_variant"])
def test_reproduces_official_logits_and_decisions(fx, checkpoints, variant: str) -> None:
    """Logits within 1e-5 relative; every block's decisions counted exactly as the official run made them (the
    fixture records no decision closer to a tie than 1e-5 in log-probability, and none that float64 changes)."""
    path, ref, official = checkpoints[variant]
    assert read_checkpoint(path).source == "adafuse"
    model = create_model(NAME, checkpoint=path)
    x = synth_input(fx["input"]["shape"], fx["input"]["seed"])  # (2, 8, 3, 224, 224)
    fuses = dict(model.adafuse_modules())
    for f in fuses.values():
        f.record = True
    with torch.no_grad():
        logits = model(x)
    err = (logits - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), f"max abs error {err:.3e} of {ref.abs().max().item():.3g}"
    assert torch.equal(logits.argmax(1), ref.argmax(1))
    assert [b["block"] for b in official] == [f"inception_{b}" for b in BLOCKS]
    for block in official:
        mask = fuses[block["block"].replace("inception_", "block_")].last_mask  # (N, T, C, 3)
        assert mask is not None and mask.shape[2] == block["channels"]
        counts = [int(mask[..., i].sum()) for i in range(len(ACTIONS))]
        assert counts == block["counts"], block["block"]


def test_state_dict_and_policies_are_the_official_layout(fx) -> None:
    """Every official key maps to one of the model's with its shape (``policy_net_3a.gate_fc0`` ->
    ``block_3a.adafuse.fc0``); the ten policies are unshared, hidden 196608 // the block's output channels."""
    from edgefuse.models.adafuse import checkpoint_filter_fn

    model = create_model(NAME)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = checkpoint_filter_fn({e["key"]: torch.empty(e["shape"]) for e in fx["entries"]}, model)
    assert ours == {k: tuple(v.shape) for k, v in theirs.items()}
    fuses = dict(model.adafuse_modules())
    assert list(fuses) == [f"block_{b}" for b in BLOCKS]
    for b in BLOCKS:
        spec, f = fx["official_config"]["policy_nets"][f"policy_net_{b}"], fuses[f"block_{b}"]
        assert [list(f.fc0.weight.shape), list(f.fc1.weight.shape), f.width] == [
            spec["gate_fc0"], spec["gate_fc1"], spec["num_channels"]]
        assert f.fc0.out_features == 196608 // f.width
    assert len({id(f.fc0) for f in fuses.values()}) == len(BLOCKS)
    cfg = model.config
    assert (cfg.channel_order, cfg.mean, cfg.std, cfg.pixel_range, cfg.input_size) == (
        "BGR", (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), 255.0, 224)


def test_parameters_macs_and_pricing_equal_the_official_figures(figures) -> None:
    """Parameters exactly; dense MACs per frame = thop's convolutions (with bias terms) + linear layers of the
    official model (policies included); the convolutions of blocks 3a..5b sum to the table
    ``BNInceptionAda.count_flops`` prices the decisions with."""
    with torch.device("meta"):
        model = get_entry(NAME).builder(resolve_config(NAME))
    assert sum(p.numel() for p in model.parameters()) == figures["params"][NAME]
    thop = figures["thop_breakdown_per_frame"]["adafuse_bninc_get_gflops_params_model_174"]["by_type"]
    cost = model_cost(model, frames=8, size=224)
    assert cost.macs_per_frame == thop["Conv2d_with_bias"] + thop["Linear"]
    blocks = sum(lc.macs for lc in cost.layers if lc.name.startswith("backbone.inception_")) / 8
    assert blocks == figures["gmacs_per_frame"]["adafuse_bninc_count_flops_table"]["value"] * 1e9


def test_decisions_are_priced_per_branch() -> None:
    """A fused channel saves its branch's last conv (none for a reduction block's pooled channels); a skipped
    one also the next block's first convs (none after 5b), as AdaFuse's compute_gflops_by_mask prices AdaBNInc."""
    with torch.device("meta"):
        model = get_entry(NAME).builder(resolve_config(NAME))
    macs = adafuse_macs(model, 8, 224)
    a3, c3, b5 = macs.blocks["block_3a"], macs.blocks["block_3c"], macs.blocks["block_5b"]
    # 3a at 28x28: 1x1 64 <- 192, 3x3 64 <- 64, double_3x3_2 96 <- 96, pool_proj 32 <- 192 (bias counted)
    assert a3.up == ((64, 784 * 193), (64, 784 * (64 * 9 + 1)), (96, 784 * (96 * 9 + 1)), (32, 784 * 193))
    assert a3.down == 4 * 784 * 64 * 257 / 256  # 3b's 1x1, 3x3_reduce, double_3x3_reduce, pool_proj (64 each)
    assert c3.up[-1] == (320, 0.0) and c3.channels == 576
    assert b5.down == 0
    skip_all = torch.zeros(1, 8, 256, 3)
    skip_all[..., 0] = 1
    assert decision_savings(skip_all, a3) == pytest.approx(8 * (sum(n * m for n, m in a3.up) + 256 * a3.down))


def test_adafuse_cost_on_a_clip() -> None:
    """``edgefuse inspect``'s accounting runs on BN-Inception: one row per Inception block, savings in (0, 1)."""
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=10).eval()
    for _, f in model.adafuse_modules():
        torch.nn.init.normal_(f.fc1.weight, 0, 0.05)  # decisions that are not ties
    cost = adafuse_cost(model, torch.randn(2, 4, 3, 64, 64))
    assert [d.block for d in cost.decisions] == [f"block_{b}" for b in BLOCKS]
    assert 0 < cost.saving < 1
    assert isinstance(cost.decisions[0].fractions["skip"], float)


def test_near_miss_checkpoints_are_one_clear_error(checkpoints, fx, tmp_path) -> None:
    path = checkpoints["logits"][0]
    with pytest.raises(EdgefuseError, match="AdaFuse BN-Inception checkpoint .* backbone differs from resnet50; "
                                            "use adafuse_tsn_bninception"):
        create_model("adafuse_tsn_resnet50", checkpoint=path)
    with pytest.raises(EdgefuseError, match="cannot load into gsf_bninception .* use adafuse_tsn_bninception"):
        create_model("gsf_bninception", checkpoint=path)
    with pytest.raises(EdgefuseError, match="pass --num-classes 174"):
        create_model(NAME, num_classes=10, checkpoint=path)
    tsn = tmp_path / "tsn_bninception.pth.tar"
    torch.save({"epoch": 1, "arch": "BNInception", "state_dict": synth_state_dict(load_fixture(
        "tsn_bninception")["entries"])}, tsn)
    with pytest.raises(EdgefuseError, match="TSM-repository BN-Inception checkpoint .* use tsm_bninception or "
                                            "tsn_bninception"):
        create_model(NAME, checkpoint=tsn)
    proc = subprocess.run([sys.executable, "-m", "edgefuse", "inspect", "tsn_bninception", "--checkpoint", str(path)],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(path) in lines[0] and "adafuse_tsn_bninception" in lines[0]


def test_exports_dynamic_and_stream_graphs_not_static(tmp_path) -> None:
    """The in-graph policy exports (ONNX Runtime matches PyTorch, one decision tensor per Inception block, priced
    per branch in the metadata); folding is for ResNet blocks and says so before any work."""
    from edgefuse.export import ExportConfig, export
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.validate.policy import realized_macs

    out = tmp_path / "ada.onnx"
    report = export(ExportConfig(model=NAME, output=out, size=64, segments=4, policy="dynamic"))
    assert report.parity[0].top1_agreement == 1.0 and report.parity[0].max_rel <= 1e-4
    meta = read_metadata(out)
    blocks = meta["adafuse_macs"]["blocks"]
    assert list(blocks) == [f"block_{b}" for b in BLOCKS] and len(blocks["block_3c"]["up"]) == 3
    keep = {f"/backbone/block_{b}/adafuse/Cast_output_0": np.eye(3, dtype=np.float32)[
        np.full((4, FusePricing.from_meta(blocks[f"block_{b}"], 0).channels), 2)] for b in BLOCKS}
    assert realized_macs(keep, meta["adafuse_macs"], 1)[0] == meta["adafuse_macs"]["dense_per_clip"]
    clips = tmp_path / "clips.npz"
    np.savez(clips, clips=np.zeros((2, 4, 3, 64, 64), np.float32))
    with pytest.raises(EdgefuseError, match="folds AdaFuse into ResNet blocks only, not bninception's; export it "
                                            "with --policy dynamic"):
        export(ExportConfig(model=NAME, output=tmp_path / "static.onnx", size=64, segments=4, policy="static",
                            policy_clips=clips))
    assert not (tmp_path / "static.onnx").exists()
