"""Stream mode: per-frame models with explicit state reproduce the clip models' per-frame logits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.export.stream import (
    StateSpec,
    StreamModel,
    check_streamable,
    export_stream,
    initial_states,
    run_stream,
    state_spec,
)
from edgefuse.models import VideoClassifier, create_model
from edgefuse.models.layers import ACTIONS, AdaFuse, TemporalShift

N, T, SIZE, CLASSES = 2, 6, 64, 10
STREAMABLE = ["tsm_online_resnet18", "tsm_online_mobilenetv2", "adafuse_tsn_resnet18", "tsn_resnet18"]
FUTURE = {
    "gsf_resnet18": r"backbone\.layer1\.0\.gsf",
    "tsm_resnet18": r"backbone\.layer1\.0\.shift",
    "adafuse_tsm_resnet18": r"backbone\.layer1\.0\.shift",
    "adafuse_tsm_last_resnet18": r"backbone\.layer1\.0\.shift",
}
FORBIDDEN_OPS = ("ScatterND", "ScatterElements", "Scatter", "RandomUniform", "RandomUniformLike", "RandomNormal",
                 "RandomNormalLike", "Bernoulli", "Multinomial")


def _randomize(model: nn.Module, seed: int) -> None:
    """Weights that make every path matter: BN statistics, O(1) logits, AdaFuse policies that
    depend on the input, with biases spread so skip, reuse and keep all occur."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features), generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
        for m in model.modules():
            if isinstance(m, AdaFuse):
                m.fc1.bias.normal_(0.0, 1.0, generator=g)


def _build(name: str, seed: int = 0, **options: object) -> VideoClassifier:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=CLASSES, num_segments=T, width=0.25, **options)
    _randomize(model, seed)
    return model.eval()


def _clips(n: int = N, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))  # (N, T, 3, H, W)


def _close(got: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, rel: float) -> tuple[bool, float, float]:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    return err <= rel * scale, err, scale


# --- PyTorch: stream == clip ------------------------------------------------------------------


@pytest.mark.parametrize("name", STREAMABLE)
def test_stream_reproduces_clip_per_frame_logits(name: str) -> None:
    model = _build(name)
    clips = _clips()
    stream = StreamModel(model)
    with torch.no_grad():
        ref = model.frame_logits(clips)  # (N, T, K)
        clip_logits = model(clips)  # (N, K)
        alone = model.frame_logits(clips.reshape(N * T, 1, 3, SIZE, SIZE)).reshape(N, T, CLASSES)  # (N, T, K)
    got = run_stream(stream, clips)
    assert got.shape == (N, T, CLASSES)
    ok, err, scale = _close(got, ref, 1e-5)
    assert scale > 1e-2, "logits too small for a meaningful comparison"
    assert ok, f"{name}: stream departs from frame_logits by {err:.3g} (scale {scale:.3g})"
    ok, err, _ = _close(got.mean(dim=1), clip_logits, 1e-5)
    assert ok, f"{name}: mean of stream logits departs from the clip logits by {err:.3g}"
    # The comparison is sensitive: frames run alone (no carried state) give other logits,
    # except for the stateless TSN.
    stateful = bool(stream.slots)
    assert stateful == (not name.startswith("tsn_"))
    assert _close(alone, ref, 1e-5)[0] != stateful


