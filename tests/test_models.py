"""Every registered model builds and runs forward in eval, deterministically, and traces cleanly."""
from __future__ import annotations

import pytest
import torch

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, list_models

ALL = list_models()
SHAPES = [(1, 8), (2, 16)]
# The whole matrix (every model x both shapes x 112 and 224) takes over 5 minutes on 2 cores:
# the default suite runs every model at (1, 8) x 112 plus the full matrix for a few light
# models; `pytest -m slow` (benchmarks/run_slow_tests.sh) runs the rest.
LIGHT = {"tsm_resnet18", "gsf_mobilenetv2", "adafuse_tsm_resnet18", "tsm_online_mobilenetv2"}


# the Inception networks run at some sizes only (their branches must agree): BN-Inception at 32k-1 .. 32k+6 px,
# GSF's InceptionV3 at 32k+5 .. 32k+12 (its own 229 among them)
SIZES = {"bninception": (128, 224), "inceptionv3": (133, 229)}


def _cases():
    for name in ALL:
        small, large = SIZES.get(name.rsplit("_", 1)[-1], (112, 224))
        for n, t in SHAPES:
            for size in (small, large):
                fast = (n, t, size) == (1, 8, small) or name in LIGHT
                marks = () if fast else (pytest.mark.slow,)
                yield pytest.param(name, n, t, size, id=f"{name}-{n}x{t}-{size}", marks=marks)


@pytest.mark.parametrize("name,n,t,size", list(_cases()))
def test_forward_eval_deterministic(name: str, n: int, t: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, num_segments=t)
    assert not model.training
    x = torch.randn(n, t, 3, size, size)
    with torch.no_grad():
        a = model(x)
        b = model(x)
    assert a.shape == (n, 10)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_registry_covers_required_models() -> None:
    for arch in ("tsn", "tsm", "gsf"):
        for bb in ("resnet18", "resnet50", "mobilenetv2"):
            assert f"{arch}_{bb}" in ALL
    for arch in ("adafuse_tsn", "adafuse_tsm", "adafuse_tsm_last"):
        for bb in ("resnet18", "resnet50"):
            assert f"{arch}_{bb}" in ALL
    assert list_models("gsf_*") == sorted(n for n in ALL if n.startswith("gsf_"))


def test_unknown_model_and_option_are_clear() -> None:
    with pytest.raises(EdgefuseError, match="did you mean tsm_resnet50"):
        create_model("tsm_resnet05")
    with pytest.raises(EdgefuseError, match="has no option ratio"):
        create_model("tsm_resnet18", ratio=25)


FORBIDDEN = ("aten::index_put", "aten::scatter", "aten::copy_", "aten::rand", "aten::exponential",
             "aten::bernoulli", "aten::normal", "aten::fill_", "aten::zero_", "aten::roll")


@pytest.mark.parametrize("name", ["adafuse_tsm_resnet18", "gsf_mobilenetv2", "tsm_resnet18", "tsm_online_mobilenetv2"])
def test_traced_graph_has_no_inplace_writes_scatter_or_random(name: str) -> None:
    """Shifts are slices + concat, decisions are comparisons: nothing the exporters turn into ScatterND or Random*."""
    model = create_model(name, num_classes=5, num_segments=4)
    traced = torch.jit.trace(model, torch.randn(1, 4, 3, 64, 64), check_trace=False)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert not {k for k in kinds if k.startswith(FORBIDDEN)}, kinds


def test_adafuse_gumbel_decision_option() -> None:
    model = create_model("adafuse_tsn_resnet18", num_classes=5, decision="gumbel")
    fuses = [f for _, f in model.adafuse_modules()]
    assert fuses and all(f.decision == "gumbel" for f in fuses)
    with pytest.raises(EdgefuseError, match="decision"):
        create_model("adafuse_tsn_resnet18", decision="softmax")


def test_adafuse_options_change_structure() -> None:
    last = create_model("adafuse_tsm_last_resnet18")
    assert [n for n, _ in last.adafuse_modules()] == ["layer4.0", "layer4.1"]
    assert all(f.fc0.out_features == 1024 for _, f in last.adafuse_modules())
    tsn = create_model("adafuse_tsn_resnet50")
    fuses = dict(tsn.adafuse_modules())
    assert fuses["layer1.1"].fc0 is fuses["layer1.2"].fc0  # shared policy nets
    assert fuses["layer1.1"].bn is not fuses["layer1.2"].bn  # BN is per block
    assert fuses["layer4.0"].fc0.out_features == 196608 // 512
    staged = create_model("adafuse_tsn_resnet18", enabled_stages=[2, 3], shared=False, hidden_quota=0, hidden=32)
    assert [n for n, _ in staged.adafuse_modules()] == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]


