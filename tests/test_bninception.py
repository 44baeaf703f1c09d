"""BN-Inception (backbones/bninception.py) reproduces the official GSF, TSN and TSM BN-Inception networks.

Each fixture (tests/official/README.md, "Inception" sections) holds the official state-dict manifest and the
logits the official code computed twice: on the synth contract weights and on the ``gain_variant`` weights (BN
gammas x1.8), because the contract weights leave BN-Inception's logits nearly input-independent (the two clips
differ by ~1e-6..5e-6 of ~0.3), so only the gain variant shows mistakes that depend on the input. Here the
weights are rebuilt, saved in the official container, read back through edgefuse's detection and converters,
loaded strictly, and run.

TSN/TSM run at the official 224 (their AvgPool2d(7) allows nothing else) and cost ~4 s per 8-frame clip on two
cores: the default suite checks the gain variant on the first clip (a clip's logits depend on its own frames
only); ``-m slow`` checks both variants on both clips. GSF runs at 64 px and is checked fully by default.
"""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from conftest import load_fixture
from official.synth import synth_input, synth_state_dict

from edgefuse.models import create_model, get_entry, read_checkpoint, resolve_config
from edgefuse.models.backbones.bninception import INCEPTION_BLOCKS, BNInception, valid_size
from edgefuse.models.config import INCEPTION_MEAN
from edgefuse.models.cost import model_cost

NAMES = ("gsf_bninception", "tsn_bninception", "tsm_bninception")  # fixture name == edgefuse model name
CONTAINERS = {  # what the official training scripts save (README: "Checkpoint containers")
    "gsf": lambda sd: {"epoch": 50, "arch": "bninception", "model_state_dict": sd, "scaler_state_dict": {},
                       "best_prec1": 0.0, "current_prec1": 0.0, "lr": 0.01},
    "tsm": lambda sd: {"epoch": 50, "arch": "BNInception", "state_dict": sd, "optimizer": {}, "best_prec1": 0.0},
}


@lru_cache(maxsize=len(NAMES))
def _contract_weights(name: str) -> dict[str, torch.Tensor]:
    return synth_state_dict(load_fixture(name)["entries"])  # read only: saved, never loaded into


