"""Two more official TSM releases from their own checkpoint layouts (tests/official/README.md, "Inception,
non-local and online-demo fixtures"):

- the non-local ResNet-50 of Kinetics-400 (``tsm_nl_resnet50``): the TSM repository's container with its
  non-local wrapper's names, loaded strictly, its logits, its ONNX graph, its parameters and MACs;
- the online demo's Jester MobileNetV2 (``tsm_online_mobilenetv2``, 27 classes): a bare state dict with the
  demo's own names, whose logits the demo computes one frame at a time with shift buffers starting at zero;
  reproduced step by step by the PyTorch stream model and by the exported stream graph in ONNX Runtime.

Weights are the fixtures' deterministic ones (``synth_state_dict``); references are the official code's logits.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL, load_fixture
from official.synth import synth_input, synth_state_dict
from test_official_equivalence import CONTAINERS

from edgefuse.errors import EdgefuseError
from edgefuse.models import Checkpoint, create_model, get_entry, read_checkpoint, resolve_config
from edgefuse.models.cost import model_cost
from edgefuse.models.layers import NonLocal
from edgefuse.models.sources import detect_source, get_source, list_sources
from edgefuse.models.tsm import NON_LOCAL_BLOCKS

REL = 1e-5  # relative to the largest reference logit, as in test_official_equivalence


def rel_err(got: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def meta_model(name: str, **overrides):  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        return get_entry(name).builder(resolve_config(name, **overrides))


# --- non-local ResNet-50, Kinetics-400 -------------------------------------------------------


@pytest.fixture(scope="module")
def nl_fx() -> dict:
    return load_fixture("tsm_nonlocal_r50")


@pytest.fixture(scope="module")
def nl_checkpoint(nl_fx: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's weights in the TSM repository's container, as main.py saves it."""
    path = tmp_path_factory.mktemp("nl") / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth"
    torch.save(CONTAINERS[nl_fx["container"]](synth_state_dict(nl_fx["entries"])), path)
    return path


@pytest.fixture(scope="module")
def nl_read(nl_checkpoint: Path) -> Checkpoint:
    return read_checkpoint(nl_checkpoint)  # once: 127 MB


@pytest.fixture(scope="module")
def nl_model(nl_read: Checkpoint):  # type: ignore[no-untyped-def]
    return create_model("tsm_nl_resnet50", checkpoint=nl_read)


def test_nonlocal_checkpoint_loads_strictly_and_reproduces_logits(nl_fx: dict, nl_read: Checkpoint, nl_model) -> None:
    ckpt = nl_read
    assert ckpt.source == "tsm" and ckpt.num_classes == 400
    assert nl_model.config.num_classes == 400 and nl_model.config.options.non_local
    # strict: every official tensor has a place (load_into refuses missing or unexpected keys), the
    # non-local ones included, their 1x1x1 kernels as 1x1
    official = ckpt.state_dict["module.base_model.layer3.4.nl.phi.0.weight"]  # (512, 1024, 1, 1, 1)
    ours = nl_model.backbone.layer3[4].nl.phi[0].weight  # (512, 1024, 1, 1)
    assert torch.equal(ours, official.reshape(512, 1024, 1, 1))
    wrapped = ckpt.state_dict["module.base_model.layer2.0.block.conv1.net.weight"]  # NL3DWrapper + shift wrapper
    assert torch.equal(nl_model.backbone.layer2[0].conv1.weight, wrapped)
    clips = synth_input(nl_fx["input"]["shape"], nl_fx["input"]["seed"])  # (2, 8, 3, 64, 64)
    with torch.no_grad():
        logits = nl_model(clips)
    ref = torch.tensor(nl_fx["logits"])
    assert rel_err(logits, ref) <= REL, rel_err(logits, ref)
    assert torch.equal(logits.argmax(1), ref.argmax(1))


def test_nonlocal_onnx_graph_reproduces_logits(nl_fx: dict, nl_model) -> None:
    import onnxruntime as ort

    from edgefuse.export.trace import to_onnx

    clips = synth_input(nl_fx["input"]["shape"], nl_fx["input"]["seed"])  # (2, 8, 3, 64, 64): the fixture's size
    graph = to_onnx(nl_model, (clips,), ["clips"], ["logits"], None, opset=17)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("MatMul") == 2 * len(NON_LOCAL_BLOCKS) and ops.count("Softmax") == len(NON_LOCAL_BLOCKS)
    assert not {"ScatterND", "ScatterElements"} & set(ops)
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"clips": clips.numpy()})
    assert rel_err(logits, nl_fx["logits"]) <= REL, rel_err(logits, nl_fx["logits"])


