"""GSF's InceptionV3: the official GSF checkpoint loads unedited and reproduces the official logits; its
parameters, MACs, GSF places and export; how GSF containers are detected and the one-line errors for
checkpoints of a neighbouring model (tests/official/README.md, "Inception, non-local and online-demo fixtures")."""
from __future__ import annotations

import pytest
import torch
from conftest import load_fixture
from official.synth import synth_input, synth_state_dict
from test_checkpoints import assert_one_error_line, run_cli

from edgefuse.errors import EdgefuseError
from edgefuse.models import create_model, get_entry, read_checkpoint, resolve_config
from edgefuse.models.checkpoint import load_into

FIXTURE = "gsf_inceptionv3"
PREFIX = "module.base_model."


def gsf_container(sd: dict, arch: str) -> dict:
    """What GSF's main.py saves (tests/official/README.md, container "gsf")."""
    return {"epoch": 50, "arch": arch, "model_state_dict": sd, "scaler_state_dict": {}, "best_prec1": 0.0,
            "current_prec1": 0.0, "lr": 0.01}


def gain_variant(sd: dict, factor: float) -> dict:
    """The fixture's second weight set: BatchNorm gammas (1-D float '.weight' tensors) times ``factor``."""
    return {k: v * factor if v.dim() == 1 and v.is_floating_point() and k.endswith(".weight") else v
            for k, v in sd.items()}


def moved_gsf(entries: list[dict], old: str, new: str, channels: int) -> list[dict]:
    """The manifest with GSF module ``old`` replaced by one on ``channels`` channels named ``new``."""
    out = []
    for e in entries:
        if not e["key"].startswith(f"{PREFIX}{old}."):
            out.append(e)
            continue
        shape = list(e["shape"])
        if shape and shape[0] > 2:  # bn.*: (C,)
            shape[0] = channels
        elif len(shape) == 5:  # conv3D: (2, C/2, 3, 3, 3)
            shape[1] = channels // 2
        out.append({**e, "key": e["key"].replace(f"{PREFIX}{old}.", f"{PREFIX}{new}."), "shape": shape})
    return out


def resynth(sd: dict, entries: list[dict]) -> dict:
    """The state dict of manifest ``entries``: ``sd``'s tensors where key and shape agree, synth ones elsewhere."""
    same = {e["key"] for e in entries if e["key"] in sd and list(sd[e["key"]].shape) == e["shape"]}
    return {**{k: sd[k] for k in same}, **synth_state_dict([e for e in entries if e["key"] not in same])}


@pytest.fixture(scope="module")
def fx() -> dict:
    return load_fixture(FIXTURE)


@pytest.fixture(scope="module")
def sd(fx) -> dict:
    """The official state dict with the contract weights."""
    return synth_state_dict(fx["entries"])