def test_stream_model_leaves_the_clip_model_alone() -> None:
    model = _build("adafuse_tsn_resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    StreamModel(model)
    assert all(isinstance(f, AdaFuse) for _, f in model.adafuse_modules())
    assert len(list(model.adafuse_modules())) == 8
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_adafuse_stream_takes_every_decision_the_clip_model_takes() -> None:
    """Non-trivial policies (all three actions, changing over time), decided identically frame by frame."""
    model = _build("adafuse_tsn_resnet18")
    clips = _clips()
    stream = StreamModel(model)
    clip_fuses = [f for _, f in model.adafuse_modules()]
    stream_fuses = [blk.adafuse.inner for _, blk in stream.model.blocks() if blk.adafuse is not None]
    for f in clip_fuses + stream_fuses:
        f.record = True
    with torch.no_grad():
        model.frame_logits(clips)
    clip_masks = [f.last_mask for f in clip_fuses]  # each (N, T, width, 3)
    states = initial_states(state_spec(stream, N, SIZE, SIZE))
    per_frame: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for t in range(T):
            _, *states = stream(clips[:, t], *states)
            per_frame.append([f.last_mask for f in stream_fuses])  # each (N, 1, width, 3)
    for b, mask in enumerate(clip_masks):
        streamed = torch.cat([frame[b] for frame in per_frame], dim=1)  # (N, T, width, 3)
        assert torch.equal(streamed, mask), f"block {b}: stream decisions differ from the clip model's"
    counts = torch.cat([m.reshape(-1, 3) for m in clip_masks]).sum(0)  # (N*T*width summed over blocks, 3) -> (3,)
    fractions = dict(zip(ACTIONS, (counts / counts.sum()).tolist()))
    assert all(f > 0.05 for f in fractions.values()), fractions
    assert any(not torch.equal(m[:, 1:], m[:, :-1]) for m in clip_masks), "decisions never change over time"


# --- state layout -----------------------------------------------------------------------------


def _expected_tsm_online_resnet18(n: int) -> dict[str, tuple[int, ...]]:
    # base width 16: stage widths 16/32/64/128; stem output 16 ch at 64/4 = 16 px.
    # A block's state is fold = C_in // 8 channels of its input, at the input's size.
    blocks = {"layer1.0": (16, 16), "layer1.1": (16, 16), "layer2.0": (16, 16), "layer2.1": (32, 8),
              "layer3.0": (32, 8), "layer3.1": (64, 4), "layer4.0": (64, 4), "layer4.1": (128, 2)}
    return {f"state.{b}.shift": (n, c // 8, s, s) for b, (c, s) in blocks.items()}


def _expected_adafuse_tsn_resnet18(n: int) -> dict[str, tuple[int, ...]]:
    # (C_in, width, conv1 output size): conv1 of a BasicBlock carries the stage's stride.
    blocks = {"layer1.0": (16, 16, 16), "layer1.1": (16, 16, 16), "layer2.0": (16, 32, 8), "layer2.1": (32, 32, 8),
              "layer3.0": (32, 64, 4), "layer3.1": (64, 64, 4), "layer4.0": (64, 128, 2), "layer4.1": (128, 128, 2)}
    out: dict[str, tuple[int, ...]] = {}
    for b, (cin, width, s) in blocks.items():
        out[f"state.{b}.adafuse.pooled"] = (n, cin)
        out[f"state.{b}.adafuse.out"] = (n, width, s, s)
    return out


@pytest.mark.parametrize(
    "name,expected",
    [("tsm_online_resnet18", _expected_tsm_online_resnet18), ("adafuse_tsn_resnet18", _expected_adafuse_tsn_resnet18)],
)
def test_state_spec_layout(name: str, expected) -> None:  # type: ignore[no-untyped-def]
    stream = StreamModel(_build(name))
    spec = state_spec(stream, 3, SIZE, SIZE)
    assert {s.name: s.shape for s in spec} == expected(3)
    assert [s.name for s in spec] == stream.state_names  # graph order = spec order
    assert all(s.dtype == "float32" for s in spec)
    assert all(s.module.startswith("backbone.layer") and s.name.startswith("state." + s.module[9:]) for s in spec)
    zeros = initial_states(spec)
    assert [tuple(z.shape) for z in zeros] == [s.shape for s in spec]
    assert all(z.dtype == torch.float32 and not z.any() for z in zeros)
    with torch.no_grad():
        _, *nxt = stream(torch.randn(3, 3, SIZE, SIZE), *zeros)
    assert [tuple(x.shape) for x in nxt] == [s.shape for s in spec]
    assert [StateSpec.from_dict(s.to_dict()) for s in spec] == spec
    assert spec[0].to_dict()["next_name"] == "next." + spec[0].name


def test_stateless_model_has_no_states() -> None:
    stream = StreamModel(_build("tsn_resnet18"))
    assert state_spec(stream, 1, SIZE, SIZE) == []
    with torch.no_grad():
        out = stream(torch.randn(1, 3, SIZE, SIZE))
    assert len(out) == 1 and out[0].shape == (1, CLASSES)


def test_wrong_states_are_user_errors() -> None:
    stream = StreamModel(_build("tsm_online_resnet18"))
    frame = torch.randn(1, 3, SIZE, SIZE)
    with pytest.raises(EdgefuseError, match=r"takes 8 state tensors, got 0; start a stream with initial_states"):
        stream(frame)
    wrong_size = initial_states(state_spec(stream, 1, 2 * SIZE, 2 * SIZE))
    with pytest.raises(EdgefuseError, match=r"state\.layer1\.0\.shift is \(1, 2, 32, 32\) but this frame needs"):
        stream(frame, *wrong_size)


# --- what may stream --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUTURE))
def test_models_that_look_ahead_are_refused(name: str) -> None:
    model = create_model(name, num_classes=CLASSES, width=0.25)
    use = "tsm_online_resnet18 or adafuse_tsn_resnet18"
    pattern = rf"{name} cannot stream.*looks at future segments.*{FUTURE[name]}.*{use}"
    with pytest.raises(EdgefuseError, match=pattern):
        check_streamable(model)
    with pytest.raises(EdgefuseError, match="looks at future segments"):
        StreamModel(model)


def test_streamability_comes_from_the_modules_not_the_name() -> None:
    online = create_model("tsm_resnet18", num_classes=CLASSES, width=0.25, online=True)
    assert all(m.online for m in online.modules() if isinstance(m, TemporalShift))
    check_streamable(online)  # a "tsm_" name with past-only shifts streams
    with pytest.raises(EdgefuseError, match=r"looks at future segments \(bidirectional TemporalShift"):
        check_streamable(create_model("adafuse_tsn_resnet18", num_classes=CLASSES, width=0.25, shift=True))


def test_sampled_adafuse_decisions_are_refused() -> None:
    model = create_model("adafuse_tsn_resnet18", num_classes=CLASSES, width=0.25, decision="gumbel")
    with pytest.raises(EdgefuseError, match=r"'gumbel' decision.*decision='argmax'"):
        check_streamable(model)


# --- ONNX -------------------------------------------------------------------------------------

ONNX_MODELS = ["tsm_online_mobilenetv2", "adafuse_tsn_resnet18"]


@pytest.fixture(scope="module", params=ONNX_MODELS)
def exported(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """(clip model, stream model, spec at batch 1, ONNX path), exported at batch 1."""
    model = _build(request.param)
    stream = StreamModel(model)
    path = tmp_path_factory.mktemp(request.param) / "stream.onnx"
    spec = export_stream(stream, path, batch=1, height=SIZE, width=SIZE, opset=17)
    return model, stream, spec, path


def _dims(value_info) -> list[int | str]:  # type: ignore[no-untyped-def]
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_onnx_graph_layout(exported) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from edgefuse.graph.metadata import read_metadata

    model, stream, spec, path = exported
    assert list(path.parent.iterdir()) == [path]  # written atomically, nothing left behind
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & set(FORBIDDEN_OPS) and not any(op.startswith("Random") for op in ops), sorted(ops)
    assert spec == state_spec(stream, 1, SIZE, SIZE) and len(spec) > 0
    inputs = {i.name: _dims(i) for i in proto.graph.input}
    outputs = {o.name: _dims(o) for o in proto.graph.output}
    assert list(inputs) == ["frame", *(s.name for s in spec)]
    assert list(outputs) == ["logits", *("next." + s.name for s in spec)]
    assert inputs["frame"] == ["N", 3, SIZE, SIZE] and outputs["logits"] == ["N", CLASSES]
    for s in spec:
        assert inputs[s.name] == ["N", *s.shape[1:]], s.name
        assert outputs[s.next_name] == ["N", *s.shape[1:]], s.next_name
    facts = read_metadata(proto)
    assert facts["stream_states"] == [s.to_dict() for s in spec]
    assert facts["model"] == model.config.name


@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_stream_reproduces_pytorch(exported, batch: int) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    model, stream, spec, path = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clips = _clips(batch, seed=2 + batch)
    with torch.no_grad():
        ref = model.frame_logits(clips).numpy()  # (B, T, K)
    states = [s.numpy() for s in initial_states(state_spec(stream, batch, SIZE, SIZE))]
    frames = []
    for t in range(T):
        logits, *states = sess.run(None, {"frame": clips[:, t].numpy(), **dict(zip((s.name for s in spec), states))})
        frames.append(logits)
    got = np.stack(frames, axis=1)  # (B, T, K)
    assert got.shape == (batch, T, CLASSES)
    ok, err, scale = _close(got, ref, 1e-4)
    assert ok, f"{model.config.name} batch {batch}: ONNX Runtime departs by {err:.3g} (scale {scale:.3g})"