def test_nonlocal_blocks_sit_where_the_official_code_puts_them(nl_fx: dict) -> None:
    model = meta_model("tsm_nl_resnet50")
    assert model.config.num_classes == 400 and model.config.options.non_local
    assert [n for n, m in model.backbone.named_modules() if isinstance(m, NonLocal)] == [
        f"{b}.nl" for b in NON_LOCAL_BLOCKS] == [b.removeprefix("base_model.") for b in
                                                  nl_fx["official_config"]["non_local"]["blocks"]]
    # the blocks keep their torchvision names: only the non-local modules are added
    plain = set(meta_model("tsm_resnet50", num_classes=400).state_dict())
    keys = set(model.state_dict())
    assert plain < keys and all(".nl." in k for k in keys - plain)
    official_nl = {e["key"].split(".nl.")[1] for e in nl_fx["entries"] if ".nl." in e["key"]}
    assert {k.split(".nl.")[1] for k in keys - plain} == official_nl  # theta, phi.0, g.0, W.0, W.1


def test_nonlocal_block_starts_as_identity_and_sees_every_frame() -> None:
    torch.manual_seed(0)
    block = NonLocal(16).eval()
    x = torch.randn(2 * 4, 16, 6, 6)  # (N*T, C, H, W), T = 4
    with torch.no_grad():
        assert torch.equal(block(x, 4), x)  # W's BatchNorm scale starts at zero
        block.W[1].weight.fill_(1.0)
        y = block(x, 4)
        later = x.clone()
        later[3] += 1.0  # the last frame of the first clip
        y2 = block(later, 4)
    assert not torch.allclose(y[0], y2[0])  # frame 0 attends to frame 3: it cannot stream
    assert torch.equal(y[4:], y2[4:])  # clips do not see each other