@pytest.fixture(scope="module")
def files(fx, sd, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("inceptionv3")
    misplaced = moved_gsf(fx["entries"], "gsf_mixed_4_conv_Conv2D", "gsf_mixed_4_tower_conv_Conv2D", 128)
    made = {
        "official": gsf_container(sd, "inceptionv3"),
        "gain": gsf_container(gain_variant(sd, fx["gain_variant"]["factor"]), "inceptionv3"),
        "tsn": gsf_container({k: v for k, v in sd.items() if not k.startswith(f"{PREFIX}gsf_")}, "inceptionv3"),
        "misplaced": gsf_container(resynth(sd, misplaced), "inceptionv3"),
        "bninception": gsf_container(synth_state_dict(load_fixture("gsf_bninception")["entries"]), "bninception"),
    }
    out = {}
    for name, payload in made.items():
        out[name] = d / f"{name}.pth.tar"
        torch.save(payload, out[name])
    return out


def relative_error(logits: torch.Tensor, ref: list) -> float:
    r = torch.tensor(ref)
    return ((logits - r).abs().max() / r.abs().max()).item()


# ---------------------------------------------------------------------------------------------
# The official checkpoint, unedited: strict load, logits

def test_official_checkpoint_reproduces_official_logits(fx, files) -> None:
    """Contract weights and the gain variant (whose logits depend on the input: tests/official/README.md)."""
    ckpt = read_checkpoint(files["official"])
    assert ckpt.source == "gsf" and ckpt.num_classes == 174
    model = create_model("gsf_inceptionv3", checkpoint=ckpt)  # strict: every official key, nothing else
    assert model.config.num_classes == 174
    clips = synth_input(fx["input"]["shape"], fx["input"]["seed"])  # (2, 8, 3, 69, 69)
    with torch.no_grad():
        logits = model(clips)
    assert relative_error(logits, fx["logits"]) <= 1e-5
    load_into(model, read_checkpoint(files["gain"]))
    with torch.no_grad():
        gained = model(clips)
    assert relative_error(gained, fx["gain_variant"]["logits"]) <= 1e-5
    assert torch.equal(gained.argmax(1), torch.tensor(fx["gain_variant"]["logits"]).argmax(1))
    clip_diff = (gained[0] - gained[1]).abs().max().item()
    assert clip_diff == pytest.approx(fx["gain_variant"]["clip_logit_diff"], rel=1e-3)


@pytest.mark.slow
def test_reference_gsf_form_reproduces_official_logits(fx, files) -> None:
    """The published GSF formulation (what training and MAC counting run) gives the same logits."""
    from edgefuse.models.layers import GSF

    model = create_model("gsf_inceptionv3", checkpoint=files["gain"])
    for m in model.modules():
        if isinstance(m, GSF):
            m.frame_major = False
    with torch.no_grad():
        logits = model(synth_input(fx["input"]["shape"], fx["input"]["seed"]))
    assert relative_error(logits, fx["gain_variant"]["logits"]) <= 1e-5


def test_gsf_places_and_key_order_are_official(fx) -> None:
    """11 GSF modules, each between its convolution and that convolution's BatchNorm, with the official fPlane;
    the backbone's state dict has the official keys in the official order (GSF modules' insides aside)."""
    model = create_model("gsf_inceptionv3", num_classes=174)
    backbone = model.backbone
    sites = [(attr, channels) for _, attr, channels in backbone.gsf_sites()]
    assert sites == [(m["module"], m["fPlane"]) for m in fx["gsf_modules"]["modules"]]
    for m in fx["gsf_modules"]["modules"]:
        assert getattr(backbone, m["after_conv"]).out_channels == m["fPlane"]
        assert getattr(backbone, m["before"]).num_features == m["fPlane"]
    ours = [f"{PREFIX}{k}" for k in backbone.state_dict()] + [f"module.new_fc.{k}" for k in model.fc.state_dict()]
    official = [e["key"].replace(".conv3D.", ".conv3d.") for e in fx["entries"]]
    assert sorted(ours) == sorted(official)  # the same keys; inside a GSF module, edgefuse registers bn first
    assert [k for k in ours if f"{PREFIX}gsf_" not in k] == [k for k in official if f"{PREFIX}gsf_" not in k]

    def first(keys: list[str]) -> dict[str, int]:  # module -> index of its first key
        return {k.split(".")[2]: i for i, k in reversed(list(enumerate(keys)))}

    for order in (first(official), first(ours)):
        for m in fx["gsf_modules"]["modules"]:
            assert order[m["after_conv"]] < order[m["module"]] < order[m["before"]]
    assert backbone.feature_dim == 2048 and [n for n, _ in backbone.blocks()][::5] == ["mixed", "mixed_5", "mixed_10"]


def test_classifier_named_top_cls_fc_maps_to_fc(fx, tmp_path) -> None:
    """With dropout 0 GSF keeps InceptionV3's own top_cls_fc as the video classifier: it is edgefuse's fc."""
    sd = {e["key"]: torch.zeros(e["shape"], dtype=torch.int64 if e["dtype"] == "int64" else torch.float32)
          for e in fx["entries"]}
    sd[f"{PREFIX}top_cls_fc.weight"] = torch.full((9, 2048), 0.5)
    sd[f"{PREFIX}top_cls_fc.bias"] = torch.arange(9.0)
    del sd["module.new_fc.weight"], sd["module.new_fc.bias"]
    path = tmp_path / "dropout0.pth.tar"
    torch.save(gsf_container(sd, "inceptionv3"), path)
    ckpt = read_checkpoint(path)
    assert ckpt.source == "gsf" and ckpt.num_classes == 9
    model = create_model("gsf_inceptionv3", checkpoint=ckpt)
    assert torch.equal(model.fc.bias, torch.arange(9.0)) and torch.equal(model.fc.weight, torch.full((9, 2048), 0.5))


# ---------------------------------------------------------------------------------------------
# Figures, input facts, sizes, export

def meta_model(name: str, **overrides):
    with torch.device("meta"):
        return get_entry(name).builder(resolve_config(name, **overrides))


def test_parameters_and_macs_equal_the_official_figures(figures) -> None:
    from edgefuse.models.cost import model_cost

    params = figures["params"]
    gsf_only = params["extra_inception_nonlocal_online"]["gsf_inceptionv3_gsf_modules_only"]
    model = meta_model("gsf_inceptionv3")
    assert sum(p.numel() for p in model.parameters()) == params["gsf_inceptionv3"]
    assert sum(p.numel() for p in meta_model("tsn_inceptionv3").parameters()) == params["gsf_inceptionv3"] - gsf_only
    # edgefuse counts convolutions (with their bias terms) and linear layers: thop's Conv2d + Conv3d + Linear
    thop = figures["thop_breakdown_per_frame"]["gsf_inceptionv3_video_model_174_at_229"]["by_type"]
    assert model_cost(model, frames=8, size=229).macs_per_clip == 8 * (
        thop["Conv2d_with_bias"] + thop["Conv3d_with_bias"] + thop["Linear"])


def test_input_facts_and_sizes() -> None:
    cfg = resolve_config("gsf_inceptionv3")
    assert (cfg.input_size, cfg.scale_size, cfg.channel_order, cfg.pixel_range) == (229, 261, "BGR", 255.0)
    assert cfg.mean == (104.0, 117.0, 128.0) and cfg.std == (1.0, 1.0, 1.0)
    model = create_model("tsn_inceptionv3", num_classes=3, num_segments=1)
    with torch.no_grad():  # any size from 69 px: 224 is outside the official bands (32k+5 .. 32k+12)
        assert model(torch.zeros(1, 1, 3, 224, 70)).shape == (1, 3)
        with pytest.raises(EdgefuseError, match="at least 69x69 pixels, got 64x64"):
            model(torch.zeros(1, 1, 3, 64, 64))


@pytest.mark.slow  # BN-Inception's export (tests/test_bninception.py) covers the Inception export path by default
def test_onnx_export_parity_at_69_px(files, tmp_path) -> None:
    from edgefuse.export.api import export
    from edgefuse.export.config import ExportConfig
    from edgefuse.graph.metadata import read_metadata

    result = export(ExportConfig(model="gsf_inceptionv3", output=tmp_path / "g3.onnx", checkpoint=files["official"],
                                 segments=2, size=69))
    assert result.hygiene.ok and len(result.parity) == 1 and all(p.within(1e-4) for p in result.parity)
    meta = read_metadata(result.path)
    assert (meta["channel_order"], meta["pixel_range"], meta["mean"], meta["std"]) == (
        "BGR", 255.0, [104.0, 117.0, 128.0], [1.0, 1.0, 1.0])
    assert (meta["input_size"], meta["scale_size"], meta["checkpoint_source"]) == (69, 69 * 256 // 224, "gsf")
    with pytest.raises(EdgefuseError, match="at least 69x69 pixels, got 64x64"):  # one line, not a trace error
        export(ExportConfig(model="gsf_inceptionv3", output=tmp_path / "small.onnx", num_classes=5, segments=2, size=64))


@pytest.mark.slow
def test_onnx_export_at_the_official_size_carries_its_facts(files, tmp_path) -> None:
    from edgefuse.export.api import export
    from edgefuse.export.config import ExportConfig
    from edgefuse.graph.metadata import read_metadata

    result = export(ExportConfig(model="gsf_inceptionv3", output=tmp_path / "g3.onnx", checkpoint=files["official"],
                                 segments=2, size=229))
    assert all(p.within(1e-4) for p in result.parity)
    meta = read_metadata(result.path)
    assert (meta["channel_order"], meta["pixel_range"], meta["input_size"], meta["scale_size"]) == (
        "BGR", 255.0, 229, 261)


# ---------------------------------------------------------------------------------------------
# Source detection: the container as read, GSF gate keys of the Inception networks

def test_gsf_container_is_detected_as_read(tmp_path) -> None:
    """The key the weights sit under is a marker: model_state_dict (GSF) vs state_dict (TSM), same keys."""
    sd = {"module.base_model.conv1.weight": torch.zeros(1), "module.new_fc.weight": torch.zeros(2, 1)}
    torch.save({"epoch": 1, "model_state_dict": sd}, tmp_path / "gsf.pth")
    torch.save({"epoch": 1, "state_dict": sd}, tmp_path / "tsm.pth")
    assert read_checkpoint(tmp_path / "gsf.pth").source == "gsf"
    assert read_checkpoint(tmp_path / "tsm.pth").source == "tsm"


def test_inception_gsf_keys_are_gsf_markers(sd, files, tmp_path) -> None:
    from edgefuse.models.sources import detect_source

    for key in ("module.base_model.gsf_inception_3a_1x1.conv3D.weight",
                "module.base_model.gsf_mixed_conv_Conv2D.conv3D.weight", "base_model.layer1.0.gsf.conv3D.weight"):
        assert detect_source([key, "module.new_fc.weight"], {}) == "gsf", key
    assert detect_source(["module.base_model.conv_Conv2D.weight", "module.new_fc.weight"], {}) == "gsf"
    assert detect_source(["base_model.inception_3a_1x1.weight", "new_fc.weight"], {}) == "tsm"
    for name in ("tsn", "bninception"):  # GSF's containers ("official": the first test)
        assert read_checkpoint(files[name]).source == "gsf", name
    bare = tmp_path / "bare.pth"  # a TSN InceptionV3 state dict saved without GSF's container
    torch.save({k: v for k, v in sd.items() if not k.startswith(f"{PREFIX}gsf_")}, bare)
    assert read_checkpoint(bare).source == "gsf"
    assert create_model("tsn_inceptionv3", checkpoint=bare).config.num_classes == 174


# ---------------------------------------------------------------------------------------------
# Near misses: one line naming the file, what it is and the model to use

def test_bninception_checkpoint_into_other_backbones(files) -> None:
    what = "a GSF BN-Inception checkpoint (10 GSF modules, 174 classes)"
    with pytest.raises(EdgefuseError) as e:
        create_model("gsf_resnet50", checkpoint=files["bninception"])
    msg = str(e.value)
    assert msg.startswith(f"{files['bninception']}: {what} does not fit gsf_resnet50: the backbone differs")
    assert "gsf_bninception" in msg and "\n" not in msg
    proc = run_cli("inspect", "gsf_inceptionv3", "--checkpoint", str(files["bninception"]))
    assert_one_error_line(proc, str(files["bninception"]), what, "does not fit gsf_inceptionv3", "gsf_bninception")


def test_gsf_and_tsn_inceptionv3_checkpoints_into_each_others_model(files) -> None:
    with pytest.raises(EdgefuseError, match=r"a GSF InceptionV3 checkpoint \(11 GSF modules, 174 classes\) does not "
                                            r"fit tsn_inceptionv3: it has GSF modules, tsn_inceptionv3 has none; "
                                            r"use gsf_inceptionv3$"):
        create_model("tsn_inceptionv3", checkpoint=files["official"])
    with pytest.raises(EdgefuseError, match=r"a TSN InceptionV3 checkpoint of the GSF repository \(no GSF modules, "
                                            r"174 classes\) does not fit gsf_inceptionv3: it has no GSF modules, "
                                            r"gsf_inceptionv3 has 11; use tsn_inceptionv3$"):
        create_model("gsf_inceptionv3", checkpoint=files["tsn"])
    with pytest.raises(EdgefuseError, match=r"cannot load into tsm_resnet50 \(tsm\): it is a GSF InceptionV3 "
                                            r"checkpoint \(11 GSF modules, 174 classes\); use gsf_inceptionv3$"):
        create_model("tsm_resnet50", checkpoint=files["official"])


def test_gsf_placed_elsewhere(files) -> None:
    with pytest.raises(EdgefuseError) as e:
        create_model("gsf_inceptionv3", checkpoint=files["misplaced"])
    assert str(e.value) == (
        f"{files['misplaced']}: a GSF InceptionV3 checkpoint (11 GSF modules, 174 classes) does not fit "
        "gsf_inceptionv3: its GSF modules sit elsewhere (gsf_mixed_4_tower_conv_Conv2D only in the checkpoint, "
        "gsf_mixed_4_conv_Conv2D only in gsf_inceptionv3): edgefuse places GSF where the official InceptionV3 "
        "does, so no edgefuse model takes this checkpoint")


def test_wrong_class_count_and_ratio(fx, sd, files, tmp_path) -> None:
    with pytest.raises(EdgefuseError) as e:
        create_model("gsf_inceptionv3", num_classes=10, checkpoint=files["official"])
    msg = str(e.value)
    assert msg.startswith(f"{files['official']}: a GSF InceptionV3 checkpoint (11 GSF modules, 174 classes) does not "
                          "fit gsf_inceptionv3: 2 with other shapes (fc.bias: checkpoint (174,) vs model (10,))")
    assert msg.endswith("the checkpoint has 174 classes, the model 10: pass --num-classes 174") and "\n" not in msg
    quarter = fx["entries"]
    for m in fx["gsf_modules"]["modules"]:  # the same network trained with --gsf_ch_ratio 25
        quarter = moved_gsf(quarter, m["module"], m["module"], m["fPlane"] // 4)
    path = tmp_path / "ratio25.pth.tar"
    torch.save(gsf_container(resynth(sd, quarter), "inceptionv3"), path)
    with pytest.raises(EdgefuseError, match=r"GSF channel ratio differs: the checkpoint's is 25 \(pass --ratio 25\)"):
        create_model("gsf_inceptionv3", checkpoint=path)
    assert create_model("gsf_inceptionv3", ratio=25, checkpoint=path).config.options.ratio == 25