@pytest.mark.parametrize("name,ratio", [("gsf_resnet18", 100.0), ("gsf_resnet18", 25.0), ("gsf_mobilenetv2", 100.0)])
def test_gsf_frame_major_evaluation_equals_the_reference_form(name: str, ratio: float) -> None:
    """GSF evaluates frame-major with its 3x3x3 gate factored (taps, one-hot spatial sum, time sum);
    training and MAC counting use the published form. Same weights, same outputs."""
    from edgefuse.models.layers import GSF

    torch.manual_seed(0)
    model = create_model(name, num_classes=7, num_segments=4, ratio=ratio, width=0.5).eval()
    with torch.no_grad():  # non-trivial gates, biases and BN statistics everywhere
        for m in model.modules():
            if isinstance(m, GSF):
                for p in m.parameters():
                    p.normal_(0, 0.5)
                m.bn.running_mean.normal_()
                m.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 3, 64, 64)
    gsfs = [m for m in model.modules() if isinstance(m, GSF)]
    assert gsfs
    with torch.no_grad():
        fast = model(x)
        for m in gsfs:
            m.frame_major = False
        reference = model(x)
    assert (fast - reference).abs().max() <= 1e-4 * reference.abs().max() + 1e-5
    assert not torch.equal(reference, torch.zeros_like(reference))


# ---------------------------------------------------------------------------------------------
# Pretrained tags, checkpoint sources and the listing

def test_pretrained_tags_resolve_like_timm() -> None:
    """``model.tag`` and the short name build the same model with the tag's config; pretrained=True
    loads its weights; a plain model name with pretrained=True takes its first tag."""
    from edgefuse.models import list_pretrained

    assert "tsm_resnet18.synth_w025" in list_models(pretrained=True)
    tag = next(p for p in list_pretrained() if p.full_name == "tsm_resnet18.synth_w025")
    by_tag = create_model("tsm_resnet18.synth_w025", pretrained=True)
    by_short = create_model(tag.name, pretrained=True)
    by_model = create_model("tsm_resnet18", pretrained=True)
    cfg = by_tag.config
    assert (cfg.name, cfg.num_classes, cfg.num_segments, cfg.input_size, cfg.width) == ("tsm_resnet18", 10, 8, 112, 0.25)
    assert cfg.class_names == tag.class_names
    for other in (by_short, by_model):
        assert all(torch.equal(a, b) for a, b in zip(by_tag.state_dict().values(), other.state_dict().values()))
    untrained = create_model("tsm_resnet18.synth_w025")  # the tag's config, random weights (timm does the same)
    assert untrained.config.num_classes == 10 and not torch.equal(untrained.fc.weight, by_tag.fc.weight)
    assert create_model("tsm_resnet18.synth_w025", num_classes=3).config.class_names is None
    with pytest.raises(EdgefuseError, match="unknown zoo model 'tsm_resnet18.synth_w02': did you mean"):
        create_model("tsm_resnet18.synth_w02")
    with pytest.raises(EdgefuseError, match="tsm_resnet50 has no pretrained weights"):
        create_model("tsm_resnet50", pretrained=True)
    with pytest.raises(EdgefuseError, match="not both"):
        create_model("tsm_resnet18.synth_w025", pretrained=True, checkpoint=tag.path)


def test_checkpoint_sources_register_beside_their_architecture() -> None:
    """Research checkpoints all carry base_model./new_fc. keys: TSM is detected last."""
    from edgefuse.models.sources import detect_source, list_sources

    assert [s.name for s in list_sources()] == ["adafuse", "gsf", "edgefuse", "tsm", "tsm_online_demo"]
    assert detect_source(["module.base_model.layer1.0.policy_net.gate_fc0.weight", "module.new_fc.weight"], {}) \
        == "adafuse"
    assert detect_source(["module.base_model.conv1.weight"], {"model_state_dict": {}}) == "gsf"
    assert detect_source(["module.backbone.conv1.weight"], {}) == "edgefuse"
    assert detect_source(["base_model.conv1.weight", "new_fc.weight"], {}) == "tsm"
    assert detect_source(["conv1.weight"], {}) is None


def test_listing_imports_no_torch() -> None:
    """``edgefuse models`` reads the registry, the recorded costs and the pretrained manifest only."""
    import subprocess
    import sys

    code = ("import sys; from edgefuse.models.listing import model_rows, pretrained_rows; "
            "rows = model_rows('tsn_resnet50'); tags = pretrained_rows(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(rows[0].gmacs_frame, len(tags))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) == pytest.approx(4.0875, abs=1e-3) and int(out[1]) >= 4


@pytest.mark.slow  # counts every registered model (~13 s); run after changing a model
def test_recorded_costs_match_the_registry() -> None:
    """costs.json holds every registered model's parameters and MACs per frame at its own input size (224;
    InceptionV3 229), as counted now (after changing a model: ``edgefuse.models.listing.write_costs()``)."""
    from edgefuse.models.listing import measure_cost, own_size, recorded_costs

    recorded = recorded_costs()
    assert sorted(recorded) == list_models()
    assert recorded["gsf_inceptionv3"][2] == 229 and recorded["gsf_bninception"][2] == 224
    stale = [n for n in list_models() if (*measure_cost(n, own_size(n)), own_size(n)) != recorded[n]]
    assert stale == [], f"rerun edgefuse.models.listing.write_costs(): {stale}"


@pytest.mark.parametrize("name", ["adafuse_tsn_resnet18", "tsm_mobilenetv2", "gsf_resnet18"])
def test_model_inspection_round_trips_through_json(name: str) -> None:
    """``edgefuse inspect``'s typed report: ModelConfig (options by type, tuples) and AdaFuse decisions survive JSON."""
    import json

    from edgefuse.models.report import InspectConfig, ModelInspection, inspect_model

    report = inspect_model(InspectConfig(name, segments=4, size=64))
    again = ModelInspection.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report and again.config.options == report.config.options
    assert (report.decisions is not None) == name.startswith("adafuse")