def test_nonlocal_figures_equal_official(figures: dict) -> None:
    """Parameters exactly; MACs in edgefuse's convention (convolutions with their bias term, linear layers) equal
    thop's count of the same layers, and the matrix products thop does not see add the official analytic figure."""
    model = meta_model("tsm_nl_resnet50")
    assert sum(p.numel() for p in model.parameters()) == figures["params"]["tsm_nonlocal_r50"]
    nl_params = sum(p.numel() for m in model.modules() if isinstance(m, NonLocal) for p in m.parameters())
    assert nl_params == figures["params"]["extra_inception_nonlocal_online"]["tsm_nonlocal_r50_nonlocal_blocks_only"]
    thop = figures["thop_breakdown_per_frame"]["tsm_nonlocal_r50_video_model_400"]["by_type"]
    cost = model_cost(model, frames=8, size=224)
    layers = [lc for lc in cost.layers if lc.kind != "MatMul"]
    assert sum(lc.macs for lc in layers) / 8 == thop["Conv2d_no_bias"] + thop["Conv3d_with_bias"] + thop["Linear"]
    # the two products per block, at the maps the blocks see at 224 (layer2 28x28, layer3 14x14), per clip of 8
    maps: dict[str, tuple[int, ...]] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(module, args, out) -> None:  # type: ignore[no-untyped-def]
            maps[name] = tuple(args[0].shape[-2:])
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.backbone.named_modules() if isinstance(m, NonLocal)]
    with torch.no_grad():
        model(torch.empty(1, 8, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    blocks = {n: m.matmul_macs(8, *maps[n]) for n, m in model.backbone.named_modules() if isinstance(m, NonLocal)}
    assert blocks == {"layer2.0.nl": 5035261952, "layer2.2.nl": 5035261952, "layer3.0.nl": 629407744,
                      "layer3.2.nl": 629407744, "layer3.4.nl": 629407744}  # the official "how", per clip
    matmuls = figures["gmacs_per_frame"]["tsm_nonlocal_r50_uncounted_nonlocal_matmuls"]["value"]
    assert sum(blocks.values()) / 8 == pytest.approx(matmuls * 1e9, rel=1e-12)
    assert {lc.name.removeprefix("backbone.").removesuffix(".matmul"): lc.macs for lc in cost.layers
            if lc.kind == "MatMul"} == blocks  # edgefuse counts them
    assert cost.macs_per_frame / 1e9 == pytest.approx(7.641520128, rel=1e-12)


def test_nonlocal_mismatches_are_one_clear_error(nl_read: Checkpoint) -> None:
    with pytest.raises(EdgefuseError, match="online .*cannot have them"):
        create_model("tsm_online_resnet50", non_local=True)
    with pytest.raises(EdgefuseError, match="defined on ResNet-50"):
        create_model("tsm_resnet18", non_local=True)
    with pytest.raises(EdgefuseError, match=r"non-local blocks \(after layer2\.0, layer2\.2, .*tsm_nl_resnet50"):
        create_model("tsm_resnet50", checkpoint=nl_read)
    plain_fx = load_fixture("tsm_r50")
    plain = Checkpoint(path=Path("tsm_r50.pth"), sha256="", source="tsm", num_classes=174,
                       state_dict=synth_state_dict(plain_fx["entries"]))
    with pytest.raises(EdgefuseError, match="tsm_nl_resnet50 has non-local blocks and the checkpoint none"):
        create_model("tsm_nl_resnet50", num_classes=174, checkpoint=plain)


# --- the online demo's Jester checkpoint ------------------------------------------------------


@pytest.fixture(scope="module")
def demo_fx() -> dict:
    return load_fixture("tsm_online_mobilenetv2_jester")


@pytest.fixture(scope="module")
def demo_checkpoint(demo_fx: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As shipped: ``torch.save(model.state_dict())`` of the demo's MobileNetV2, no container."""
    assert demo_fx["container"] == "plain"
    path = tmp_path_factory.mktemp("demo") / "mobilenetv2_jester_online.pth.tar"
    torch.save(synth_state_dict(demo_fx["entries"]), path)
    return path


@pytest.fixture(scope="module")
def demo_stream(demo_checkpoint: Path):  # type: ignore[no-untyped-def]
    from edgefuse.export.stream import StreamModel

    model = create_model("tsm_online_mobilenetv2", num_classes=27, checkpoint=demo_checkpoint)
    return StreamModel(model)


@pytest.fixture(scope="module")
def demo_spec(demo_stream) -> list:  # type: ignore[no-untyped-def]
    """The stream's state layout for one 224x224 frame (a meta-device forward: once)."""
    from edgefuse.export.stream import state_spec

    return state_spec(demo_stream, 1, 224, 224)


def _frames(fx: dict) -> torch.Tensor:
    return synth_input(fx["input"]["shape"], fx["input"]["seed"])  # (1, 6, 3, 224, 224), fed as x[:, t]


def _torch_steps(stream, spec: list, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The demo's loop: one frame at a time, states from the previous step, zeros at the first."""
    from edgefuse.export.stream import initial_states

    states = initial_states(spec)
    steps = []
    with torch.no_grad():
        for t in range(frames.shape[1]):
            logits, *states = stream(frames[:, t], *states)  # (1, 27), next states
            steps.append(logits[0])
    return torch.stack(steps)  # (T, 27)


def test_demo_checkpoint_is_its_own_source(demo_fx: dict) -> None:
    """Detected by its bare keys, which no other source claims (so detection order cannot matter), and it
    claims no other format: no other fixture, not torchvision's ImageNet MobileNetV2."""
    demo = get_source("tsm_online_demo")
    keys = [e["key"] for e in demo_fx["entries"]]
    assert detect_source(keys, {}) == "tsm_online_demo"
    assert detect_source(["module." + k for k in keys], {}) == "tsm_online_demo"  # DataParallel-saved
    assert [s.name for s in list_sources() if s.detect(keys, {})] == ["tsm_online_demo"]
    for path in sorted((OFFICIAL / "fixtures").glob("*.json")):
        fx = json.loads(path.read_text())
        if fx["container"] != "plain":
            container = CONTAINERS[fx["container"]]({})  # the file's top-level entries
            assert not demo.detect([e["key"] for e in fx["entries"]], container), path.name
    torchvision = ["features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                   "features.2.conv.0.0.weight", "classifier.1.weight", "classifier.1.bias"]
    assert not demo.detect(torchvision, {})
    assert not demo.detect(["features.0.0.weight", "classifier.weight"], {})  # no inverted residual: not the demo's


def test_demo_streams_frame_by_frame_like_the_demo(demo_fx: dict, demo_checkpoint: Path, demo_stream,
                                                   demo_spec: list) -> None:
    assert read_checkpoint(demo_checkpoint).source == "tsm_online_demo"
    spec = demo_spec
    assert [s.module for s in spec] == [f"backbone.{b}.shift" for b in demo_fx["official_config"]["shift_modules"]]
    assert [list(s.shape) for s in spec] == demo_fx["official_config"]["buffer_shapes"]  # the demo's ten buffers
    got = _torch_steps(demo_stream, spec, _frames(demo_fx))
    ref = torch.tensor(demo_fx["logits"])  # (6, 27): one row per step
    for t in range(ref.shape[0]):
        assert rel_err(got[t], ref[t]) <= REL, (t, rel_err(got[t], ref[t]))
    # the steps differ by far more than the tolerance: carrying state (or not) shows
    assert (ref[1:] - ref[:-1]).abs().max() > 100 * REL * ref.abs().max()


def test_demo_stream_graph_in_onnx_runtime(demo_fx: dict, demo_stream, tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgefuse.export.stream import export_stream

    path = tmp_path / "tsm_online_jester_stream.onnx"
    spec = export_stream(demo_stream, path, batch=1, height=224, width=224, opset=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frames = _frames(demo_fx).numpy()
    states = [np.zeros(s.shape, dtype=np.float32) for s in spec]  # the demo's buffers start at zero
    ref = np.asarray(demo_fx["logits"])
    for t in range(ref.shape[0]):
        logits, *states = sess.run(None, {"frame": frames[:, t], **{s.name: v for s, v in zip(spec, states)}})
        assert rel_err(logits[0], ref[t]) <= REL, (t, rel_err(logits[0], ref[t]))


@pytest.mark.slow
def test_demo_gain_variant(demo_fx: dict, demo_spec: list) -> None:
    """The second reference (BatchNorm gammas x1.8): logits that depend strongly on the input and the state
    (slow: the contract logits above already tell a carried state from none: steps differ by 1700x the tolerance)."""
    from edgefuse.export.stream import StreamModel
    from edgefuse.models.tsm import online_demo_filter_fn

    variant = demo_fx["gain_variant"]
    sd = synth_state_dict(demo_fx["entries"])
    sd = {k: v * variant["factor"] if v.dim() == 1 and v.is_floating_point() and k.endswith(".weight") else v
          for k, v in sd.items()}
    model = create_model("tsm_online_mobilenetv2", num_classes=27)
    model.load_state_dict(online_demo_filter_fn(sd, model), strict=True)
    got = _torch_steps(StreamModel(model), demo_spec, _frames(demo_fx))  # same layout as the contract stream
    ref = torch.tensor(variant["logits"])
    for t in range(ref.shape[0]):
        assert rel_err(got[t], ref[t]) <= REL, (t, rel_err(got[t], ref[t]))


def test_demo_checkpoint_needs_the_online_model(demo_checkpoint: Path) -> None:
    ckpt = read_checkpoint(demo_checkpoint)
    with pytest.raises(EdgefuseError, match="past-only shifts, tsm_mobilenetv2 is not: .*tsm_online_mobilenetv2"):
        create_model("tsm_mobilenetv2", num_classes=27, checkpoint=ckpt)
    with pytest.raises(EdgefuseError, match="tsn_mobilenetv2"):
        create_model("tsn_mobilenetv2", num_classes=27, checkpoint=ckpt)
    with pytest.raises(EdgefuseError, match="27 classes, the model 174: pass --num-classes 27"):
        create_model("tsm_online_mobilenetv2", num_classes=174, checkpoint=ckpt)


# --- export presets ---------------------------------------------------------------------------


def test_jester_preset_carries_the_demo_preprocessing(demo_checkpoint: Path, tmp_path: Path) -> None:
    from edgefuse.export.api import build_model
    from edgefuse.export.config import make_config

    cfg = make_config("tsm_online_jester", tmp_path / "out.onnx", checkpoint=demo_checkpoint)
    assert (cfg.model, cfg.policy, cfg.size, cfg.num_classes) == ("tsm_online_mobilenetv2", "stream", 224, 27)
    model, facts = build_model(cfg)
    assert facts["checkpoint_source"] == cfg.checkpoint_format == "tsm_online_demo"
    mc = model.config
    assert (mc.channel_order, mc.pixel_range, mc.input_size, mc.scale_size) == ("BGR", 1.0, 224, 256)
    assert (mc.mean, mc.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert mc.num_classes == 27


def test_kinetics_nonlocal_preset(nl_checkpoint: Path, nl_read: Checkpoint, tmp_path: Path) -> None:
    from edgefuse.export.config import make_config

    cfg = make_config("tsm_nl_r50_kinetics", tmp_path / "out.onnx", checkpoint=nl_checkpoint)
    assert (cfg.model, cfg.num_classes, cfg.segments, cfg.size) == ("tsm_nl_resnet50", 400, 8, 224)
    assert (cfg.policy, cfg.shape) == ("dynamic", "static")
    assert cfg.checkpoint_format == nl_read.source == "tsm"
    mc = resolve_config(cfg.model)
    assert (mc.channel_order, mc.pixel_range, mc.mean, mc.scale_size) == ("RGB", 1.0, (0.485, 0.456, 0.406), 256)


@pytest.mark.slow
@pytest.mark.parametrize("preset,size", [("tsm_online_jester", 224), ("tsm_nl_r50_kinetics", 224)])
def test_preset_exports_end_to_end(preset: str, size: int, demo_checkpoint: Path, nl_checkpoint: Path,
                                   tmp_path: Path) -> None:
    """The whole ``edgefuse export --preset`` path (trace, simplify, hygiene, parity) at the official size."""
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    ckpt = demo_checkpoint if "jester" in preset else nl_checkpoint
    report = export(make_config(preset, tmp_path / f"{preset}.onnx", checkpoint=ckpt, size=size))
    assert report.path.is_file() and all(p.max_rel <= 1e-4 for p in report.parity)
    assert report.metadata["checkpoint_source"] == ("tsm_online_demo" if "jester" in preset else "tsm")