def official_weights(fx: dict, variant: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The official state dict of ``variant`` ('logits': the contract weights, 'gain_variant') and its logits."""
    sd = _contract_weights(fx["name"])
    if variant == "logits":
        return sd, torch.tensor(fx["logits"])
    gain = fx["gain_variant"]
    factor = gain["factor"]  # every 1-D float '.weight' (the BN gammas) times 1.8
    sd = {k: v * factor if k.endswith(".weight") and v.dim() == 1 and v.is_floating_point() else v
          for k, v in sd.items()}
    return sd, torch.tensor(gain["logits"])


def official_checkpoint(fx: dict, variant: str, tmp_path) -> tuple[str, torch.Tensor]:
    sd, ref = official_weights(fx, variant)
    path = tmp_path / f"{fx['name']}-{variant}.pth.tar"
    torch.save(CONTAINERS[fx["container"]](sd), path)
    return str(path), ref


def _cases():
    for name in NAMES:
        for variant in ("logits", "gain_variant"):
            for clips in ("first", "both"):
                fast = name == "gsf_bninception" or (variant, clips) == ("gain_variant", "first")
                if name == "gsf_bninception" and clips == "first":
                    continue  # 64 px: both clips cost little
                yield pytest.param(name, variant, clips, id=f"{name}-{variant}-{clips}",
                                   marks=() if fast else (pytest.mark.slow,))


@pytest.mark.parametrize("name,variant,clips", list(_cases()))
def test_reproduces_official_logits(name: str, variant: str, clips: str, tmp_path) -> None:
    fx = load_fixture(name)
    path, ref = official_checkpoint(fx, variant, tmp_path)
    assert read_checkpoint(path).source == fx["container"]
    model = create_model(name, checkpoint=path)  # read_checkpoint + load_into: converted, loaded strictly
    assert model.config.num_classes == fx["num_classes"]
    x = synth_input(fx["input"]["shape"], fx["input"]["seed"])  # (2, 8, 3, H, W)
    if clips == "first":
        x, ref = x[:1], ref[:1]
    with torch.no_grad():
        logits = model(x)
    err = (logits - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), f"max abs error {err:.3e} of {ref.abs().max().item():.3g}"
    assert torch.equal(logits.argmax(1), ref.argmax(1))


def test_state_dict_is_the_official_layout() -> None:
    """Names and shapes equal the manifests' after the research prefixes (GSF: conv3D -> conv3d), backbone keys in
    the official order; GSF sits at the ten positions of bn_inception_gsf.yaml with the official fPlane."""
    from edgefuse.models.convert import common_prefixes
    from edgefuse.models.layers import GSF

    for name in NAMES:
        fx = load_fixture(name)
        ours = {k: tuple(v.shape) for k, v in create_model(name).state_dict().items()}
        theirs = {common_prefixes(e["key"]).replace(".conv3D.", ".conv3d."): tuple(e["shape"]) for e in fx["entries"]}
        assert ours == theirs, name
        backbone = [k for k in ours if k.startswith("backbone.") and ".gsf_" not in k]
        assert backbone == [k for k in theirs if k.startswith("backbone.") and ".gsf_" not in k]
    gsf = create_model("gsf_bninception").backbone
    modules = load_fixture("gsf_bninception")["gsf_modules"]["modules"]
    found = [(n, m.fplane) for n, m in gsf.named_children() if isinstance(m, GSF)]
    assert found == [(m["module"], m["fPlane"]) for m in modules]


def test_shift_placement_is_tsm_block() -> None:
    """--shift_place block: the inputs of _block_2 and the ten Inception blocks, 1/8 each way; never the image."""
    from edgefuse.models.layers import TemporalShift

    model = create_model("tsm_bninception")
    shifts = [(n, m) for n, m in model.named_modules() if isinstance(m, TemporalShift)]
    assert [n for n, _ in shifts] == ["backbone.block_2.shift"] + [f"backbone.block_{s.name}.shift"
                                                                     for s in INCEPTION_BLOCKS]
    assert all(m.shift_div == 8 and not m.online for _, m in shifts)
    assert not any(isinstance(m, TemporalShift) for m in create_model("tsn_bninception").modules())


def meta_model(name: str):
    with torch.device("meta"):
        return get_entry(name).builder(resolve_config(name))


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_macs_equal_the_official_counts(figures, name: str) -> None:
    """Parameters equal the official models' (174 classes); MACs per frame at 224 equal thop's count of the
    official model restricted to what edgefuse counts (convolutions with their bias terms, the classifier)."""
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == figures["params"][name]
    if name == "gsf_bninception":
        gsf = sum(p.numel() for n, p in model.named_parameters() if ".gsf_" in n)
        assert gsf == figures["params"]["extra_inception_nonlocal_online"]["gsf_bninception_gsf_modules_only"]
    thop = figures["thop_breakdown_per_frame"]
    by_type = thop["gsf_bninception_video_model_174" if name.startswith("gsf") else "tsn_bninception_video_model_174"][
        "by_type"]
    counted = by_type["Conv2d_with_bias"] + by_type.get("Conv3d_with_bias", 0.0) + by_type["Linear"]
    assert model_cost(model, frames=8, size=224).macs_per_frame == counted


def test_input_sizes_and_feature_dim() -> None:
    """32k-1 .. 32k+6 px run (adaptive global pool); others fail with the rule, not a concat error."""
    from edgefuse.errors import EdgefuseError

    assert [s for s in range(28, 72) if valid_size(s)] == [*range(31, 39), *range(63, 71)]
    net = BNInception().eval()
    with torch.no_grad():
        for size in (31, 38, 70):
            assert net(torch.randn(2, 3, size, size), 2).shape == (2, 1024)
        with pytest.raises(EdgefuseError, match="32k-1 .. 32k\\+6"):
            net(torch.randn(1, 3, 48, 64), 1)


@pytest.mark.parametrize("name", NAMES)
def test_configs_carry_the_inception_preprocessing(name: str) -> None:
    cfg = resolve_config(name)
    assert (cfg.channel_order, cfg.pixel_range, cfg.mean, cfg.std) == ("BGR", 255.0, INCEPTION_MEAN, (1.0, 1.0, 1.0))
    assert INCEPTION_MEAN == (104.0, 117.0, 128.0)
    assert (cfg.input_size, cfg.scale_size) == (224, 256)


def test_gsf_exports_with_parity_and_inception_metadata(tmp_path) -> None:
    """An official GSF checkpoint (gain weights) exports: parity with PyTorch, the BGR / 0-255 / mean 104,117,128 /
    std 1 input contract in the metadata."""
    from edgefuse.export.api import export
    from edgefuse.export.config import ExportConfig
    from edgefuse.graph.metadata import read_metadata

    path, _ = official_checkpoint(load_fixture("gsf_bninception"), "gain_variant", tmp_path)
    result = export(ExportConfig(model="gsf_bninception", output=tmp_path / "gsf_bninception.onnx",
                                 checkpoint=path, segments=2, size=64))
    assert result.hygiene.ok
    assert len(result.parity) == 1 and all(p.within(1e-4) for p in result.parity)
    meta = read_metadata(result.path)
    assert meta["checkpoint_source"] == "gsf" and meta["num_classes"] == 174 and meta["segments"] == 2
    assert meta["channel_order"] == "BGR" and meta["pixel_range"] == 255.0
    assert meta["mean"] == [104.0, 117.0, 128.0] and meta["std"] == [1.0, 1.0, 1.0]
